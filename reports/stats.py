"""Uncertainty for the result tables: t-intervals over seeds, bootstrap intervals over samples,
paired tests between variants and the smallest difference those tests can detect."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the confidence interval; NaN with fewer than 2 values
    n: int


def mean_ci(values: Sequence[float], confidence: float) -> Interval:
    """Mean and Student-t half-width over seeds: t_{(1+c)/2, n-1} * s / sqrt(n) (NaNs dropped)."""
    x = np.asarray([v for v in values if v == v], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return Interval(float(x.mean()), float(half), n)


def resample_means(x: np.ndarray, *, reps: int, seed: int = 0, chunk: int = 250) -> np.ndarray:
    """`reps` bootstrap means of the 1-D `x`: samples drawn with replacement, `chunk` resamples
    at a time (bounded memory for large test splits)."""
    n = len(x)
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [x[rng.integers(0, n, size=(min(chunk, reps - i), n))].mean(axis=1) for i in range(0, reps, chunk)]
    )


def bootstrap_ci(x: Sequence[float], *, reps: int, confidence: float, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of mean(x) over samples (resampled with replacement); the interval of a
    single run's score where there are no seeds to spread over."""
    x_ = np.asarray(x, float)
    if x_.size == 0:
        return math.nan, math.nan
    alpha = 1 - confidence
    lo, hi = np.quantile(resample_means(x_, reps=reps, seed=seed), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def detectable_difference(d: Sequence[float], *, alpha: float, power: float, t: bool = False) -> float:
    """Smallest mean paired difference a two-sided level-`alpha` test detects with probability
    `power`: (q_{1-alpha/2} + q_{power}) * sd(d, ddof=1) / sqrt(n), d one difference per sample.

    Normal approximation (q = z): the bootstrap mean over n samples is close to normal at the
    report's sizes. With `t`, q are Student-t quantiles with n - 1 degrees of freedom (a touch
    wider: +1.1% at n = 90). NaN with fewer than 2 differences.
    """
    d_ = np.asarray(d, float)
    n = d_.size
    if n < 2:
        return math.nan
    q = (lambda p: stats.t.ppf(p, n - 1)) if t else stats.norm.ppf
    return float((q(1 - alpha / 2) + q(power)) * d_.std(ddof=1) / math.sqrt(n))


@dataclass(frozen=True)
class PairedResult:
    diff: float  # mean of (b - a)
    lo: float
    hi: float
    p: float  # two-sided
    n: int  # paired units


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, reps: int, confidence: float, seed: int = 0, chunk: int = 250
) -> PairedResult:
    """Paired bootstrap of mean(b - a) over samples.

    `a`, `b`: (seeds, samples) arrays whose columns are the same samples (rows: the same seeds);
    a 1-D array is one seed. Samples (columns) are resampled with replacement, the same columns
    for every seed, and the difference is averaged over seeds and samples. CI: percentile.
    p (two-sided): share of bootstrap means at least |diff| away from diff (the null-shifted
    distribution), (count + 1) / (reps + 1); identical inputs give p = 1.
    """
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"paired arrays must have the same non-empty shape, got {a.shape} and {b.shape}")
    d = (b - a).mean(axis=0)  # seed-averaged difference per sample: resampling commutes with it
    n = len(d)
    diff = float(d.mean())
    means = resample_means(d, reps=reps, seed=seed, chunk=chunk)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    extreme = int(np.sum(np.abs(means - diff) >= abs(diff) - 1e-12))
    return PairedResult(diff, float(lo), float(hi), (extreme + 1) / (reps + 1), n)


def paired_t(a: Sequence[float], b: Sequence[float], confidence: float) -> PairedResult:
    """Paired t-test of b - a over seeds, with the t-interval of the mean difference.
    p is NaN with fewer than 2 pairs, or when every difference is the same (no variance)."""
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    d = b_ - a_
    ci = mean_ci(d, confidence)
    if ci.n < 2 or np.allclose(d, d[0]):
        return PairedResult(ci.mean, math.nan, math.nan, math.nan, ci.n)
    p = float(stats.ttest_rel(b_, a_).pvalue)
    return PairedResult(ci.mean, ci.mean - ci.half, ci.mean + ci.half, p, ci.n)
