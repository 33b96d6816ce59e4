"""The intervals Fig. 6a/6b draw at each swept point.

With two or more seeds at a point, the Student-t interval over the seeds (as Table 3); with one
seed (the default, studies.seeds: [0]) there is no seed spread, so the interval is the percentile
bootstrap of the run's score over its units, from <run>/eval/per_sample.csv (reports.protocol:
on A2D a pair's IoU for Mean IoU, its share of the mAP thresholds for mAP; on the J&F datasets an
expression's mean over its annotated frames). A one-seed point whose run has no per-sample file
gets no interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.protocol import A2D, Protocol
from reports.stats import bootstrap_ci, mean_ci

OVER = {"seeds": "t over seeds", "samples": "bootstrap over samples"}


@dataclass(frozen=True)
class PointIntervals:
    frame: pd.DataFrame  # point, split, lo, hi, over ('seeds' | 'samples')
    confidence: float

    @property
    def label(self) -> str:
        """What the bars are, for the legend."""
        kinds = [OVER[k] for k in OVER if k in set(self.frame["over"])]
        return f"{self.confidence:.0%} CI ({', '.join(kinds) or 'none'})"


def point_intervals(
    df: pd.DataFrame,
    run_samples: dict[str, pd.DataFrame],
    *,
    metric: str,
    splits: tuple[str, ...],
    reps: int,
    confidence: float,
    proto: Protocol = A2D,
) -> PointIntervals:
    """The interval of `metric` (%) at every (point, split) of a study table (one row per
    (point, seed), columns point, run_hash, '<split>/<metric>'); points as text, as drawn."""
    rows = []
    by_point = df.assign(point=df["point"].astype(str)).groupby("point", sort=False)
    for (point, g), split in ((pg, s) for pg in by_point for s in splits):
        values = g[f"{split}/{metric}"].dropna()
        if len(values) >= 2:
            iv = mean_ci(values.tolist(), confidence)
            rows.append((point, split, iv.mean - iv.half, iv.mean + iv.half, "seeds"))
            continue
        samples = run_samples.get(str(g.loc[values.index, "run_hash"].iloc[0])) if len(values) else None
        scores = None if samples is None else 100 * proto.unit_scores(samples[samples["split"] == split], metric)
        if scores is None or scores.empty:
            continue
        lo, hi = bootstrap_ci(scores.to_numpy(), reps=reps, confidence=confidence, seed=len(rows))
        rows.append((point, split, lo, hi, "samples"))
    return PointIntervals(pd.DataFrame(rows, columns=["point", "split", "lo", "hi", "over"]), confidence)
