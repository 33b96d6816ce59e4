"""Fig. 6a/6b and the [open] readings: each point's level and each point against the default, and
Table 3 under each reading, counting seeds and test videos like Table 3 (reports.inference).

A sweep trains the full model at each point with params studies.seeds (by default one seed). With
two or more seeds at every point the seed variance is pooled over the sweep's points; with one,
no seed variance can be measured there, so each point borrows Table 3's (pooled over its rows on
the same split and metric, from ablation/results.csv) and its video term also holds the residual
(conservative; reports.inference.estimate). Either way a point's interval counts both variances,
and each point against the default point is paired by seed and video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.config import Params
from reports.analysis import Comparison, contrast, levels, primary_metric
from reports.inference import (
    Estimate,
    Residual,
    SeedVariance,
    between_rows,
    estimate,
    interaction,
    within_rows,
    within_rows_residual,
)
from reports.protocol import protocol
from reports.scores import RunTable, run_table
from reports.variants import baseline

STUDIES = {"rhic_ratio": "rhic", "lambda_sensitivity": "lam"}  # study -> its ReportInputs table
SPLITS = ("val", "test")


@dataclass
class SweepAnalysis:
    study: str
    default: str | None  # the point params.yaml trains (the main run's value), when swept
    points: list[str] = field(default_factory=list)
    seeds: int = 0  # seeds every point has
    borrowed: bool = False  # one seed per point: the seed variance is Table 3's
    cells: dict[tuple[str, str, str], Estimate] = field(default_factory=dict)  # (point, split, metric)
    tests: list[Comparison] = field(default_factory=list)  # point − default, per split, on the primary metric
    without_samples: int = 0  # runs without <run>/eval/per_sample.csv (no interval)

    def intervals(self, metric: str) -> pd.DataFrame:
        """point, split, lo, hi of `metric` at every point with an interval (for the figure)."""
        rows = [(p, s, e.lo, e.hi) for (p, s, m), e in self.cells.items() if m == metric]
        return pd.DataFrame(rows, columns=["point", "split", "lo", "hi"])


def default_point(params: Params, study: str) -> str:
    if study == "rhic_ratio":
        return str(params.loss.rhic_ratio).strip()
    return repr(float(params.loss.lambda_seg))


def point_text(study: str, value: Any) -> str:
    return repr(float(value)) if study == "lambda_sensitivity" else str(value).strip()


@dataclass(frozen=True)
class Borrowed:
    """The variances a sweep's points are read with: the seed variance of a point's level and of
    a contrast and, for a one-seed sweep that takes them from Table 3 (same split and metric), the
    residual of each where Table 3's per-sample rows have the split (else None: the point's video
    term keeps its residual, a conservative interval)."""

    level: SeedVariance
    contrast: SeedVariance
    level_resid: Residual | None = None
    contrast_resid: Residual | None = None


def borrowed(results: pd.DataFrame, per_sample: pd.DataFrame, split: str, metric: str) -> Borrowed | None:
    """Table 3's variances on `split` and `metric`: from its per-sample rows when they have the
    split, else from results.csv's run scores (the seed variances alone)."""
    rows = per_sample[per_sample["split"] == split]  # older ablation tables have no val rows
    t = run_table(rows, metric, list(dict.fromkeys(results["variant"]))) if not rows.empty else None
    if t is not None and not t.empty and len(t.seeds) >= 2:
        return Borrowed(within_rows(t.y), between_rows(t.y), within_rows_residual(t.z), interaction(t.z))
    column = f"{split}/{metric}"
    if column not in results.columns:
        return None
    y = results.pivot_table(index="variant", columns="seed", values=column, sort=False).dropna(axis=1)
    return Borrowed(within_rows(y.to_numpy()), between_rows(y.to_numpy())) if y.shape[1] >= 2 else None


def sweep_rows(df: pd.DataFrame, samples: dict[str, pd.DataFrame], study: str) -> tuple[pd.DataFrame, int]:
    """The sweep's per-sample rows (variant = the point, seed), and how many runs have none."""
    parts, missing = [], 0
    for r in df.itertuples(index=False):
        s = samples.get(str(r.run_hash))
        if s is None:
            missing += 1
            continue
        parts.append(s.assign(variant=point_text(study, r.point), seed=int(r.seed)))
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), missing


