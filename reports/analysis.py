"""Every number the report infers, as typed values: tables render them, pages narrate them.

What is compared (reports.inference says how: each comparison counts the training seeds and
the test videos):
- Table 3: each row's level; each incremental step (a row adding one component) and each row
  against the Baseline, on every Table-3 metric;
- each row against its own shuffled-sentence control;
- each row against the language-blind reference (a predictor that knows the referent's class,
  not the sentence; its interval counts the test videos alone: it has no seeds);
- per stratum, the full model against the Baseline (reports.strata); each Fig. 6 point against
  the default point and each [open] reading's rows against its Baseline (reports.sweeps).

Families (report.primary, report.primary_metric): the primary family, the Table-3 steps (or the
rows against the Baseline) on the primary metric, is read with Holm's step-down adjustment, so
the chance of any false "helps"/"hurts" in it stays at α = 1 − report.confidence; every other
comparison is exploratory and gets a Benjamini-Hochberg q-value over all of them (the expected
share of false findings among those flagged). Both from statsmodels.stats.multitest. A verdict
reads the adjusted p (or q): below α a row "helps" (or "hurts"), otherwise "no evidence"; the
detectable difference d is the true difference the test finds with probability report.power at
the level it is read at (α / m, Holm's first step, in the primary family; α otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from core.config import Params
from reports import paper
from reports.inference import (
    Components,
    Estimate,
    SeedVariance,
    between_rows,
    components,
    detectable,
    estimate,
    seeds_needed,
    within_rows,
)
from reports.protocol import Protocol, protocol
from reports.scores import THRESHOLDS, RunTable, run_table
from reports.variants import baseline, full, incremental_steps

PRIMARY, EXPLORATORY = "primary", "exploratory"
COMPONENT_KINDS = ("step", "vs_baseline", "stratum", "sensitivity")  # verdict words: helps / hurts
TABLE3_KINDS = ("step", "vs_baseline")
NO_SEEDS = SeedVariance(0.0, math.inf)  # a reference that is not trained (the language-blind predictor)


@dataclass(frozen=True)
class Comparison:
    """One comparison: b − a on `metric` of `split`, in pp."""

    kind: str  # step | vs_baseline | shuffled | blind | stratum | fig6 | sensitivity
    a: str
    b: str
    metric: str
    split: str
    est: Estimate
    scope: str = ""  # the stratum, the study or the reading
    family: str = EXPLORATORY
    level: float = math.nan  # the level `d` is stated at
    d: float = math.nan  # the detectable difference at report.power and `level`
    p_adj: float = math.nan  # Holm's adjusted p (primary) or the BH q-value (exploratory)

    @property
    def key(self) -> str:
        return "/".join(x for x in (self.kind, self.scope, f"{self.a}->{self.b}", self.split, self.metric) if x)

    def verdict(self, alpha: float) -> str:
        if not math.isfinite(self.p_adj):
            return "n/a"
        if self.p_adj >= alpha:
            return "no evidence"
        up = float(self.est.value) > 0
        if self.kind in COMPONENT_KINDS:
            return "helps" if up else "hurts"
        return "higher" if up else "lower"


@dataclass(frozen=True)
class SeedsNeeded:
    label: str  # "1 pp", or the paper's step
    delta: float
    seeds: int | None  # None: more than inference.seeds_needed's `most` (the test videos are the limit)


@dataclass
class Analysis:
    alpha: float
    power: float
    primary_metric: str
    tables: dict[str, RunTable]  # metric -> Table 3's runs on test
    rows: dict[tuple[str, str], Estimate]  # (variant, metric) -> the row's level
    references: dict[tuple[str, str], Estimate] = field(default_factory=dict)  # (bound, metric) -> level
    tests: list[Comparison] = field(default_factory=list)
    components: dict[str, Components] = field(default_factory=dict)  # metric -> a Table-3 contrast's
    seeds_needed: list[SeedsNeeded] = field(default_factory=list)
    strata: Any = None  # reports.strata.StrataAnalysis
    sweeps: dict[str, Any] = field(default_factory=dict)  # study -> reports.sweeps.SweepAnalysis
    readings: Any = None  # reports.sweeps.ReadingsAnalysis (ablations/sensitivity.py ran)
    calibration: Any = None  # reports.calibration.Calibration

    def of(self, kind: str | tuple[str, ...], metric: str | None = None, scope: str | None = None) -> list[Comparison]:
        kinds = (kind,) if isinstance(kind, str) else kind
        return [
            t
            for t in self.tests
            if t.kind in kinds and (metric is None or t.metric == metric) and (scope is None or t.scope == scope)
        ]

    @property
    def primary(self) -> list[Comparison]:
        return [t for t in self.tests if t.family == PRIMARY]

    @property
    def seeds(self) -> int:
        return len(self.tables[self.primary_metric].seeds)

    def detectable(self, metric: str, family: str) -> float:
        """The median detectable difference of the Table-3 comparisons on `metric` in `family`."""
        ds = [t.d for t in self.of(TABLE3_KINDS, metric) if t.family == family and math.isfinite(t.d)]
        return float(np.median(ds)) if ds else math.nan


def primary_metric(params: Params, proto: Protocol) -> str:
    return params.report.primary_metric or proto.primary


def split_rows(per_sample: pd.DataFrame, split: str) -> pd.DataFrame:
    return per_sample[per_sample["split"] == split]


def levels(t: RunTable, seed: SeedVariance, confidence: float) -> dict[str, Estimate]:
    """Each row's level: its own seeds × videos, its seed variance `seed` (pooled within rows)."""
    return {name: estimate(t.row(name), seed, confidence) for name in t.rows}


