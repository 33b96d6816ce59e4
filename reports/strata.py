"""Table 3 by stratum: each variant's Mean IoU and mAP on the test pairs with and without a
same-class distractor, and per disambiguating attribute type.

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
from reports.stats import mean_ci
from reports.tables import Numbers, Table

SCORES = {"mean_iou": "Mean IoU", "mAP": "mAP 0.5:0.95"}  # the metrics the page shows
REAL_DATA_NOTE = (
    "Real A2D Sentences has no class labels in its sentence h5 files, so no pair can be labelled by distractor "
    "or attribute: on real data the strata are unavailable."
)


@dataclass
class StrataScores:
    scores: pd.DataFrame  # one row per (variant, seed, stratum): mean_iou, mAP (%), n
    columns: bool = True  # the per-sample table has the strata columns (older tables lack them)
    unlabelled: list[str] = field(default_factory=list)  # "variant seed s" of runs with no labelled pair

    @property
    def available(self) -> bool:
        return not self.scores.empty


def records(samples: pd.DataFrame) -> list[dict]:
    """Per-sample rows as core.strata reads them: inter, union and the strata, unknown (an empty
    cell, NaN in pandas) as None."""
    cols = ["inter", "union", *STRATA_COLUMNS]
    return [{c: None if pd.isna(x) else x for c, x in zip(cols, r)} for r in samples[cols].itertuples(index=False)]


def strata_scores(results: pd.DataFrame, per_sample: pd.DataFrame, split: str = "test") -> StrataScores:
    """core.strata.strata_metrics of every Table-3 run's `split` pairs, in result-table order."""
    empty = pd.DataFrame(columns=["variant", "seed", "stratum", "mean_iou", "mAP", "n"])
    if any(c not in per_sample.columns for c in STRATA_COLUMNS):
        return StrataScores(empty, columns=False)
    ps = per_sample[per_sample["split"] == split]
    groups = dict(list(ps.groupby(["variant", "seed"], sort=False)))
    out, rows = StrataScores(empty), []
    for v, seed in results[["variant", "seed"]].itertuples(index=False):
        g = groups.get((v, seed))
        found = {} if g is None else strata_metrics(records(g))
        if not found:
            out.unlabelled.append(f"{v} seed {seed}")
        rows += [
            {"variant": v, "seed": seed, "stratum": k, **{m: s[m] for m in (*SCORES, "n")}} for k, s in found.items()
        ]
    if rows:
        out.scores = pd.DataFrame(rows)
    return out


def strata_table(scores: pd.DataFrame, metric: str, confidence: float, num: Numbers) -> Table:
    """Rows: variants; columns: strata; cells: mean ± t-interval over seeds of `metric`; last row:
    the pairs in each stratum (the most any run has: the runs share the test split)."""
    strata = list(dict.fromkeys(scores["stratum"]))
    t = Table(["Variant", "seeds", *(s.replace("=", "=\n") for s in strata)])
    for v, g in scores.groupby("variant", sort=False):
        values = g.groupby("stratum")[metric].apply(list)
        row = [v, num.put(f"strata/{v}/n_seeds", g["seed"].nunique())]
        for s in strata:
            key = f"strata/{v}/{s}/{metric}"
            row.append(num.pm(key, mean_ci(values[s], confidence)) if s in values else num.put(key + "/mean", None))
        t.rows.append(row)
    n = scores.groupby("stratum")["n"].max()
    t.rows.append(["test pairs (n)", "", *(num.put(f"strata/n/{s}", int(n[s])) for s in strata)])
    return t