def analyze_study(
    params: Params,
    study: str,
    df: pd.DataFrame,
    samples: dict[str, pd.DataFrame],
    results: pd.DataFrame,
    table3: pd.DataFrame,
) -> SweepAnalysis:
    """Each point's level and each point against the default (`table3`: Table 3's per-sample rows,
    whose variances a one-seed sweep borrows)."""
    proto, conf = protocol(params), params.report.confidence
    points = list(dict.fromkeys(point_text(study, p) for p in df["point"]))
    default = default_point(params, study)
    out = SweepAnalysis(study, default if default in points else None, points)
    rows, out.without_samples = sweep_rows(df, samples, study)
    if rows.empty:
        return out
    for split in SPLITS:
        for metric in (proto.primary, proto.secondary):
            t = run_table(rows[rows["split"] == split], metric, [p for p in points if p in set(rows["variant"])])
            if t.empty:
                continue
            out.seeds, out.borrowed = len(t.seeds), len(t.seeds) < 2
            if not out.borrowed:
                var: Borrowed | None = Borrowed(within_rows(t.y), between_rows(t.y))
            else:
                var = borrowed(results, table3, split, metric)
            if var is None:
                continue
            out.cells |= {(p, split, metric): estimate(t.row(p), var.level, conf, var.level_resid) for p in t.rows}
            if out.default in t.rows and metric == primary_metric(params, proto):
                out.tests += point_tests(t, out.default, var, study, split, metric, conf)
    return out


def point_tests(
    t: RunTable, default: str, var: Borrowed, study: str, split: str, metric: str, conf: float
) -> list[Comparison]:
    """Each point minus the default point, paired by seed and video."""
    return [
        Comparison(
            "fig6",
            default,
            p,
            metric,
            split,
            estimate(t.row(p) - t.row(default), var.contrast, conf, var.contrast_resid),
            scope=study,
        )
        for p in t.rows
        if p != default
    ]


def analyze_studies(params: Params, inp: Any) -> dict[str, SweepAnalysis]:
    return {
        s: analyze_study(params, s, getattr(inp, attr), inp.study_samples, inp.results, inp.per_sample)
        for s, attr in STUDIES.items()
    }


@dataclass
class ReadingsAnalysis:
    """Table 3 under each [open] reading (ablations/sensitivity.py): levels and rows vs Baseline."""

    readings: list[str]
    variants: list[str]
    metrics: tuple[str, str]  # primary, secondary
    seeds: dict[str, int] = field(default_factory=dict)
    cells: dict[tuple[str, str, str], Estimate] = field(default_factory=dict)  # (reading, variant, metric)
    tests: list[Comparison] = field(default_factory=list)


def analyze_readings(
    params: Params, sensitivity: tuple[pd.DataFrame, dict[str, pd.DataFrame]] | None
) -> ReadingsAnalysis | None:
    """Per reading of sensitivity/results.csv (one row per reading, variant and seed, with its
    run_hash), each variant's level and its difference from the reading's Baseline, from the
    runs' own per-sample tables."""
    if sensitivity is None:
        return None
    results, samples = sensitivity
    proto, conf = protocol(params), params.report.confidence
    metrics = (proto.primary, proto.secondary)
    out = ReadingsAnalysis(list(dict.fromkeys(results["reading"])), list(dict.fromkeys(results["variant"])), metrics)
    for reading, g in results.groupby("reading", sort=False):
        parts = [
            samples[h].assign(variant=v, seed=s)
            for v, s, h in g[["variant", "seed", "run_hash"]].itertuples(index=False)
            if h in samples
        ]
        if not parts:
            continue
        rows = pd.concat(parts, ignore_index=True)
        rows = rows[rows["split"] == "test"]
        base = baseline(g) if {"ccl", "rhic", "lcf"} <= set(g.columns) else out.variants[0]
        for metric in metrics:
            t = run_table(rows, metric, list(dict.fromkeys(g["variant"])))
            if t.empty or len(t.seeds) < 2:
                continue
            out.seeds[reading] = len(t.seeds)
            out.cells |= {(reading, v, metric): e for v, e in levels(t, within_rows(t.y), conf).items()}
            out.tests += [
                Comparison("sensitivity", base, v, metric, "test", contrast(t, base, v, conf), scope=reading)
                for v in t.rows
                if v != base
            ]
    return out
