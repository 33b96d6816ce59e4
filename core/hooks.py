"""The optional parts of a training, as hooks around `core.loop.fit` (detectron2's engine/hooks.py).

    Validation    the validation loss after every epoch (val_loss)
    GradShares    every N steps, how Eq. 4's two terms pull on the shared encoders (the probes)
    LRSchedule    the lr: constant, plateau on val_loss, or warm-up + cosine (lr)
    ValMetrics    every N epochs, validation scores: the learning curves
    Checkpointer  <run>/checkpoint.pt after every epoch; a killed run resumes from it

They run in list order at each point, so the order is part of the contract: LRSchedule after
Validation (the plateau reads val_loss), Checkpointer last (it saves what the others did to the
epoch, and on resume loads their state once they are set up). The CVLS run uses all five, the
pretext LRSchedule and Checkpointer.

Diagnostics (GradShares, ValMetrics) only read the run: the weights a run ends with are the same
with them on or off (CPU, train.deterministic=true). A killed run resumed from its checkpoint
ends with the same weights as an uninterrupted one (CPU, train.deterministic=true).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from core.checkpoint import load_checkpoint, save_checkpoint
from core.loop import FitState, Hook, LossFn, Row, Schedule
from core.runtime import rng_state, set_rng_state

log = logging.getLogger("cvls")


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


class Validation(Hook):
    """The validation loss after every epoch as val_loss; `validate` returns None where there is no
    validation data, and the epoch's training loss stands in."""

    def __init__(self, validate: Callable[[], float | None]) -> None:
        self.validate = validate

    def after_epoch(self, state: FitState, row: Row) -> None:
        val = self.validate()
        row["val_loss"] = row["train_loss"] if val is None else val


class LRSchedule(Hook):
    """The lr of every step, and the lr column (the lr the next epoch starts with).

    constant  the schedule's lr throughout;
    plateau   falls by `factor` when val_loss (the Validation hook's) has not improved for
              `patience` epochs; its scheduler's state is checkpointed;
    cosine    linear warm-up over `warmup` steps, then a half cosine to 0 at the last planned step
              (`cosine_lr`: a pure function of the step, nothing to checkpoint).
    """

    def __init__(self, kind: str = "constant", *, patience: int = 0, factor: float = 0.1, warmup: int = 0) -> None:
        if kind not in ("constant", "plateau", "cosine"):
            raise ValueError(f"unknown lr schedule {kind!r}")
        self.kind, self.patience, self.factor, self.warmup = kind, patience, factor, warmup
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.total = 0  # cosine: the planned steps

    def before_train(self, state: FitState) -> None:
        if self.kind == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                state.opt, mode="min", factor=self.factor, patience=self.patience
            )
        elif self.kind == "cosine":
            self.total = planned_steps(state.schedule, len(state.loader(0)))

    def before_step(self, state: FitState) -> None:
        if self.total:
            for group in state.opt.param_groups:
                group["lr"] = cosine_lr(state.step, self.total, state.schedule.lr, self.warmup)

    def after_epoch(self, state: FitState, row: Row) -> None:
        if self.plateau is not None:
            self.plateau.step(row["val_loss"])
        row["lr"] = state.opt.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.plateau.state_dict()} if self.plateau is not None else {}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        if self.plateau is not None:
            self.plateau.load_state_dict(checkpoint["scheduler"])


class GradShares(Hook):
    """Every `every`-th step (by the global step number, so a resumed run probes the same steps)
    runs `probe` instead of the objective's loss: the same loss from the same forward, its parts
    plus the diagnostics `names` (train.grad_share_every; core.diagnostics). It must leave the step
    alone (nothing in .grad, no RNG). Each epoch's row gets their mean over its probed steps (NaN
    in an epoch without one)."""

    def __init__(self, probe: LossFn, names: tuple[str, ...], every: int) -> None:
        self.probe, self.names, self.every = probe, names, every
        self.probing = False
        self.sums: Tensor | None = None
        self.probed = 0

    def before_epoch(self, state: FitState) -> None:
        self.sums, self.probed = None, 0

    def before_step(self, state: FitState) -> None:
        self.probing = state.step % self.every == 0
        if self.probing:
            state.loss = self.probe

    def after_step(self, state: FitState, parts: dict[str, Tensor]) -> None:
        if self.probing:
            shares = torch.stack([parts[p].float() for p in self.names])  # on the device: no host sync
            if self.sums is None:
                self.sums = torch.zeros_like(shares)
            self.sums += shares
            self.probed += 1

    def after_epoch(self, state: FitState, row: Row) -> None:
        means = (self.sums / self.probed).tolist() if self.sums is not None else [math.nan] * len(self.names)
        row |= dict(zip(self.names, means))


class ValMetrics(Hook):
    """Named validation scores (`score`) after every `every`-th epoch (train.val_metrics_every),
    NaN after the others; on the main process alone. Logged only: the plateau reads val_loss.
    The RNG states are put back: scoring must not shift the next epoch's augmentation (a
    DataLoader without a generator draws its base seed from the global RNG)."""

    def __init__(self, score: Callable[[], dict[str, float]], names: tuple[str, ...], every: int) -> None:
        self.score, self.names, self.every = score, names, every

    def after_epoch(self, state: FitState, row: Row) -> None:
        if not state.is_main:
            return
        if (state.epoch + 1) % self.every:
            row |= {k: math.nan for k in self.names}
            return
        rng = rng_state()
        scores = self.score()
        set_rng_state(rng)
        row |= {k: scores.get(k, math.nan) for k in self.names}


class Checkpointer(Hook):
    """`path` (weights, optimizer, RNG states, epoch, history and the other hooks' state) written
    atomically by the main process at the end of every epoch; with `resume`, a training whose
    checkpoint is there starts from it, and ends with the same weights as an uninterrupted one
    (CPU, train.deterministic=true). Last in the hook list."""

    def __init__(self, path: Path, resume: bool = True) -> None:
        self.path, self.resume = path, resume

    def before_train(self, state: FitState) -> None:
        if not (self.resume and self.path.is_file()):
            return
        ckpt = load_checkpoint(self.path)
        state.module.load_state_dict(ckpt["model"])
        state.opt.load_state_dict(ckpt["optimizer"])
        for hook in state.hooks:
            hook.load_state_dict(ckpt)
        set_rng_state(ckpt["rng"])
        state.history, state.epoch = ckpt["history"], ckpt["epoch"]
        state.step = int(state.history[-1].get("step", 0)) if state.history else 0  # (rows of older runs lack it)
        log.info("resuming %s from epoch %d/%d", self.path.parent.name, state.epoch, state.schedule.epochs)

    def after_epoch(self, state: FitState, row: Row) -> None:
        if not state.is_main:
            return
        ckpt = {
            "model": state.module.state_dict(),
            "optimizer": state.opt.state_dict(),
            "rng": rng_state(),
            "epoch": state.epoch + 1,
            "history": state.history,
        }
        for hook in state.hooks:
            ckpt |= hook.state_dict()
        save_checkpoint(self.path, ckpt)
