"""Per-sample rows -> each metric as per-video totals, and a table of runs as [rows, seeds, videos].

Every metric the report tests is a ratio of sums over a split's test videos (reports.inference):
- a mean over units of a per-unit score: mAP (a pair's share of the thresholds,
  core.metrics.sample_map), Mean IoU, P@K (a pair's IoU >= K, compared exactly), grounding and
  committed (over the pairs whose frame holds another actor, core.metrics.grounding); on the J&F
  datasets J, F and J&F over expressions (an expression's score: the mean over its frames,
  core.vos_metrics.summarize_pairs). num = the video's sum of unit scores, den = its units;
- Overall IoU = ΣI / ΣU over pairs: num = the video's ΣI, den = its ΣU.
The mean of a run's pseudo-values (reports.inference.pseudo_values) is the run's metric exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from reports.inference import pseudo_values

KEYS = ("variant", "seed")
PAIR_SCORES = {"mAP": "map", "mean_iou": "iou"}  # metric -> the per-pair column averaged over pairs
EXPRESSION_SCORES = {"J&F": "jf", "J": "iou", "F": "f"}  # ... averaged over an expression's frames, then expressions
THRESHOLDS = {f"P@0.{k}": k for k in range(5, 10)}  # P@K -> tenths of K
GROUNDED = ("grounding", "committed")  # over the pairs whose frame holds another actor
METRICS = (*PAIR_SCORES, "overall_iou", *EXPRESSION_SCORES, *THRESHOLDS, *GROUNDED)


def unit_scores(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per unit (a pair, or on J&F metrics an expression) that `metric` counts: the
    grouping keys present in `rows`, `video`, `unit` (the pair or the expression) and its score
    `x` (0..1)."""
    keys = [k for k in KEYS if k in rows.columns]
    if metric in EXPRESSION_SCORES:
        x = rows[EXPRESSION_SCORES[metric]]
        units = rows.assign(x=x).groupby([*keys, "video", "sample"], sort=False)["x"].mean().reset_index()
        return units.rename(columns={"sample": "unit"})
    if metric in PAIR_SCORES:
        x = rows[PAIR_SCORES[metric]]
    elif metric in THRESHOLDS:  # IoU >= K exactly, as core.metrics.summarize: 10·I >= k·U (U = 0: IoU 1)
        x = ((10 * rows["inter"] >= THRESHOLDS[metric] * rows["union"]) | (rows["union"] == 0)).astype(float)
    elif metric in GROUNDED:
        rows = rows[rows["other_iou"].notna()] if "other_iou" in rows.columns else rows.iloc[:0]
        other = rows["other_iou"].astype(float)
        hit = rows["iou"] > other if metric == "grounding" else (rows["iou"] > 0) & (other == 0)
        x = hit.astype(float)
    else:
        raise KeyError(f"no per-unit score for metric {metric!r}")
    return rows.assign(x=x, unit=rows["pair"])[[*keys, "video", "unit", "x"]]


def video_totals(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (grouping keys present in `rows`, video): num and den of `metric` (module docstring)."""
    keys = [k for k in KEYS if k in rows.columns]
    if metric == "overall_iou":
        g = rows.groupby([*keys, "video"], sort=False)
        return pd.DataFrame({"num": g["inter"].sum(), "den": g["union"].sum()}).astype(float).reset_index()
    g = unit_scores(rows, metric).groupby([*keys, "video"], sort=False)["x"]
    return pd.DataFrame({"num": g.sum(), "den": g.count()}).astype(float).reset_index()


@dataclass(frozen=True)
class RunTable:
    """Runs that share seeds and test videos, as pseudo-values (in %) of one metric."""

    z: np.ndarray  # [rows, seeds, videos]
    rows: list[str]
    seeds: list[int]
    videos: list[str]

    @property
    def y(self) -> np.ndarray:
        """[rows, seeds]: each run's metric (%)."""
        return self.z.mean(-1)

    def row(self, name: str) -> np.ndarray:
        return self.z[self.rows.index(name)]

    @property
    def empty(self) -> bool:
        return self.z.size == 0


def run_table(
    rows: pd.DataFrame, metric: str, order: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> RunTable:
    """The (variant, seed) runs of `rows` (one split's per-sample rows) as a RunTable of `metric`:
    the seeds every variant has (or `seeds`), the videos every run scored (a video without a unit
    of the metric in some run, e.g. in a stratum, is left out)."""
    totals = video_totals(rows, metric)
    order = list(order) if order is not None else list(dict.fromkeys(totals["variant"]))
    common = set.intersection(*(set(totals.loc[totals["variant"] == v, "seed"]) for v in order)) if order else set()
    use = [s for s in (seeds if seeds is not None else sorted(common)) if s in common]
    totals = totals[totals["variant"].isin(order) & totals["seed"].isin(use)]
    runs = len(order) * len(use)
    videos = [v for v, n in totals.groupby("video", sort=False).size().items() if n == runs]
    if not videos or not runs:
        return RunTable(np.zeros((len(order), len(use), 0)), order, use, [])
    idx = pd.MultiIndex.from_product([order, use, videos], names=["variant", "seed", "video"])
    t = totals.set_index(["variant", "seed", "video"]).reindex(idx)
    shape = (len(order), len(use), len(videos))
    z = 100 * pseudo_values(t["num"].to_numpy().reshape(shape), t["den"].to_numpy().reshape(shape))
    return RunTable(z, order, use, videos)
