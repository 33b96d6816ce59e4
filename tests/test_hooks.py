"""core/hooks.py and the loop's hook points (core/loop.py): the lr curve by hand, the order of the points."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.hooks import cosine_lr
from core.loop import FitState, Hook, Objective, Row, Schedule, fit
from core.tracking import RunHandle

from .conftest import default_params


def test_cosine_lr_by_hand():
    # total 10 steps, 2 of warm-up, peak 1: 1/2, 1, then 0.5 (1 + cos(pi k / 8)) for k = 0..7
    got = [cosine_lr(i, 10, 1.0, 2) for i in range(10)]
    want = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert got == pytest.approx(want)
    assert got[6] == pytest.approx(0.5) and got[-1] == pytest.approx(0.0380602, abs=1e-6)
    assert cosine_lr(0, 5, 0.1, 0) == pytest.approx(0.1)  # no warm-up: the first step at the peak


class Recorder(Hook):
    """Writes down every point it is called at; `probe_on` swaps the loss of that step."""

    def __init__(self, name: str, calls: list[tuple], probe_on: int | None = None) -> None:
        self.name, self.calls, self.probe_on = name, calls, probe_on

    def before_train(self, state: FitState) -> None:
        self.calls.append((self.name, "before_train"))

    def before_epoch(self, state: FitState) -> None:
        self.calls.append((self.name, "before_epoch", state.epoch))

    def before_step(self, state: FitState) -> None:
        self.calls.append((self.name, "before_step", state.step))
        if state.step == self.probe_on:
            state.loss = lambda batch: (torch.zeros((), requires_grad=True), {"part": torch.tensor(-1.0)})

    def after_step(self, state: FitState, parts: dict[str, torch.Tensor]) -> None:
        self.calls.append((self.name, "after_step", state.step, float(parts["part"])))

    def after_epoch(self, state: FitState, row: Row) -> None:
        assert state.history[-1] is row  # the row is the history's, so every later hook sees the columns added
        row[self.name] = len(row)
        self.calls.append((self.name, "after_epoch", state.epoch))


def test_fit_calls_each_hook_point_in_list_order_and_a_swapped_loss_serves_one_step():
    torch.manual_seed(0)
    module = nn.Linear(3, 1)

    def loss(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = module(batch["frames"].mean(dim=(1, 3, 4))).pow(2).mean()
        return out, {"part": torch.tensor(1.0)}

    batches = [{"frames": torch.full((2, 1, 3, 2, 2), 100 + i, dtype=torch.uint8)} for i in range(2)]
    calls: list[tuple] = []
    hooks = [Recorder("a", calls, probe_on=1), Recorder("b", calls)]
    schedule = Schedule(epochs=2, lr=0.1)
    history = fit(
        Objective(module, loss, ("part",)),
        schedule,
        lambda epoch: batches,
        hooks,
        default_params(),
        RunHandle(),
        torch.device("cpu"),
    )
    per_step = [
        [("a", "before_step", s), ("b", "before_step", s), ("a", "after_step", s, p), ("b", "after_step", s, p)]
        for s, p in [(0, 1.0), (1, -1.0), (2, 1.0), (3, 1.0)]  # step 1 ran a's loss, step 2 the objective's again
    ]
    assert calls == [
        ("a", "before_train"),
        ("b", "before_train"),
        *[
            c
            for epoch in (0, 1)
            for c in [
                ("a", "before_epoch", epoch),
                ("b", "before_epoch", epoch),
                *per_step[2 * epoch],
                *per_step[2 * epoch + 1],
                ("a", "after_epoch", epoch),
                ("b", "after_epoch", epoch),
            ]
        ],
    ]
    assert [r["step"] for r in history] == [2, 4]
    assert history[0]["train_part"] == 0.0 and history[1]["train_part"] == 1.0  # (1 + -1) / 2, then 1
    assert history[0]["b"] == history[0]["a"] + 1  # b ran after a on the same row
