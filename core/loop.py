"""The one training loop: epochs of a resume-safe loader, a step, checkpoints, a history.

Both trainings of the suite run here: a CVLS run (`core.train`, Eq. 4) and the language-free
pretext (`core.pretext`). What differs between them is an `Objective` (what is optimised, its
loss, what to save at the end, an optional validation loss for the plateau scheduler, optional
diagnostics) and a `Schedule` (epochs, an optional total step budget, the lr and its schedule).
The loop owns everything else: seeding order, resume, the NaN check, checkpoints and the per-epoch history.

Diagnostics (a step's probe, per-epoch validation metrics) only read the run: the weights a run
ends with are the same with them on or off (CPU, train.deterministic=true).

A checkpoint (`<run>/checkpoint.pt`: weights, optimizer, scheduler, RNG states, epoch, history)
is written atomically at the end of every epoch, so a killed run resumes from its last epoch
and ends with the same weights as an uninterrupted one (CPU, train.deterministic=true).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import Params
from core.data.dataset import ClipDataset, collate_clips, seed_worker, to_device
from core.data.store import open_split
from core.data.vocab import Vocab
from core.errors import UserError
from core.results import MetricLogger, log_history
from core.runtime import Dist, autocast, channels_last, rng_state, set_rng_state

log = logging.getLogger("cvls")

Batch = dict[str, Tensor]
LossFn = Callable[[Batch], tuple[Tensor, dict[str, Tensor]]]  # on-device batch -> (loss, parts)


class Diverged(UserError):
    """The loss became NaN/inf: the run stops and is marked FAILED."""


@dataclass
class Objective:
    """What one training optimises; everything that differs between a CVLS run and the pretext."""

    module: nn.Module  # what is optimised and checkpointed
    loss: LossFn  # called in autocast; may run a wrapper of `module` (DDP)
    parts: tuple[str, ...]  # the names of loss's parts, logged as train_<part>
    export: Callable[[], None]  # save the finished result (model.pt, backbone.pt)
    # a validation loss after each epoch, for the plateau lr; None from it = no validation data
    # (then the epoch's training loss stands in)
    validate: Callable[[], float | None] | None = None
    train_mode: Callable[[], None] | None = None  # put the trained net in train mode (default: module)
    # a probe of the step every `probe_every` steps (0 = never; train.grad_share_every): run instead
    # of `loss`, the same loss from the same forward, its parts plus the diagnostics `probes`. It
    # must leave the step alone (nothing in .grad, no RNG). Logged as their mean over the epoch's
    # probed steps (NaN in an epoch without one)
    probe_loss: LossFn | None = None
    probes: tuple[str, ...] = ()
    probe_every: int = 0
    # learning curves: named validation scores after every `val_metrics_every`-th epoch (0 = never;
    # train.val_metrics_every), NaN after the others. Logged only: the plateau reads `validate`
    val_metrics: Callable[[], dict[str, float]] | None = None
    val_metric_names: tuple[str, ...] = ()
    val_metrics_every: int = 0


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float
    weight_decay: float = 0.0
    grad_clip: float | None = None
    max_steps: int | None = None  # a total step budget (the pretext's pretrain.steps)
    steps_per_epoch: int | None = None  # train.max_steps_per_epoch
    plateau_patience: int = 0
    plateau_factor: float = 0.1
    # plateau: the lr falls by plateau_factor when the validation loss stalls (needs a validation);
    # cosine: linear warm-up over warmup_steps, then a half cosine to 0 at the last planned step
    lr_schedule: str = "plateau"
    warmup_steps: int = 0


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    """The lr of optimisation step `step` (0-based) of `total` under linear warm-up + cosine decay.

    A pure function of the step, so a resumed run continues the same curve with no scheduler state.
    Step 0 runs at peak/warmup (never at 0: that step would be wasted); the step after the warm-up
    at peak; the last step (total - 1) just above 0.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    decay = max(total - warmup, 1)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, decay) / decay))


