"""Does a test flag a null difference at the rate it claims? By simulation, and by A/A runs.

Simulation: null Table-3 tables (every row the same configuration) drawn from the variance
components a table measures (`measure`), analysed with the report's own functions
(reports.inference): each unit's score in pp is

    x = a_s + α_rs + b_v + β_rv + c_sv + γ_rsv + u_sp + ε_rsp

shared by the rows (a: seed, b: video, c: seed × video, u: unit) or the row's own (α, β, γ, ε).
Shared effects cancel in a contrast; they matter for a row's level. What a unit keeps from one
seed to the next is part of its video's effect (b, β): the analysis sees videos, not units. A
video's total over its n_v units is drawn directly (Σ_p u_sp ~ N(0, n_v σ²_u), exact for
Gaussian unit noise), on the real layout of units per video.

`simulate` returns the false-positive rate of each kind of test the report runs, the primary
family's family-wise rate under Holm, the power at the detectable difference the report would
print, the coverage of a row's interval, and the same rates for tests that leave a variance out:
the test videos alone (seeds held fixed, what a bootstrap over pairs or videos does) and a
two-stage bootstrap over 3 seeds then the videos.

A/A (ablations/calibration.py): one configuration trained at many seeds, split into disjoint
pseudo-rows of the table's seed count; every such split is a Table 3 with no true difference.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from reports.inference import (
    between_rows,
    detectable,
    estimate,
    interaction,
    mean_squares,
    own_seeds,
    pseudo_values,
    within_rows,
)
from reports.scores import run_table, unit_scores

STEPS = ((0, 1), (1, 2), (1, 3), (2, 4), (3, 4))  # Table 3's incremental steps by row position
VS_BASELINE = ((0, 2), (0, 3), (0, 4))  # the other rows against the Baseline
BOOT = 400  # resamples of the two-stage bootstrap comparator


@dataclass(frozen=True)
class Spec:
    """Variance components (pp²) of a unit's score: shared by the rows, and each row's own."""

    seed: float
    seed_row: float
    video: float
    video_row: float
    resid: float  # seed × video
    resid_row: float
    unit: float
    unit_row: float
    units_per_video: tuple[int, ...]
    rows: int = 5
    seeds: int = 3


def _video_means(x: np.ndarray, video: np.ndarray, n_v: np.ndarray) -> np.ndarray:
    """[..., U] unit values (units sorted by video) -> [..., V] video means."""
    return np.add.reduceat(x, np.r_[0, np.cumsum(n_v)[:-1]], axis=-1) / n_v


def _within(x: np.ndarray, video: np.ndarray, n_v: np.ndarray) -> float:
    """Pooled within-video variance of [S, U] unit values (each seed's videos)."""
    means = _video_means(x, video, n_v)
    resid = x - np.repeat(means, n_v, axis=-1)
    return float((resid**2).sum() / (x.shape[0] * (x.shape[-1] - len(n_v))))


def _parts(x: np.ndarray, video: np.ndarray, n_v: np.ndarray) -> tuple[float, float, float, float]:
    """(seed, video, resid, unit) components of [S, U] unit values (method of moments)."""
    m = _video_means(x, video, n_v)
    ms_v, ms_e = (float(v) for v in mean_squares(m))
    unit = _within(x, video, n_v)
    resid = max(ms_e - unit * float(np.mean(1 / n_v)), 0.0)
    seed = max(float(m.mean(-1).var(ddof=1)) - ms_e / m.shape[-1], 0.0)
    return seed, max((ms_v - ms_e) / m.shape[0], 0.0), resid, unit


def measure(rows: pd.DataFrame, metric: str, variants: list[str]) -> Spec | None:
    """The components of `metric`'s unit scores (in pp) in one split's per-sample rows of the
    Table-3 runs: each row's own from the pairwise contrasts (halved), the shared ones from each
    row's total minus its own. None without 2 seeds and 2 rows on common units."""
    u = unit_scores(rows, metric)
    x = u.pivot_table(index=["video", "unit"], columns=["variant", "seed"], values="x").dropna()
    seeds = sorted({s for _, s in x.columns})
    seeds = [s for s in seeds if all((v, s) in x.columns for v in variants)]
    if len(seeds) < 2 or len(variants) < 2 or x.empty:
        return None
    video = x.index.get_level_values("video").to_numpy()
    n_v = np.asarray(pd.Series(video).groupby(video, sort=False).size().to_numpy())
    arr = 100 * np.stack([np.stack([x[(v, s)].to_numpy() for s in seeds]) for v in variants])  # [R, S, U]
    own = (
        np.mean([_parts(arr[a] - arr[b], video, n_v) for a, b in itertools.combinations(range(len(variants)), 2)], 0)
        / 2
    )
    total = np.mean([_parts(arr[r], video, n_v) for r in range(len(variants))], 0)
    shared = np.maximum(total - own, 0.0)
    return Spec(
        *(float(v) for pair in zip(shared, own) for v in pair), tuple(int(n) for n in n_v), len(variants), len(seeds)
    )


def draw(spec: Spec, n: int, rng: np.random.Generator, extra_rows: int = 0) -> np.ndarray:
    """[n, R + extra, S, V] video pseudo-values (pp) of null tables (every row's true mean 0)."""
    r, s, n_v = spec.rows + extra_rows, spec.seeds, np.asarray(spec.units_per_video, float)
    v = len(n_v)

    def g(var: float, *shape: int) -> np.ndarray:
        return rng.normal(0.0, math.sqrt(var), (n, *shape))

    per_unit = (
        (g(spec.seed, 1, s, 1) + g(spec.seed_row, r, s, 1) + g(spec.video, 1, 1, v) + g(spec.video_row, r, 1, v))
        + g(spec.resid, 1, s, v)
        + g(spec.resid_row, r, s, v)
    )
    noise = g(spec.unit, 1, s, v) * np.sqrt(n_v) + g(spec.unit_row, r, s, v) * np.sqrt(n_v)
    return pseudo_values(per_unit * n_v + noise, np.broadcast_to(n_v, (n, r, s, v)))


@dataclass
class Simulated:
    sims: int
    fpr: dict[str, float] = field(default_factory=dict)  # kind of test -> share of null tests flagged
    fwer: float = math.nan  # the primary family under Holm: any step flagged
    d_primary: float = math.nan  # the detectable difference the report prints (median), primary family
    d_exploratory: float = math.nan
    power_primary: float = math.nan  # at d_primary planted in the first step, Holm
    power_exploratory: float = math.nan  # at d_exploratory, unadjusted at α
    coverage: float = math.nan  # a row's interval covering its true level

    def se(self, rate: float, tests: int = 1) -> float:
        return math.sqrt(rate * (1 - rate) / (self.sims * tests))


def _tests(z: np.ndarray, pairs: tuple[tuple[int, int], ...], conf: float) -> tuple[np.ndarray, list[Any]]:
    seed = between_rows(z.mean(-1))
    ests = [estimate(z[:, b] - z[:, a], seed, conf) for a, b in pairs]
    return np.stack([np.asarray(e.p) for e in ests], -1), ests


def videos_only_rejects(d: np.ndarray, alpha: float) -> np.ndarray:
    """[n, S, V] contrasts tested over the test videos alone, the trained models held fixed (the
    variance of the seed-averaged video values, MS_video / (S·V); normal quantile), as a bootstrap
    over pairs or videos does: which flag a difference."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = d.mean((-2, -1)) / np.sqrt(mean_squares(d)[0] / (d.shape[-2] * d.shape[-1]))
    return np.abs(z) > stats.norm.ppf(1 - alpha / 2)


def _bootstrap_rejects(d: np.ndarray, rng: np.random.Generator, conf: float) -> np.ndarray:
    """The two-stage percentile bootstrap (seeds, then videos, with replacement) of [n, S, V]:
    does its interval exclude 0?"""
    n, s, v = d.shape
    ws = rng.multinomial(s, np.full(s, 1 / s), BOOT).astype(float)
    wv = rng.multinomial(v, np.full(v, 1 / v), BOOT).astype(float)
    means = np.einsum("bs,nsb->nb", ws, np.einsum("nsv,bv->nsb", d, wv)) / (s * v)
    lo, hi = np.quantile(means, [(1 - conf) / 2, (1 + conf) / 2], axis=-1)
    return (lo > 0) | (hi < 0)


def simulate(
    spec: Spec, sims: int, confidence: float, power: float = 0.8, seed: int = 0, chunk: int = 500
) -> Simulated:
    """Null tables at `spec`, analysed as the report analyses Table 3 (module docstring)."""
    rng, alpha = np.random.default_rng(seed), 1 - confidence
    out, counts = Simulated(sims), {}
    d_pri, d_exp, worst, covered = [], [], [], 0
    for start in range(0, sims, chunk):
        z = draw(spec, min(chunk, sims - start), rng, extra_rows=2)
        table, sweep = z[:, : spec.rows], z[:, spec.rows :, :1]
        p_steps, ests = _tests(table, STEPS, confidence)
        p_vs, _ = _tests(table, VS_BASELINE, confidence)
        d = table[:, 1] - table[:, 0]
        own = estimate(d, own_seeds(d.mean(-1)), confidence)
        one_seed = estimate(sweep[:, 1] - sweep[:, 0], between_rows(table.mean(-1)), confidence, interaction(table))
        rows = estimate(table[:, 0], within_rows(table.mean(-1)), confidence)
        found = {
            "step": p_steps < alpha,
            "vs_baseline": p_vs < alpha,
            "one seed, Table 3's variances": np.asarray(one_seed.p)[:, None] < alpha,
            "own seeds only (2 df)": np.asarray(own.p)[:, None] < alpha,
            "test videos only (seeds fixed)": videos_only_rejects(d, alpha)[:, None],
            "two-stage bootstrap (3 seeds)": _bootstrap_rejects(d, rng, confidence)[:, None],
        }
        for k, f in found.items():
            counts[k] = counts.get(k, 0.0) + f.mean(-1).sum()
        worst += [float(p.min()) for p in p_steps]
        covered += int(((np.asarray(rows.lo) <= 0) & (np.asarray(rows.hi) >= 0)).sum())
        m = len(STEPS)
        d_pri += list(detectable(ests[0].se, ests[0].df, alpha / m, power))
        d_exp += list(detectable(ests[0].se, ests[0].df, alpha, power))
    out.fpr = {k: float(c / sims) for k, c in counts.items()}
    out.fwer = float(np.mean(np.asarray(worst) <= alpha / len(STEPS)))  # Holm flags any step iff min p <= α/m
    out.coverage = covered / sims
    out.d_primary, out.d_exploratory = float(np.median(d_pri)), float(np.median(d_exp))
    out.power_primary, out.power_exploratory = planted_power(spec, sims, confidence, out, rng, chunk)
    return out


def holm_adjusted(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values of each row of [n, m] p-values: statsmodels' multipletests(method=
    'holm') vectorised over rows (it runs gc.collect() on every call: 60 ms, too slow for a
    simulation of thousands of tables; tests hold the two equal)."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, -1) * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, -1)
    return out


def planted_power(
    spec: Spec, sims: int, confidence: float, out: Simulated, rng: np.random.Generator, chunk: int
) -> tuple[float, float]:
    """Power of the first step (Baseline → CCL) with a true difference equal to the printed d,
    every other step null (the difference added to every row but the first): under Holm at d
    primary, and unadjusted at α at d exploratory."""
    alpha, hits = 1 - confidence, [0, 0]
    for i, (delta, holm) in enumerate(((out.d_primary, True), (out.d_exploratory, False))):
        for start in range(0, sims, chunk):
            z = draw(spec, min(chunk, sims - start), rng)
            z[:, 1:] += delta
            p, _ = _tests(z, STEPS, confidence)
            if holm:
                hits[i] += int((holm_adjusted(p)[:, 0] <= alpha).sum())
            else:
                hits[i] += int((p[:, 0] < alpha).sum())
    return hits[0] / sims, hits[1] / sims


@dataclass
class AA:
    """A/A splits of one configuration's seeds into pseudo-rows (ablations/calibration.py)."""

    seeds: list[int]
    rows: int
    per_row: int
    splits: int
    fpr: dict[str, float]  # kind of test -> share of null steps flagged over the splits
    fwer: float


def aa_rates(z: np.ndarray, seeds: list[int], per_row: int, confidence: float, splits: int = 500, seed: int = 0) -> AA:
    """[S, V] pseudo-values of one configuration at many seeds, split at random into disjoint
    pseudo-rows of `per_row` seeds (as many as fit, at most 5): the share of Table-3 steps each
    test flags (every step is null), and the share of splits where Holm flags any step."""
    rng, alpha = np.random.default_rng(seed), 1 - confidence
    rows = min(len(seeds) // per_row, 5)
    pairs = tuple(p for p in STEPS if max(p) < rows) or ((0, 1),)
    tables = np.stack(
        [z[rng.permutation(len(seeds))[: rows * per_row]].reshape(rows, per_row, -1) for _ in range(splits)]
    )
    p, _ = _tests(tables, pairs, confidence)
    d = tables[:, pairs[0][1]] - tables[:, pairs[0][0]]
    fpr = {
        "step": float((p < alpha).mean()),
        "test videos only (seeds fixed)": float(videos_only_rejects(d, alpha).mean()),
    }
    return AA(list(seeds), rows, per_row, splits, fpr, float((p.min(-1) <= alpha / len(pairs)).mean()))


@dataclass
class Calibration:
    spec: Spec | None
    simulated: Simulated | None
    aa: AA | None = None
    aa_components: dict[str, float] | None = None  # seed / video / seed×video / unit, pp²

    def numbers(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "spec"}


def configuration_parts(rows: pd.DataFrame, metric: str) -> dict[str, float] | None:
    """Variance components (pp²) of one configuration's unit scores over its seeds: seed, video,
    seed × video and unit (a pair or an expression within its video)."""
    u = unit_scores(rows, metric)
    x = u.pivot_table(index=["video", "unit"], columns="seed", values="x").dropna()
    if x.shape[1] < 2 or x.empty:
        return None
    video = x.index.get_level_values("video").to_numpy()
    n_v = np.asarray(pd.Series(video).groupby(video, sort=False).size().to_numpy())
    return dict(zip(("seed", "video", "seed × video", "unit"), _parts(100 * x.to_numpy().T, video, n_v)))


def for_report(params: Any, an: Any, inp: Any) -> Calibration | None:
    """The simulation at the components Table 3 measures (report.simulations null tables), and,
    when ablations/calibration.py has run, its configuration's components and A/A rates."""
    t = an.tables[an.primary_metric]
    if t.empty or len(t.seeds) < 2 or len(t.rows) < 5:
        return None
    conf = params.report.confidence
    rows = inp.per_sample[(inp.per_sample["split"] == "test") & inp.per_sample["seed"].isin(t.seeds)]
    spec = measure(rows, an.primary_metric, t.rows)
    sim = simulate(spec, params.report.simulations, conf, params.report.power) if spec else None
    out = Calibration(spec, sim)
    if inp.calibration is not None:
        runs = inp.calibration[inp.calibration["split"] == "test"]
        one = run_table(runs.assign(variant="A"), an.primary_metric)
        if not one.empty and len(one.seeds) >= 2 * len(t.seeds):
            out.aa = aa_rates(one.z[0], one.seeds, len(t.seeds), conf)
            out.aa_components = configuration_parts(runs, an.primary_metric)
    return out
