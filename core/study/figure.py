"""Fig. 6a/6b: a score against the swept value. One drawing, used by the study stage and the report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.study.grid import StudyKind

SPLIT_STYLE = {"val": ("tab:blue", "o", "val"), "test": ("tab:orange", "s", "test")}
TEST_LABEL = "test (A2D-format)"  # the test split's name in the legend, unless the caller names it


def draw_sweep(
    ax: Any,
    df: pd.DataFrame,
    xs: dict[str, float],
    *,
    metric: str = "mAP",
    intervals: pd.DataFrame | None = None,
    interval_label: str = "",
    test_label: str = TEST_LABEL,
) -> None:
    """Per split (val, test): the mean over seeds as a line and every seed as a dot; with
    `intervals` (columns point, split, lo, hi) an error bar at each point, else the min-max band
    over seeds.

    `df` has one row per (point, seed) with columns point, '<split>/<metric>'; `xs` places each
    point on the x axis. A split without any finite value is left out.
    """
    spots = sorted(set(xs.values()))
    # the splits' bars side by side, not on top; a lone point has no neighbour to scale by, so the
    # axis is set around it (else autoscaling spreads its two bars to the edges)
    dodge = 0.08 * min(np.diff(spots)) if len(spots) > 1 else 0.02 * max(abs(spots[0]) if spots else 1.0, 1.0)
    if len(spots) == 1:
        ax.set_xlim(spots[0] - 10 * dodge, spots[0] + 10 * dodge)
    for k, (split, (colour, marker, label)) in enumerate(SPLIT_STYLE.items()):
        label = test_label if split == "test" else label
        col = f"{split}/{metric}"
        d = df[["point", col]].dropna()
        if d.empty:
            continue
        g = d.groupby("point", sort=False)[col]
        order = sorted(g.groups, key=lambda p: xs[p])
        x = np.array([xs[p] for p in order])
        mean, lo, hi = (np.array([f(g.get_group(p)) for p in order]) for f in (np.mean, np.min, np.max))
        ax.plot(x, mean, color=colour, marker=marker, label=f"{label}: mean over seeds")
        if intervals is not None:
            iv = intervals[intervals["split"] == split].set_index("point")
            at = [i for i, p in enumerate(order) if p in iv.index]
            if at:
                bar_lo, bar_hi = iv.loc[[order[i] for i in at], ["lo", "hi"]].to_numpy().T
                # drawn from its middle so the bar spans lo..hi exactly (a percentile interval
                # need not be symmetric about the line)
                ax.errorbar(
                    x[at] + (k - 0.5) * dodge,
                    (bar_lo + bar_hi) / 2,
                    yerr=(bar_hi - bar_lo) / 2,
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.2,
                    capsize=3,
                    label=f"{label}: {interval_label}",
                )
        elif (hi > lo).any():
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