def planned_steps(s: Schedule, batches_per_epoch: int) -> int:
    """The optimisation steps `fit` will take under `s` with `batches_per_epoch` batches an epoch."""
    per_epoch = min(batches_per_epoch, s.steps_per_epoch) if s.steps_per_epoch else batches_per_epoch
    total = s.epochs * per_epoch
    return min(total, s.max_steps) if s.max_steps is not None else total


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
    params: Params,
    run_dir: Path,
    handle: MetricLogger,
    device: torch.device,
    *,
    resume: bool = True,
    is_main: bool = True,
    desc: str = "epoch",
) -> list[dict[str, float]]:
    """Train `objective` to `schedule` on `loader(epoch)`; the per-epoch history.

    The caller has seeded the RNGs and built `objective.module` (in that order, as the seeds
    decide the initial weights). Each history row: epoch, step (total), train_loss,
    train_<part>..., val_loss (with a validation), the probes (with a probe), lr, clips_per_s,
    the val metrics (with them).
    """
    s = schedule
    module = objective.module
    opt = make_optimizer(module, s.lr, s.weight_decay)
    plateau = None
    if objective.validate is not None and s.lr_schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=s.plateau_factor, patience=s.plateau_patience
        )
    history: list[dict[str, float]] = []
    start = 0
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if plateau is not None:
            plateau.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        history, start = ckpt["history"], ckpt["epoch"]
        log.info("resuming %s from epoch %d/%d", run_dir.name, start, s.epochs)
        log_history(handle, history)  # a new MLflow run carries the whole curve
    step = int(history[-1].get("step", 0)) if history else 0  # (rows of older runs lack it)
    last = channels_last(device, params.train)
    total = planned_steps(s, len(loader(0))) if s.lr_schedule == "cosine" else 0
    for epoch in range(start, s.epochs):
        if s.max_steps is not None and step >= s.max_steps:
            break
        (objective.train_mode or module.train)()
        batches = loader(epoch)
        sums = torch.zeros(1 + len(objective.parts), device=device)  # loss, parts: no host syncs
        probe_sums, probed = torch.zeros(len(objective.probes), device=device), 0
        bad = torch.zeros((), dtype=torch.bool, device=device)
        steps, clips, t0 = 0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"{desc} {epoch + 1}/{s.epochs}", unit="batch", disable=not is_main, leave=False)
        for batch in bar:
            batch = to_device(batch, device, last)
            if total:
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(step, total, s.lr, s.warmup_steps)
            # by the global step number, so a resumed run probes the same steps
            probe = objective.probe_loss if objective.probe_every and step % objective.probe_every == 0 else None
            loss, parts = optimizer_step(probe or objective.loss, opt, batch, params, device, s.grad_clip)
            bad |= ~torch.isfinite(loss.detach())
            sums += torch.stack([loss.detach().float(), *(parts[p].float() for p in objective.parts)])
            if probe is not None:
                probe_sums += torch.stack([parts[p].float() for p in objective.probes])
                probed += 1
            steps, step = steps + 1, step + 1
            clips += len(batch["frames"])
            if steps % 10 == 0 or steps == len(batches):  # one host sync per 10 steps
                check_finite(bad, epoch, steps)
                rate = clips / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{float(sums[0]) / steps:.4f}", clips_s=f"{rate:.1f}")
            if (s.steps_per_epoch and steps >= s.steps_per_epoch) or (s.max_steps and step >= s.max_steps):
                break
        check_finite(bad, epoch, steps)
        means = (sums / max(steps, 1)).tolist()
        row = {"epoch": epoch + 1, "step": step, "train_loss": means[0]}
        row |= {f"train_{p}": v for p, v in zip(objective.parts, means[1:])}
        if objective.validate is not None:
            val = objective.validate()
            row["val_loss"] = means[0] if val is None else val
            if plateau is not None:
                plateau.step(row["val_loss"])
        if objective.probe_loss is not None and objective.probe_every:
            probe_means = (probe_sums / probed).tolist() if probed else [math.nan] * len(objective.probes)
            row |= dict(zip(objective.probes, probe_means))
        row |= {"lr": opt.param_groups[0]["lr"], "clips_per_s": clips / (time.perf_counter() - t0)}
        if objective.val_metrics is not None and objective.val_metrics_every and is_main:
            row |= val_metrics(objective, epoch + 1)
        history.append(row)
        if is_main:
            log_history(handle, [row])
            log.info(
                "%s %d/%d %s",
                desc,
                epoch + 1,
                s.epochs,
                " ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step")),
            )
            state = {
                "model": module.state_dict(),
                "optimizer": opt.state_dict(),
                "rng": rng_state(),
                "epoch": epoch + 1,
                "history": history,
            }
            if plateau is not None:
                state["scheduler"] = plateau.state_dict()
            save_checkpoint(ckpt_path, state)
    if is_main:
        objective.export()
    return history


def val_metrics(objective: Objective, epoch: int) -> dict[str, float]:
    """The objective's validation metrics after `epoch` (1-based), NaN when it is not one of every
    `val_metrics_every`-th. The RNG states are put back: scoring must not shift the next epoch's
    augmentation (a DataLoader without a generator draws its base seed from the global RNG)."""
    assert objective.val_metrics is not None
    if epoch % objective.val_metrics_every:
        return {k: math.nan for k in objective.val_metric_names}
    state = rng_state()
    scores = objective.val_metrics()
    set_rng_state(state)
    return {k: scores.get(k, math.nan) for k in objective.val_metric_names}


def check_finite(bad: Tensor, epoch: int, step: int) -> None:
    if bool(bad):
        raise Diverged(f"loss became NaN/inf in epoch {epoch + 1} by step {step}; lower the lr or set train.grad_clip")
