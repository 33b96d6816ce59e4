"""The report's comparison tables: verdicts, exploratory comparisons, variance components, the
shuffled control, strata, sweeps, readings and the calibration, rendered from reports.analysis
(every number recorded in `Numbers` under the test's key)."""

from __future__ import annotations

import math

import pandas as pd

from reports import paper
from reports.analysis import Analysis, Comparison
from reports.calibration import Calibration
from reports.protocol import A2D, Protocol
from reports.strata import StrataAnalysis
from reports.sweeps import ReadingsAnalysis, SweepAnalysis
from reports.tables import DASH, Numbers, Table


def _cells(t: Comparison, an: Analysis, num: Numbers, adjusted: str) -> list[str]:
    """Δ [CI], p, the adjusted p (or q), d and the verdict of one test."""
    return [
        num.diff(t.key, t.est),
        num.p(f"{t.key}/p", t.est.p),
        num.p(f"{t.key}/{adjusted}", t.p_adj),
        num.put(f"{t.key}/d", t.d),
        t.verdict(an.alpha),
    ]


def primary(an: Analysis, num: Numbers, proto: Protocol = A2D) -> Table:
    """The primary family: each comparison on the primary metric with Holm's adjusted p, the
    detectable difference at α / m and the verdict; on A2D the paper's step next to it."""
    pri = proto.short(an.primary_metric)
    header = ["Comparison", f"Δ {pri} (pp)\n[CI]", "p", "Holm\np", "d (pp)", "verdict"]
    t = Table(header + (["paper\nΔ"] if proto.cvls_paper else []))
    for x in an.primary:
        row = [f"{x.a} → {x.b}", *_cells(x, an, num, "holm")]
        if proto.cvls_paper:
            pa, pb = (paper.TABLE3.get(v, {}).get(x.metric) for v in (x.a, x.b))
            row.append(
                num.put(
                    f"paper/step/{x.a}->{x.b}/{x.metric}", None if pa is None or pb is None else pb - pa, signed=True
                )
            )
        t.rows.append(row)
    return t


def exploratory(
    tests: list[Comparison], an: Analysis, num: Numbers, proto: Protocol = A2D, label: str = "Comparison"
) -> Table:
    """Exploratory comparisons: Δ [CI], p, the Benjamini-Hochberg q over every exploratory test of
    the report, d at α and the verdict (read from q)."""
    t = Table([label, "metric", "Δ (pp) [CI]", "p", "BH q", "d (pp)", "verdict"])
    for x in tests:
        name = f"{x.a} → {x.b}" if x.kind in ("step", "vs_baseline", "sensitivity", "stratum") else x.b
        t.rows.append([name, proto.short(x.metric), *_cells(x, an, num, "q")])
    return t


def components(an: Analysis, num: Numbers, proto: Protocol = A2D) -> Table:
    """Per Table-3 metric, a contrast's variance components (pp², averaged over the steps and rows
    vs Baseline) and what each puts into the standard error of a difference at this table's seeds."""
    t = Table(["metric", "σ² seed", "σ² video", "σ² residual", "seed share\nof SE²", "SE of a Δ\n(pp)"])
    t_ = an.tables[an.primary_metric]
    s, v = len(t_.seeds), len(t_.videos)
    for m, c in an.components.items():
        seed_term, video_term = (c.seed + c.resid / v) / s, c.video / v
        total = seed_term + video_term
        key = f"components/{m}"
        t.rows.append(
            [
                proto.short(m),
                num.put(f"{key}/seed", c.seed, 2),
                num.put(f"{key}/video", c.video, 2),
                num.put(f"{key}/resid", c.resid, 1),
                num.put(f"{key}/seed_share", 100 * seed_term / total if total > 0 else None, 0) + "%",
                num.put(f"{key}/se", math.sqrt(total), 2),
            ]
        )
    return t


def shuffled(an: Analysis, results: pd.DataFrame, main: dict, num: Numbers, proto: Protocol = A2D) -> Table:
    """Each row with its own sentences against its shuffled-sentence control, on the primary
    metric: both levels (mean over seeds) and the paired difference with both variances."""
    pri = an.primary_metric
    label = proto.short(pri)
    t = Table(["variant", f"test {label}", f"shuffled {label}", "Δ (pp) [CI]", "BH q", "verdict"])
    for x in an.of("shuffled"):
        g = results[results["variant"] == x.b]
        key = f"shuffled/{x.b}"
        t.rows.append(
            [
                x.b,
                num.put(f"{key}/test_{pri}", g[f"test/{pri}"].mean()),
                num.put(f"{key}/shuffled_{pri}", g[f"test_shuffled/{pri}"].mean()),
                num.diff(x.key, x.est),
                num.p(f"{x.key}/q", x.p_adj),
                x.verdict(an.alpha),
            ]
        )
    a, b = (main.get(s, {}).get(pri, math.nan) for s in ("test", "test_shuffled"))
    t.rows.append(
        [
            "main run",
            num.put(f"shuffled/main run/test_{pri}", a),
            num.put(f"shuffled/main run/shuffled_{pri}", b),
            DASH,
            DASH,
            DASH,
        ]
    )
    return t


