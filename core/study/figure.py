"""Fig. 6a/6b: mAP against the swept value. One drawing, used by the study stage and the report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.study.grid import StudyKind

SPLIT_STYLE = {"val": ("tab:blue", "o", "val"), "test": ("tab:orange", "s", "test (A2D-format)")}


def draw_sweep(ax: Any, df: pd.DataFrame, xs: dict[str, float]) -> None:
    """Per split (val, test): the mean over seeds as a line, the min-max band, every seed as a dot.

    `df` has one row per (point, seed) with columns point, val/mAP, test/mAP; `xs` places each
    point on the x axis. A split without any finite value is left out.
    """
    for split, (colour, marker, label) in SPLIT_STYLE.items():
        col = f"{split}/mAP"
        d = df[["point", col]].dropna()
        if d.empty:
            continue
        g = d.groupby("point", sort=False)[col]
        order = sorted(g.groups, key=lambda p: xs[p])
        x = np.array([xs[p] for p in order])
        mean, lo, hi = (np.array([f(g.get_group(p)) for p in order]) for f in (np.mean, np.min, np.max))
        ax.plot(x, mean, color=colour, marker=marker, label=f"{label}: mean over seeds")
        if (hi > lo).any():
            ax.fill_between(x, lo, hi, color=colour, alpha=0.18, lw=0, label=f"{label}: min–max over seeds")
        ax.scatter([xs[p] for p in d["point"]], d[col], color=colour, s=10, alpha=0.6, zorder=3)


def study_figure(kind: StudyKind, rows: list[dict[str, Any]], points: list[str], name: str) -> Any:
    """The study stage's figure: `draw_sweep` of its rows, points in grid order (a bare Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    df = pd.DataFrame(rows, columns=["point", "x", "seed", "val/mAP", "test/mAP"]).astype({"point": str})
    if kind.categorical:
        xs = {p: float(i) for i, p in enumerate(points)}
        ax.set_xticks(list(xs.values()), list(xs))
    else:
        xs = dict(zip(df["point"], df["x"].astype(float)))
        ax.set_xticks(sorted(set(xs.values())), [f"{x:g}" for x in sorted(set(xs.values()))])
    if df.empty:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", va="center", transform=ax.transAxes)
    else:
        draw_sweep(ax, df, xs)
        fig.legend(loc="outside lower center", ncols=2, frameon=False)  # below the axes: hides no point
    seeds = df.groupby("point").size().max() if len(df) else 0
    ax.set_xlabel(kind.x_label)
    ax.set_ylabel("mAP 0.5:0.95 (%)")
    ax.set_title(f"{kind.title} (seeds per point: {seeds})\nstudy {name}")
    ax.grid(True, alpha=0.3)
    return fig
