"""Timing: the one rule every claim in benchmarks/ is measured by, and FLOP counting.

The candidates of one comparison run in the same process, interleaved after a warm-up (A, B,
C, then B, C, A, then C, A, B, ...: each candidate takes every position equally often), so a
slow phase of a shared machine hits them all alike; a ratio is median(A) / median(B) of those
repetitions. On CUDA every timed call is bracketed by torch.cuda.synchronize(), so the time is
the work's, not the kernel launches'.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of `fn`, device work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(
    candidates: dict[str, Callable[[], Any]], reps: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each timed call, candidates interleaved and rotated round by round."""
    names = list(candidates)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t = timed(candidates[name], device)
            if r >= warmup:
                times[name].append(t)
    return times


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (forward + backward when fn runs both), by torch.utils.flop_counter:
    matmuls and convolutions (2 per multiply-add); elementwise work is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def stats(times: Sequence[float]) -> dict[str, float]:
    """Median (the figure every claim uses), min, max and count of one candidate's times."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """median(num) / median(den): the form of every ratio claim."""
    return statistics.median(times[num]) / statistics.median(times[den])
