"""The one training loop: epochs of a resume-safe loader, a step, a per-epoch history, and hooks.

Both trainings of the suite run here: a CVLS run (`core.train`, Eq. 4) and the language-free
pretext (`core.pretext`). What differs between them is an `Objective` (what is optimised and
its loss), a `Schedule` (epochs, an optional total step budget, the lr) and their hooks
(`core.hooks`, after detectron2's `HookBase`): the optional parts of a training, each called at
fixed points around the loop: checkpointing and resume, the validation loss, the lr schedule,
the gradient-share probe, the validation metrics. The loop owns the rest: the steps, the NaN
check, the history and its logging.

One epoch, top to bottom (every hook in list order at each point):

    before_train                     once: the lr plan, resume from a checkpoint
    before_epoch                     the epoch's probe sums
    per batch: before_step, the optimisation step, after_step
    after_epoch(row)                 the row's columns, then the checkpoint (the last hook)

The caller seeds the RNGs and builds the module first (the seeds decide the initial weights),
and saves what the training produced once `fit` returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from core.config import Params
from core.data.dataset import ClipDataset, collate_clips, seed_worker, to_device
from core.data.store import open_split
from core.data.vocab import Vocab
from core.errors import UserError
from core.results import MetricLogger, log_history
from core.runtime import Dist, autocast, channels_last

log = logging.getLogger("cvls")

Batch = dict[str, Tensor]
LossFn = Callable[[Batch], tuple[Tensor, dict[str, Tensor]]]  # on-device batch -> (loss, parts)
Row = dict[str, float]  # one epoch of the history


class Diverged(UserError):
    """The loss became NaN/inf: the run stops and is marked FAILED."""


@dataclass
class Objective:
    """What one training optimises."""

    module: nn.Module  # what is optimised and checkpointed
    loss: LossFn  # called in autocast; may run a wrapper of `module` (DDP)
    parts: tuple[str, ...]  # the names of loss's parts, logged as train_<part>
    train_mode: Callable[[], None] | None = None  # put the trained net in train mode (default: module)


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float  # the start lr (a hook may change it: core.hooks.LRSchedule)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    max_steps: int | None = None  # a total step budget (the pretext's pretrain.steps)
    steps_per_epoch: int | None = None  # train.max_steps_per_epoch


@dataclass
class FitState:
    """What the hooks see and may change: the training's parts and where it stands."""

    module: nn.Module
    opt: torch.optim.Optimizer
    schedule: Schedule
    loader: Callable[[int], DataLoader]  # epoch -> its batches
    hooks: Sequence[Hook]
    is_main: bool  # the process that logs and checkpoints (rank 0 under DDP)
    loss: LossFn  # the next step's loss: the objective's, unless a hook swaps it (for that step)
    epoch: int = 0  # the epoch under way, from 0 (after a resume: the first one left)
    step: int = 0  # optimisation steps done, over all epochs (before_step/after_step: this step's index)
    history: list[Row] = field(default_factory=list)


class Hook:
    """An optional part of a training, called by `fit` at fixed points (detectron2's HookBase).
    Each point does nothing unless a hook overrides it; `state_dict` is what a hook adds to a
    checkpoint and gets back on resume (`load_state_dict`, given the whole checkpoint)."""

    def before_train(self, state: FitState) -> None:
        """Once, before the first epoch (of this process: after a resume, the first one left)."""

    def before_epoch(self, state: FitState) -> None:
        """At the start of epoch `state.epoch`."""

    def before_step(self, state: FitState) -> None:
        """Before optimisation step `state.step`: may set its lr or swap its loss (`state.loss`)."""

    def after_step(self, state: FitState, parts: dict[str, Tensor]) -> None:
        """After optimisation step `state.step`, with the parts its loss returned (on the device)."""

    def after_epoch(self, state: FitState, row: Row) -> None:
        """At the end of epoch `state.epoch`: `row` (already last in `state.history`) takes its columns."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        pass


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    # fused: one multi-tensor kernel for all parameters instead of several ops per tensor
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def optimizer_step(
    loss_fn: LossFn,
    opt: torch.optim.Optimizer,
    batch: Batch,
    params: Params,
    device: torch.device,
    grad_clip: float | None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One optimisation step on an on-device batch: loss in autocast, backward, clip, step."""
    with autocast(device, params.train):
        loss, parts = loss_fn(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], grad_clip)
    opt.step()
    return loss, parts


