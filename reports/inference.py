"""Inference for runs that share their training seeds and their test set: both sources of variance.

A table of the report (Table 3, a stratum, a sweep) holds R rows (variants), each trained at the
same S seeds (rows at one seed share their initialisation and data order) and scored on the same
V test videos. A rerun would draw new seeds and, for the population the benchmark stands for, new
test videos; a verdict must count both (Bouthillier et al., MLSys 2021). Videos, not pairs or
expressions, are the sampling unit: a video's sentences and frames are not independent.

Every metric of the suite is a ratio of per-video totals, Σ_v num_v / Σ_v den_v (a mean over
units: num = the sum of the video's unit scores, den = its number of units; Overall IoU: num = ΣI,
den = ΣU). `pseudo_values` linearises it per video (Taylor / delta method for a ratio estimator
under cluster sampling, Cochran 1977 §6.10), so each run becomes V values whose plain mean is the
run's metric exactly, and the analysis below is the same for every metric.

Model for a contrast D (one row minus another, or one row alone) at seed s and video v:

    D_sv = μ + a_s + b_v + e_sv,    a ~ (0, σ²_seed), b ~ (0, σ²_video), e ~ (0, σ²_resid)

a crossed two-way random-effects layout, balanced, so Var(D̄) = σ²_seed/S + σ²_video/V +
σ²_resid/(SV) is estimated from the ANOVA mean squares (Searle, Casella & McCulloch 1992, §4.6):
the seed term as Var_s(D̄_s.)/S, the video term as (MS_video − MS_resid)/(SV), clipped at 0.
With 3 seeds a contrast's own seed variance has 2 degrees of freedom (t = 4.30), and a
bootstrap over 3 seeds has only 10 distinct resamples and understates their spread. So the seed
variance is pooled over the table's rows, as in a randomized block design with seed as block
(Montgomery, Design and Analysis of Experiments, §4.1): the variant × seed interaction of the
R × S table of run scores has (R−1)(S−1) degrees of freedom (8 for Table 3) and estimates the
seed variance of any pairwise contrast; a row's own level uses the within-row seed variance,
R(S−1) degrees of freedom. The degrees of freedom of the sum are Satterthwaite's (1946).
reports/calibration.py checks by simulation, at the variance components a table measures, that
these tests reject a null difference at the rate they claim, and that the alternatives (seeds
ignored, a bootstrap over 3 seeds) do not.

For balanced data the ANOVA estimators equal REML's where they are positive (tests compare them
with statsmodels' MixedLM); they are written here, vectorised over any leading axes, because the
report needs hundreds of them and the calibration simulation hundreds of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

Array = np.ndarray


def pseudo_values(num: Array, den: Array) -> Array:
    """[..., V] per-video totals of a ratio metric -> [..., V] values whose mean over V is the
    metric Σnum / Σden exactly: R + (num_v − R·den_v) / mean(den), the metric's linearisation."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = num.sum(-1, keepdims=True) / den.sum(-1, keepdims=True)
        return ratio + (num - ratio * den) / den.mean(-1, keepdims=True)


@dataclass(frozen=True)
class SeedVariance:
    """The variance of one seed's value of a contrast (its seed term is var / S), and its df."""

    var: Array | float
    df: Array | float