def contrast(t: RunTable, a: str, b: str, confidence: float) -> Estimate:
    """b − a paired by seed and video, the seed variance pooled over the table's rows."""
    return estimate(t.row(b) - t.row(a), between_rows(t.y), confidence)


def table3_tests(
    results: pd.DataFrame, tables: dict[str, RunTable], params: Params, proto: Protocol
) -> list[Comparison]:
    """The steps and the rows against the Baseline (a pair that is both, once), on every Table-3
    metric; the primary family marked (report.primary on the primary metric)."""
    conf, pri = params.report.confidence, primary_metric(params, proto)
    steps, base = incremental_steps(results), baseline(results)
    pairs = [*steps, *((base, v) for v in tables[pri].rows if v != base and (base, v) not in steps)]
    out = []
    for m in proto.table3:
        for a, b in pairs:
            kind = "step" if (a, b) in steps else "vs_baseline"
            chosen = kind == "step" if params.report.primary == "steps" else a == base
            family = PRIMARY if m == pri and chosen else EXPLORATORY
            out.append(Comparison(kind, a, b, m, "test", contrast(tables[m], a, b, conf), family=family))
    return out


def shuffled_tests(per_sample: pd.DataFrame, variants: list[str], metric: str, confidence: float) -> list[Comparison]:
    """Each row's test score minus its shuffled-sentence control (the same runs, frames and
    referents, each with another sample's sentence); the seed variance pooled over the rows."""
    own = run_table(split_rows(per_sample, "test"), metric, variants)
    shuffled = run_table(split_rows(per_sample, "test_shuffled"), metric, variants, own.seeds)
    if own.empty or own.videos != shuffled.videos or own.seeds != shuffled.seeds:
        return []
    d = own.z - shuffled.z
    seed = within_rows(d.mean(-1))
    return [
        Comparison("shuffled", "shuffled", v, metric, "test", estimate(d[i], seed, confidence))
        for i, v in enumerate(own.rows)
    ]


def bound_table(bound_pairs: pd.DataFrame | None, bound: str, metric: str) -> RunTable | None:
    """A bound on test (oracle, language_blind) as a one-run table, from the evaluate stage's
    bound_pairs.csv (each pair's score; the language-blind one expected over its picks)."""
    if bound_pairs is None:
        return None
    rows = bound_pairs[(bound_pairs["split"] == "test") & (bound_pairs["bound"] == bound)]
    t = run_table(rows.assign(variant=bound, seed=0), metric) if not rows.empty else None
    return None if t is None or t.empty else t


def blind_tests(t: RunTable, blind: RunTable, metric: str, confidence: float) -> list[Comparison]:
    """Each row minus the language-blind reference on the videos both scored; the seed variance
    is the row's own (pooled within Table 3's rows), the reference has none."""
    common = [v for v in t.videos if v in set(blind.videos)]
    ti, bi = [t.videos.index(v) for v in common], [blind.videos.index(v) for v in common]
    seed = within_rows(t.y)
    return [
        Comparison(
            "blind",
            "language-blind",
            r,
            metric,
            "test",
            estimate(t.row(r)[:, ti] - blind.z[0, 0][None, bi], seed, confidence),
        )
        for r in t.rows
    ]