def clip_loader(params: Params, split: str, vocab: Vocab, train: bool, epoch: int, dist_: Dist) -> DataLoader:
    """A loader whose shuffling and augmentation depend only on (seed, epoch): resume-safe."""
    tp = params.train
    ds = ClipDataset(open_split(params.processed, split), vocab, params.data, train=train)
    gen = torch.Generator().manual_seed(tp.seed * 100_003 + epoch)
    sampler = None
    if dist_.world > 1:
        sampler = DistributedSampler(ds, dist_.world, dist_.rank, shuffle=train, seed=tp.seed)
        sampler.set_epoch(epoch)
    workers = tp.num_workers
    return DataLoader(
        ds,
        batch_size=tp.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        generator=gen,
        num_workers=workers,
        collate_fn=collate_clips,
        worker_init_fn=seed_worker,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        drop_last=False,
        prefetch_factor=4 if workers else None,
    )


def fit(
    objective: Objective,
    schedule: Schedule,
    loader: Callable[[int], DataLoader],
    hooks: Sequence[Hook],
    params: Params,
    handle: MetricLogger,
    device: torch.device,
    *,
    is_main: bool = True,
    desc: str = "epoch",
) -> list[Row]:
    """Train `objective` to `schedule` on `loader(epoch)` with `hooks`; the per-epoch history.

    Each history row: epoch, step (total), train_loss, train_<part>..., clips_per_s (the epoch's
    steps alone), then the hooks' columns (val_loss, the probes, lr, the val metrics).
    """
    s = schedule
    opt = make_optimizer(objective.module, s.lr, s.weight_decay)
    state = FitState(objective.module, opt, s, loader, hooks, is_main, objective.loss)
    for hook in hooks:
        hook.before_train(state)
    log_history(handle, state.history)  # the rows a resumed run brings: its new MLflow run has the whole curve
    last = channels_last(device, params.train)
    for epoch in range(state.epoch, s.epochs):
        if s.max_steps is not None and state.step >= s.max_steps:
            break
        state.epoch = epoch
        (objective.train_mode or objective.module.train)()
        batches = loader(epoch)
        for hook in hooks:
            hook.before_epoch(state)
        sums = torch.zeros(1 + len(objective.parts), device=device)  # loss, parts: no host syncs
        bad = torch.zeros((), dtype=torch.bool, device=device)
        steps, clips, t0 = 0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"{desc} {epoch + 1}/{s.epochs}", unit="batch", disable=not is_main, leave=False)
        for batch in bar:
            batch = to_device(batch, device, last)
            state.loss = objective.loss
            for hook in hooks:
                hook.before_step(state)
            loss, parts = optimizer_step(state.loss, opt, batch, params, device, s.grad_clip)
            for hook in hooks:
                hook.after_step(state, parts)
            bad |= ~torch.isfinite(loss.detach())
            sums += torch.stack([loss.detach().float(), *(parts[p].float() for p in objective.parts)])
            steps, state.step = steps + 1, state.step + 1
            clips += len(batch["frames"])
            if steps % 10 == 0 or steps == len(batches):  # one host sync per 10 steps
                check_finite(bad, epoch, steps)
                rate = clips / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{float(sums[0]) / steps:.4f}", clips_s=f"{rate:.1f}")
            if (s.steps_per_epoch and steps >= s.steps_per_epoch) or (s.max_steps and state.step >= s.max_steps):
                break
        check_finite(bad, epoch, steps)
        means = (sums / max(steps, 1)).tolist()
        row = {"epoch": epoch + 1, "step": state.step, "train_loss": means[0]}
        row |= {f"train_{p}": v for p, v in zip(objective.parts, means[1:])}
        row["clips_per_s"] = clips / (time.perf_counter() - t0)
        state.history.append(row)
        for hook in hooks:
            hook.after_epoch(state, row)
        if is_main:
            log_history(handle, [row])
            shown = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
            log.info("%s %d/%d %s", desc, epoch + 1, s.epochs, shown)
    return state.history


def check_finite(bad: Tensor, epoch: int, step: int) -> None:
    if bool(bad):
        raise Diverged(f"loss became NaN/inf in epoch {epoch + 1} by step {step}; lower the lr or set train.grad_clip")
