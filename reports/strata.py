"""Table 3 by stratum: each variant's secondary and primary metric (A2D: Mean IoU and mAP; the J&F
datasets: J and J&F, reports.protocol), its grounding and committed share (core.metrics.grounding) on the test pairs
with and without a same-class distractor, and per disambiguating attribute type.

The strata of a pair are the per-sample table's `distractor` and `attribute` columns
(core.results.STRATA_COLUMNS; None = unknown), and each run's scores on them are
core.strata.strata_metrics of its rows, exactly what evaluation writes to <run>/eval/strata.json.
Those per-run scores are then spread over seeds with a t-interval, like Table 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.results import STRATA_COLUMNS
from core.strata import strata_metrics
from reports.protocol import A2D, Protocol
from reports.stats import mean_ci
from reports.tables import Numbers, Table


def metrics_shown(proto: Protocol = A2D) -> tuple[str, str]:
    """The metrics the page shows, in order: the protocol's secondary and primary metric."""
    return proto.secondary, proto.primary


@dataclass
class StrataScores:
    scores: pd.DataFrame  # one row per (variant, seed, stratum): the page's metrics (%), n and n_expressions
    columns: bool = True  # the per-sample table has the strata columns (older tables lack them)
    unlabelled: list[str] = field(default_factory=list)  # "variant seed s" of runs with no labelled pair

    @property
    def available(self) -> bool:
        return not self.scores.empty


GROUNDING = "grounding"  # core.metrics.grounding: the prediction picks the referent over the frame's other actors
COMMITTED = "committed"  # core.metrics.grounding: ... and touches no other actor (grounded without hedging)


def has_grounding(per_sample: pd.DataFrame) -> bool:
    """The per-sample table carries other_iou for some pair (tables of older evaluations do not)."""
    return "other_iou" in per_sample.columns and bool(per_sample["other_iou"].notna().any())


def records(samples: pd.DataFrame, jf: bool = False) -> list[dict]:
    """Per-sample rows as core.strata reads them: inter, union and the strata, unknown (an empty
    cell, NaN in pandas) as None; other_iou when the table has it; with `jf` also sample, iou and f."""
    extra = ("other_iou",) if "other_iou" in samples.columns else ()
    cols = ["inter", "union", *STRATA_COLUMNS, *extra, *(("sample", "iou", "f") if jf else ())]
    return [{c: None if pd.isna(x) else x for c, x in zip(cols, r)} for r in samples[cols].itertuples(index=False)]


def strata_scores(
    results: pd.DataFrame, per_sample: pd.DataFrame, split: str = "test", proto: Protocol = A2D
) -> StrataScores:
    """core.strata.strata_metrics of every Table-3 run's `split` pairs (with J, F, J&F on the J&F
    datasets), in result-table order."""
    grounded = (GROUNDING, COMMITTED, "n_grounding") if has_grounding(per_sample) else ()
    keep = (*metrics_shown(proto), *grounded, "n", *(("n_expressions",) if proto.jf else ()))
    empty = pd.DataFrame(columns=["variant", "seed", "stratum", *keep])
    if any(c not in per_sample.columns for c in STRATA_COLUMNS):
        return StrataScores(empty, columns=False)
    ps = per_sample[per_sample["split"] == split]
    groups = dict(list(ps.groupby(["variant", "seed"], sort=False)))
    out, rows = StrataScores(empty), []
    for v, seed in results[["variant", "seed"]].itertuples(index=False):
        g = groups.get((v, seed))
        found = {} if g is None else strata_metrics(records(g, proto.jf), proto.jf)
        if not found:
            out.unlabelled.append(f"{v} seed {seed}")
        rows += [
            {"variant": v, "seed": seed, "stratum": k, **{m: s.get(m, float("nan")) for m in keep}}
            for k, s in found.items()
        ]
    if rows:
        out.scores = pd.DataFrame(rows)
    return out


def strata_table(scores: pd.DataFrame, metric: str, confidence: float, num: Numbers, proto: Protocol = A2D) -> Table:
    """Rows: variants; columns: strata; cells: mean ± t-interval over seeds of `metric`; last row:
    the units in each stratum (A2D: pairs; J&F datasets: expressions; for grounding the pairs with
    another actor in the frame; the most any run has: the runs share the test split)."""
    strata = list(dict.fromkeys(scores["stratum"]))
    t = Table(["Variant", "seeds", *(s.replace("=", "=\n") for s in strata)])
    for v, g in scores.groupby("variant", sort=False):
        values = g.groupby("stratum")[metric].apply(lambda x: list(x.dropna()))  # NaN: not defined there
        row = [v, num.put(f"strata/{v}/n_seeds", g["seed"].nunique())]
        for s in strata:
            key = f"strata/{v}/{s}/{metric}"
            found = s in values and len(values[s]) > 0
            row.append(num.pm(key, mean_ci(values[s], confidence)) if found else num.put(key + "/mean", None))
        t.rows.append(row)
    if metric in (GROUNDING, COMMITTED):  # over the pairs whose frame holds another actor
        n = scores.groupby("stratum")["n_grounding"].max()
        key = "strata/n_grounding"
    else:
        n = scores.groupby("stratum")["n_expressions" if proto.jf else "n"].max()
        key = "strata/n"
    counts = (num.put(f"{key}/{s}", None if pd.isna(n[s]) else int(n[s])) for s in strata)
    t.rows.append([f"test {proto.units(2)} (n)", "", *counts])
    return t