def between_rows(y: Array) -> SeedVariance:
    """[..., R, S] run scores -> the seed variance of a pairwise contrast between rows: twice the
    variant × seed interaction mean square, (R−1)(S−1) df (rows paired by seed)."""
    y = np.asarray(y, float)
    r, s = y.shape[-2:]
    resid = y - y.mean(-1, keepdims=True) - y.mean(-2, keepdims=True) + y.mean((-2, -1), keepdims=True)
    df = (r - 1) * (s - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return SeedVariance(2 * (resid**2).sum((-2, -1)) / df, float(df) if df else np.nan)


def within_rows(y: Array) -> SeedVariance:
    """[..., R, S] run scores -> the seed variance of one row's score, pooled within rows:
    (MS_seed + (R−1)·MS_interaction) / R. Rows share their seeds, so a seed effect common to
    every row has only S−1 df: the df are Satterthwaite's over the two mean squares (R(S−1) when
    there is no common effect, S−1 when it is all there is)."""
    y = np.asarray(y, float)
    r, s = y.shape[-2:]
    col = y.mean(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ms_s = r * ((col - col.mean(-1, keepdims=True)) ** 2).sum(-1) / (s - 1)
        if r == 1:
            return SeedVariance(ms_s, float(s - 1) if s > 1 else np.nan)
        ms_int = between_rows(y).var / 2
        terms = [(ms_s / r, s - 1), ((r - 1) * ms_int / r, (r - 1) * (s - 1))]
        return SeedVariance(terms[0][0] + terms[1][0], satterthwaite(terms))


def own_seeds(d: Array) -> SeedVariance:
    """[..., S] one contrast's run-level values -> its own seed variance, S−1 df (not pooled)."""
    d = np.asarray(d, float)
    s = d.shape[-1]
    return SeedVariance(d.var(-1, ddof=1) if s > 1 else np.full(d.shape[:-1], np.nan), float(s - 1) or np.nan)


@dataclass(frozen=True)
class Residual:
    """A seed × video residual mean square measured elsewhere (Table 3's), and its df: what a
    one-seed table cannot measure itself."""

    ms: Array | float
    df: Array | float


def interaction(z: Array) -> Residual:
    """[..., R, S, V] -> the residual of a pairwise contrast between rows: twice the rows × seeds ×
    videos interaction mean square, (R−1)(S−1)(V−1) df."""
    z = np.asarray(z, float)
    r, s, v = z.shape[-3:]
    m = lambda *ax: z.mean(ax, keepdims=True)  # noqa: E731
    resid = z - m(-1) - m(-2) - m(-3) + m(-2, -1) + m(-3, -1) + m(-3, -2) - m(-3, -2, -1)
    df = (r - 1) * (s - 1) * (v - 1)
    return Residual(2 * (resid**2).sum((-3, -2, -1)) / df, float(df))


def within_rows_residual(z: Array) -> Residual:
    """[..., R, S, V] -> the residual of one row's own seeds × videos table, pooled over the rows."""
    r, s, v = np.shape(z)[-3:]
    return Residual(mean_squares(np.asarray(z, float))[1].mean(-1), float(r * (s - 1) * (v - 1)))


def mean_squares(d: Array) -> tuple[Array, Array]:
    """[..., S, V] -> (MS_video, MS_resid) of the two-way layout; with one seed MS_resid is NaN."""
    s, v = d.shape[-2:]
    col = d.mean(-2)
    with np.errstate(invalid="ignore", divide="ignore"):  # one video: NaN, no spread to measure
        ms_v = s * ((col - col.mean(-1, keepdims=True)) ** 2).sum(-1) / (v - 1)
        if s < 2:
            return ms_v, np.full(ms_v.shape, np.nan)
        resid = d - d.mean(-1, keepdims=True) - col[..., None, :] + d.mean((-2, -1), keepdims=True)
        return ms_v, (resid**2).sum((-2, -1)) / ((s - 1) * (v - 1))


def satterthwaite(terms: list[tuple[Array, float]]) -> Array:
    """Degrees of freedom of a sum of mean-square terms (value, df) (Satterthwaite 1946)."""
    total = sum(np.asarray(t, float) for t, _ in terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total**2 / sum(np.asarray(t, float) ** 2 / df for t, df in terms)


@dataclass(frozen=True)
class Estimate:
    """A mean (of a row, or of a contrast) with a t-interval counting seeds and videos."""

    value: Array | float
    se: Array | float
    df: Array | float
    lo: Array | float
    hi: Array | float
    p: Array | float  # two-sided, against 0
    seed_term: Array | float  # the seed part of se², seed.var / S
    video_term: Array | float  # the test-video part of se²
    seeds: int
    videos: int


def estimate(d: Array, seed: SeedVariance, confidence: float, resid: Residual | None = None) -> Estimate:
    """[..., S, V] pseudo-values of a row or a contrast -> its mean with both variances.

    se² = seed.var / S + max(0, MS_video − MS_resid) / (S·V). With one seed (a sweep point) neither
    the seed variance nor MS_resid can be measured there: `seed` and `resid` come from elsewhere
    (Table 3's, on the same split and metric). Without `resid` the video term is MS_video / V,
    which also holds the residual: conservative by σ²_resid / V."""
    d = np.asarray(d, float)
    s, v = d.shape[-2:]
    value = d.mean((-2, -1))
    ms_v, ms_e = mean_squares(d)
    e_df: Array | float = (s - 1) * (v - 1)
    if s < 2 and resid is not None:
        ms_e, e_df = np.broadcast_to(np.asarray(resid.ms, float), ms_v.shape), resid.df
    seed_term = np.asarray(seed.var, float) / s
    if s >= 2 or resid is not None:
        video_term = np.maximum(ms_v - ms_e, 0.0) / (s * v)
        positive = ms_v > ms_e
        video_df = satterthwaite([(ms_v / (s * v), v - 1), (-ms_e / (s * v), e_df)])
    else:
        video_term, positive, video_df = ms_v / v, np.ones_like(ms_v, bool), np.full(ms_v.shape, float(v - 1))
    terms = [(seed_term, seed.df), (np.where(positive, video_term, 0.0), np.where(positive, video_df, 1.0))]
    df = np.where(positive, satterthwaite(terms), np.asarray(seed.df, float))
    se = np.sqrt(seed_term + video_term)
    half = stats.t.ppf((1 + confidence) / 2, df) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * stats.t.sf(np.abs(value / se), df)
    p = np.where(se > 0, p, np.where(value == 0, 1.0, 0.0))
    fields = (value, se, df, value - half, value + half, p, seed_term, video_term)
    if np.ndim(value) == 0:  # one table: plain floats
        fields = tuple(float(x) for x in fields)
    return Estimate(*fields, s, v)


def power(delta: Array | float, se: Array, df: Array, alpha: float | Array) -> Array:
    """Power of the two-sided level-alpha t-test at a true difference delta (noncentral t)."""
    crit = stats.t.ppf(1 - np.asarray(alpha) / 2, df)
    nc = np.asarray(delta, float) / np.asarray(se, float)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


def detectable(se: Array | float, df: Array | float, alpha: float | Array, target: float = 0.8) -> Array:
    """The smallest true difference the two-sided level-alpha t-test (standard error se, df) detects
    with probability `target` (exact noncentral t, solved by bisection; vectorised)."""
    se, df = np.broadcast_arrays(np.asarray(se, float), np.asarray(df, float))
    lo, hi = np.zeros(se.shape), np.full(se.shape, 60.0)
    for _ in range(60):  # the noncentrality; power rises with it
        mid = (lo + hi) / 2
        low = power(mid, 1.0, df, alpha) < target
        lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
    return (lo + hi) / 2 * se


@dataclass(frozen=True)
class Components:
    """Variance components of a contrast's (or a row's) video-level values, in pp²."""

    seed: float  # σ²_seed: how much the contrast moves from one training seed to the next
    video: float  # σ²_video: how much it differs from one test video to another
    resid: float  # σ²_resid: seed × video interaction and the noise of a video's own pairs


def components(d: Array, seed: SeedVariance) -> Components:
    """The variance components of [S, V] values `d`, the seed one from `seed` (pooled or own):
    seed.var estimates σ²_seed + σ²_resid / V (clipped at 0)."""
    s, v = np.shape(d)[-2:]
    ms_v, ms_e = (float(x) for x in mean_squares(np.asarray(d, float)))
    return Components(max(float(seed.var) - ms_e / v, 0.0), max((ms_v - ms_e) / s, 0.0), ms_e)


def projected(c: Components, seeds: int, videos: int, seed_df: float) -> tuple[float, float]:
    """(se, df) of a contrast with components `c` at `seeds` seeds and `videos` test videos
    (seed_df: the pooled seed variance's df at that many seeds)."""
    seed_term = (c.seed + c.resid / videos) / seeds
    video_term = c.video / videos
    df = float(satterthwaite([(seed_term, seed_df), (video_term, videos - 1)])) if video_term > 0 else seed_df
    return float(np.sqrt(seed_term + video_term)), df


def seeds_needed(
    delta: float, c: Components, videos: int, rows: int, alpha: float, target: float = 0.8, most: int = 100
) -> int | None:
    """The fewest seeds (2..most) at which a pooled test over `rows` rows detects a true difference
    `delta` with probability `target`; None when even `most` do not (the test set's own variance,
    σ²_video / V, is then the limit: more test videos are needed, not more seeds)."""
    for s in range(2, most + 1):
        se, df = projected(c, s, videos, float((rows - 1) * (s - 1)))
        if float(power(abs(delta), se, df, alpha)) >= target:
            return s
    return None