def correct(tests: list[Comparison], alpha: float, target: float) -> list[Comparison]:
    """Holm over the primary family, BH over the rest (a NaN p is left out), then each test's
    detectable difference at the level it is read at (α / m for the primary family)."""
    out = list(tests)
    for family, method in ((PRIMARY, "holm"), (EXPLORATORY, "fdr_bh")):
        idx = [i for i, t in enumerate(out) if t.family == family and math.isfinite(float(t.est.p))]
        if not idx:
            continue
        adjusted = multipletests([float(out[i].est.p) for i in idx], alpha=alpha, method=method)[1]
        level = alpha / len(idx) if family == PRIMARY else alpha
        for i, q in zip(idx, adjusted):
            t = out[i]
            d = float(detectable(t.est.se, t.est.df, level, target)) if float(t.est.se) > 0 else math.nan
            out[i] = replace(t, p_adj=float(q), level=level, d=d)
    return out


def pooled_components(t: RunTable, tests: list[Comparison]) -> Components | None:
    """A Table-3 contrast's variance components on t's metric, averaged over its comparisons
    (the seed one from the pooled variant × seed interaction)."""
    if t.empty or len(t.seeds) < 2 or not tests:
        return None
    seed = between_rows(t.y)
    cs = [components(t.row(x.b) - t.row(x.a), seed) for x in tests]
    return Components(*(float(np.mean([getattr(c, f) for c in cs])) for f in ("seed", "video", "resid")))


def needed(an: Analysis, proto: Protocol, results: pd.DataFrame) -> list[SeedsNeeded]:
    """Seeds for report.power at 1 and 2 pp and at each of the paper's steps (A2D), on the primary
    metric, read as the primary family is (Holm's first step, α / m)."""
    c, t = an.components.get(an.primary_metric), an.tables[an.primary_metric]
    if c is None:
        return []
    targets = [(f"{x} pp", float(x)) for x in (1, 2)]
    if proto.cvls_paper:
        for a, b in incremental_steps(results):
            pa, pb = (paper.TABLE3.get(v, {}).get(an.primary_metric) for v in (a, b))
            if pa is not None and pb is not None:
                targets.append((f"paper {a} → {b}", round(pb - pa, 1)))
    level = an.alpha / max(len(an.primary), 1)
    return [
        SeedsNeeded(label, delta, seeds_needed(delta, c, len(t.videos), len(t.rows), level, an.power))
        for label, delta in targets
    ]


def analyze(params: Params, inp: Any) -> Analysis:
    """The analysis of everything the report reads (`inp`: reports.inputs.ReportInputs)."""
    from reports import calibration, strata, sweeps  # they build on this module's tests

    proto, conf = protocol(params), params.report.confidence
    results, per_sample = inp.results, inp.per_sample
    variants = list(dict.fromkeys(results["variant"]))
    metrics = (*proto.table3, *THRESHOLDS)
    tables = {m: run_table(split_rows(per_sample, "test"), m, variants) for m in metrics}
    rows = {(v, m): e for m, t in tables.items() if not t.empty for v, e in levels(t, within_rows(t.y), conf).items()}
    an = Analysis(1 - conf, params.report.power, primary_metric(params, proto), tables, rows)
    seeded = an.seeds >= 2
    tests = table3_tests(results, tables, params, proto) if seeded else []
    tests += shuffled_tests(per_sample, variants, an.primary_metric, conf)
    for m, bound in ((m, b) for m in proto.table3 for b in ("oracle", "language_blind")):
        ref = bound_table(inp.bound_pairs, bound, m)
        if ref is not None:  # a bound is not trained: its interval counts the test videos alone
            an.references[(bound, m)] = estimate(ref.z[0], NO_SEEDS, conf)
            tests += blind_tests(tables[m], ref, m, conf) if seeded and bound == "language_blind" else []
    an.strata = strata.analyze(params, per_sample, variants, baseline(results), full(results))
    tests += an.strata.tests
    an.sweeps = sweeps.analyze_studies(params, inp)
    tests += [t for s in an.sweeps.values() for t in s.tests]
    an.readings = sweeps.analyze_readings(params, inp.sensitivity)
    tests += an.readings.tests if an.readings is not None else []
    an.tests = correct(tests, an.alpha, an.power)
    an.components = {m: c for m in proto.table3 if (c := pooled_components(tables[m], an.of(TABLE3_KINDS, m)))}
    an.seeds_needed = needed(an, proto, results)
    an.calibration = calibration.for_report(params, an, inp)
    return an