def strata_cells(s: StrataAnalysis, metric: str, num: Numbers, proto: Protocol = A2D) -> Table:
    """Rows: variants; columns: strata; cells: mean ± CI (both variances); last row: the units the
    metric counts in each stratum (pairs, expressions, or pairs with another actor for grounding)."""
    t = Table(["Variant", "seeds", *(x.replace("=", "=\n") for x in s.strata)])
    variants = list(dict.fromkeys(v for (_, v, m) in s.cells if m == metric))
    for v in variants:
        cells = [num.est(f"strata/{v}/{x}/{metric}", s.cells.get((x, v, metric))) for x in s.strata]
        t.rows.append([v, num.put(f"strata/{v}/n_seeds", s.seeds), *cells])
    kind = "n_grounding" if metric in ("grounding", "committed") else "n"
    counts = [num.put(f"strata/{kind}/{x}", s.units.get((x, metric))) for x in s.strata]
    t.rows.append([f"test {proto.units(2)} (n)" if kind == "n" else "pairs with\nanother actor", "", *counts])
    return t


def strata_tests(tests: list[Comparison], an: Analysis, num: Numbers) -> Table:
    """Per stratum, the full model minus the Baseline (exploratory)."""
    t = Table(["stratum", "Δ (pp) [CI]", "p", "BH q", "d (pp)", "verdict"])
    for x in tests:
        t.rows.append([x.scope, *_cells(x, an, num, "q")])
    return t


def sweep_tests(sw: SweepAnalysis, an: Analysis, num: Numbers, proto: Protocol = A2D) -> Table:
    """Each point minus the default point, on val and test (exploratory)."""
    t = Table(["point", "split", f"Δ {proto.short(an.primary_metric)} (pp) [CI]", "p", "BH q", "d (pp)", "verdict"])
    for x in an.of("fig6", scope=sw.study):  # the corrected tests (sw.tests are before the correction)
        t.rows.append([f"{x.b} − {x.a}", x.split, *_cells(x, an, num, "q")])
    return t


def readings(r: ReadingsAnalysis, an: Analysis, num: Numbers, proto: Protocol = A2D) -> Table:
    """Table 3 under each [open] reading: each row's primary and secondary level and its primary
    difference from the reading's Baseline."""
    pri, sec = r.metrics
    t = Table(
        [
            "Reading",
            "Variant",
            "seeds",
            proto.short(pri),
            f"Δ {proto.short(pri)} vs\nBaseline [CI]",
            "BH q",
            proto.short(sec),
        ]
    )
    for reading in r.readings:
        for v in r.variants:
            key = f"sensitivity/{reading}/{v}"
            x = next((x for x in an.of("sensitivity", pri, reading) if x.b == v), None)
            t.rows.append(
                [
                    reading,
                    v,
                    num.put(f"{key}/n_seeds", r.seeds.get(reading)),
                    num.est(f"{key}/{pri}", r.cells.get((reading, v, pri))),
                    DASH if x is None else num.diff(x.key, x.est),
                    DASH if x is None else num.p(f"{x.key}/q", x.p_adj),
                    num.est(f"{key}/{sec}", r.cells.get((reading, v, sec))),
                ]
            )
    return t


def simulated(cal: Calibration, num: Numbers) -> Table:
    """The simulated rates: each kind of test's share of null differences flagged, with its
    Monte-Carlo standard error."""
    sim = cal.simulated
    t = Table(["test", "null flagged (%)", "± MC s.e.", "claimed (%)"])
    claimed = {"step": 5, "vs_baseline": 5, "one seed, Table 3's variances": 5}
    for kind, rate in sim.fpr.items():
        key = f"calibration/fpr/{kind}"
        t.rows.append(
            [kind, num.put(key, 100 * rate), num.put(key + "/se", 100 * sim.se(rate), 1), str(claimed.get(kind, 5))]
        )
    t.rows.append(
        [
            "primary family, any step (Holm)",
            num.put("calibration/fwer", 100 * sim.fwer),
            num.put("calibration/fwer/se", 100 * sim.se(sim.fwer), 1),
            "≤ 5",
        ]
    )
    return t


def aa(cal: Calibration, num: Numbers) -> Table:
    """The A/A rates over random splits of the calibration runs' seeds into pseudo-rows."""
    t = Table(["test (A/A: the same configuration in every row)", "null steps flagged (%)"])
    for kind, rate in cal.aa.fpr.items():
        t.rows.append([kind, num.put(f"calibration/aa/{kind}", 100 * rate)])
    t.rows.append(["primary family, any step (Holm)", num.put("calibration/aa/fwer", 100 * cal.aa.fwer)])
    return t
