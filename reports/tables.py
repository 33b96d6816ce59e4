"""The report's tables as text cells, each number recorded under a key exactly as printed.

`Numbers` formats every number that goes into a table and remembers it, so report_numbers.json
holds the same values the PDF shows (value == float(text)), and tests can check one against the
other and against the result tables. The numbers come from reports.analysis; nothing here infers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.bounds import share_of_headroom
from reports import paper
from reports.analysis import Analysis
from reports.inference import Estimate
from reports.protocol import A2D, Protocol
from reports.scores import THRESHOLDS

DASH = "–"
PM = "±"
NA = "n/a"  # a number that cannot exist for this data (not a missing one, which is DASH)
BOUND_LABELS = {"oracle": "oracle ceiling", "language_blind": "language-blind reference"}


class Numbers:
    """Formats numbers for the tables and records them: key -> {'value', 'text'}."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put(self, key: str, value: float | int | None, digits: int = 1, signed: bool = False) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            self.items[key] = {"value": None, "text": DASH}
            return DASH
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            text = str(int(value))
        else:
            text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
            if float(text) == 0:
                text = f"{0:.{digits}f}"  # no '-0.0' / '+0.0'
        self.items[key] = {"value": float(text), "text": text}
        return text

    def pm(self, key: str, mean_: float, half_: float, digits: int = 1) -> str:
        """'mean ± half' (the mean alone without an interval); records key/mean and key/ci."""
        mean = self.put(f"{key}/mean", mean_, digits)
        half = self.put(f"{key}/ci", half_, digits)
        return mean if half == DASH else f"{mean} {PM} {half}"

    def p(self, key: str, p: float) -> str:
        """p-values: three decimals, scientific notation below 0.001."""
        if not math.isfinite(p):
            return self.put(key, None)
        if p >= 0.001:
            return self.put(key, p, 3)
        text = f"{p:.1e}"
        self.items[key] = {"value": float(text), "text": text}
        return text

    def est(self, key: str, e: Estimate | None, digits: int = 1) -> str:
        """A level 'mean ± half' (its interval is symmetric); records key/mean and key/ci."""
        if e is None:
            return self.put(f"{key}/mean", None)
        return self.pm(key, e.value, (e.hi - e.lo) / 2, digits)

    def diff(self, key: str, e: Estimate, digits: int = 1) -> str:
        """A difference 'Δ [lo, hi]'; records key/diff, key/lo, key/hi."""
        d = self.put(f"{key}/diff", e.value, digits, signed=True)
        ci = self.interval(key, e.lo, e.hi, digits)
        return d if ci == DASH else f"{d} {ci}"

    def interval(self, key: str, lo: float, hi: float, digits: int = 1) -> str:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return DASH
        return f"[{self.put(key + '/lo', lo, digits, signed=True)}, {self.put(key + '/hi', hi, digits, signed=True)}]"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    bold_rows: tuple[int, ...] = ()  # row indices to emphasise (e.g. the paper's row)


def table3(
    an: Analysis, variants: list[str], full: str, num: Numbers, bounds: dict | None, proto: Protocol = A2D
) -> Table:
    """Table 3 reproduced: each row's level per Table-3 metric (mean ± CI counting seeds and test
    videos) next to the context numbers (A2D: the paper's rows); under the rows the bounds as
    references: the language-blind predictor with its interval over the test videos (from
    bound_pairs.csv; else bounds.json's value alone) and the oracle ceiling (bounds.json)."""
    header = ["Variant", "seeds"]
    for m in proto.table3:
        header += [f"{proto.short(m)}\nours (± CI)", f"{proto.short(m)}\n{proto.context_label}"]
    t = Table(header)
    for v in variants:
        row = [v, num.put(f"table3/{v}/n_seeds", an.seeds)]
        for m in proto.table3:
            row.append(num.est(f"table3/{v}/test/{m}", an.rows.get((v, m))))
            row.append(num.put(f"{proto.context_key}/{v}/{m}", proto.context(v, m, full)))
        t.rows.append(row)
    for b, label in BOUND_LABELS.items():
        if (bounds is None or b not in bounds) and not any(k[0] == b for k in an.references):
            continue
        row = [label, DASH]
        for m in proto.table3:
            e = an.references.get((b, m))
            value = (bounds or {}).get(b, {}).get(m)
            row += [num.est(f"bounds/test/{b}/{m}", e) if e else num.put(f"bounds/test/{b}/{m}", value), DASH]
        t.rows.append(row)
    return t


def headroom(an: Analysis, bounds: dict, num: Numbers, proto: Protocol = A2D) -> Table:
    """Each row against the language-blind reference on the primary and secondary metric: the
    difference with its interval and q, and the share of the headroom it closes, (row − blind) /
    (oracle − blind), printed only where the row is above the reference (q < α): below it, or
    not told apart from it, a share of the gap to the ceiling means nothing."""
    metrics = (proto.primary, proto.secondary)
    header = ["Variant"]
    for m in metrics:
        header += [f"Δ {proto.short(m)} vs blind\n(pp) [CI]", "q", "headroom\nclosed (%)"]
    t = Table(header)
    oracle = {m: e.value for (b, m), e in an.references.items() if b == "oracle"} or bounds.get("oracle", {})
    for v in dict.fromkeys(x.b for x in an.of("blind")):
        row = [v]
        for m in metrics:
            x = next((x for x in an.of("blind", m) if x.b == v), None)
            if x is None:
                row += [NA, NA, NA]
                continue
            row += [num.diff(f"{x.key}", x.est), num.p(f"{x.key}/q", x.p_adj)]
            blind = an.references.get(("language_blind", m))
            above = x.verdict(an.alpha) == "higher" and blind is not None and m in oracle
            share = share_of_headroom(float(an.rows[(v, m)].value), blind.value, oracle[m]) if above else None
            row.append(num.put(f"headroom/{v}/{m}", None if share is None else 100 * share, digits=0))
        t.rows.append(row)
    return t


def precision(an: Analysis, variants: list[str], full: str, num: Numbers, proto: Protocol = A2D) -> Table:
    """P@0.5..0.9 on test per variant (mean ± CI, both variances); on A2D with the paper's full
    model (Table 1) under the rows."""
    t = Table(["Variant", "seeds", *THRESHOLDS])
    for v in variants:
        cells = [num.est(f"table3/{v}/test/{k}", an.rows.get((v, k))) for k in THRESHOLDS]
        t.rows.append([v, num.put(f"table3/{v}/n_seeds", an.seeds), *cells])
    if proto.cvls_paper:
        row = [
            f"paper {full} (Table 1)",
            DASH,
            *[num.put(f"paper/table1/{k}", paper.TABLE1_A2D[k]) for k in THRESHOLDS],
        ]
        t.rows.append(row)
        t.bold_rows = (len(t.rows) - 1,)
    return t


def main_results(metrics: dict[str, dict[str, float]], num: Numbers, proto: Protocol = A2D) -> Table:
    """The main run (full model, params.yaml as is): on A2D vs the paper's CVLS rows of Tables 1-2
    (test, zero-shot J-HMDB); on the J&F datasets its test and val J, F, J&F and the A2D-style
    metrics vs the context numbers (another method's, where there are any)."""
    n = lambda d: int(d["n"]) if "n" in d else None  # noqa: E731
    if proto.cvls_paper:
        t = Table(
            [
                "Metric (%)",
                "ours\nA2D-format test",
                "paper Table 1\nA2D Sentences",
                "ours J-HMDB-format\n(zero-shot)",
                "paper Table 2\nJ-HMDB Sentences",
            ]
        )
        test, jhmdb = metrics.get("test", {}), metrics.get("jhmdb", {})
        for m in paper.METRICS:
            t.rows.append(
                [
                    paper.METRIC_LABELS[m],
                    num.put(f"main/test/{m}", test.get(m)),
                    num.put(f"paper/table1/{m}", paper.TABLE1_A2D[m]),
                    num.put(f"main/jhmdb/{m}", jhmdb.get(m)),
                    num.put(f"paper/table2/{m}", paper.TABLE2_JHMDB[m]),
                ]
            )
        t.rows.append(["samples (n)", num.put("main/test/n", n(test)), DASH, num.put("main/jhmdb/n", n(jhmdb)), DASH])
        return t
    t = Table(["Metric (%)", f"ours\n{proto.test_short}", "ours\nval", proto.context_label])
    test, val = metrics.get("test", {}), metrics.get("val", {})
    for m in proto.main_metrics:
        t.rows.append(
            [
                proto.label(m),
                num.put(f"main/test/{m}", test.get(m)),
                num.put(f"main/val/{m}", val.get(m)),
                num.put(f"context/main/{m}", proto.reference.get(m)),
            ]
        )
    e = lambda d: int(d["n_expressions"]) if "n_expressions" in d else None  # noqa: E731
    t.rows.append(["pairs (n)", num.put("main/test/n", n(test)), num.put("main/val/n", n(val)), DASH])
    ne = [num.put(f"main/{s}/n_expressions", e(d)) for s, d in (("test", test), ("val", val))]
    t.rows.append(["expressions (n)", *ne, DASH])
    return t


def dataset_counts(processed: dict[str, Any], num: Numbers) -> Table:
    cols = ("videos", "sentences", "frames", "eval_pairs")
    t = Table(["split", *cols])
    splits = processed.get("splits", {})
    order = [s for s in ("train", "val", "test", "jhmdb") if s in splits] + sorted(
        set(splits) - {"train", "val", "test", "jhmdb"}
    )
    for split, c in ((s, splits[s]) for s in order):
        t.rows.append([split, *[num.put(f"dataset/{split}/{k}", c.get(k)) for k in cols]])
    return t


def skipped_counts(processed: dict[str, Any], num: Numbers) -> Table:
    t = Table(["skipped (reason)", "count", "example"])
    for reason, info in sorted(processed.get("skipped", {}).items()):
        example = (info.get("examples") or [DASH])[0]
        t.rows.append([reason, num.put(f"skipped/{reason}", info.get("count", 0)), str(example)[:60]])
    if not t.rows:
        t.rows.append(["none", num.put("skipped/total", 0), DASH])
    return t
