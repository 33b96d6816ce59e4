"""The report's plots, each drawn into axes the page layout hands over (no layout decisions here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import seaborn as sns

from core.sections import parse_ratio
from core.study.figure import draw_sweep
from reports import paper
from reports.protocol import LABELS


def ratio_order(points: Sequence[str]) -> list[str]:
    """Ratios in the paper's Fig. 6a order; others after them, by hard/easy."""
    known = [r for r in paper.FIG6A_RATIOS if r in set(points)]
    rest = sorted(set(points) - set(known), key=lambda r: (lambda h, e: h / e)(*parse_ratio(r)))
    return known + rest


def rhic_ratio(
    ax: Any,
    df: pd.DataFrame,
    metric: str = "mAP",
    intervals: pd.DataFrame | None = None,
    interval_label: str = "",
    test_label: str | None = None,
) -> None:
    """Fig. 6a: `metric` vs hard:easy ratio, categorical axis in the paper's order (`intervals`:
    point, split, lo, hi; `test_label`: the test split's name in the legend, else draw_sweep's)."""
    df = df.assign(point=df["point"].astype(str))
    order = ratio_order(list(df["point"].unique()))
    xs = {p: i for i, p in enumerate(order)}
    _sweep(ax, df, xs, metric, intervals, interval_label, test_label)
    if paper.FIG6A_DEFAULT in xs:
        ax.axvline(xs[paper.FIG6A_DEFAULT], color="0.4", ls="--", lw=1, label=f"paper's choice {paper.FIG6A_DEFAULT}")
    ax.set_xticks(range(len(order)), order)
    ax.set_xlabel("RHIC hard:easy pixel ratio")
    ax.set_title(f"Fig. 6a — {LABELS[metric]}")


def lambda_sensitivity(
    ax: Any,
    df: pd.DataFrame,
    metric: str = "mAP",
    intervals: pd.DataFrame | None = None,
    interval_label: str = "",
    test_label: str | None = None,
) -> None:
    """Fig. 6b: `metric` vs lambda (weight of the segmentation term)."""
    df = df.assign(point=df["point"].astype(str))
    xs = dict(zip(df["point"], df["x"].astype(float)))
    _sweep(ax, df, xs, metric, intervals, interval_label, test_label)
    ax.axvline(paper.FIG6B_DEFAULT, color="0.4", ls="--", lw=1, label=f"paper's λ = {paper.FIG6B_DEFAULT}")
    ax.set_xlabel("λ (weight of L_seg; L_ccl gets 1 − λ)")
    ax.set_title(f"Fig. 6b — {LABELS[metric]}")


def _sweep(
    ax: Any,
    df: pd.DataFrame,
    xs: dict[str, float],
    metric: str,
    intervals: pd.DataFrame | None,
    interval_label: str,
    test_label: str | None = None,
) -> None:
    names = {} if test_label is None else {"test_label": test_label}
    frame = None if intervals is None or intervals.empty else intervals
    draw_sweep(ax, df, xs, metric=metric, intervals=frame, interval_label=interval_label, **names)
    ax.set_ylabel(f"{LABELS[metric]} (%)")


def training_curve(ax: Any, histories: pd.DataFrame, column: str, variants: Sequence[str], title: str) -> None:
    """One line per variant (mean over seeds) with the min-max band over seeds."""
    sns.lineplot(
        data=histories,
        x="epoch",
        y=column,
        hue="variant",
        hue_order=list(variants),
        errorbar=("pi", 100),
        marker="o",
        markersize=4,
        ax=ax,
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (Eq. 4, per clip)")
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)


def shuffled_control(
    ax: Any, results: pd.DataFrame, main: dict[str, dict[str, float]], variants: Sequence[str], metric: str = "mAP"
) -> None:
    """Test `metric` with the true sentences vs with every sentence swapped for another sample's."""
    rows = [
        (v, split, val)
        for _, r in results.iterrows()
        for v, split, val in (
            (r["variant"], "true sentence", r[f"test/{metric}"]),
            (r["variant"], "shuffled sentence", r[f"test_shuffled/{metric}"]),
        )
    ]
    if "test" in main and "test_shuffled" in main:
        rows += [
            ("main run", "true sentence", main["test"].get(metric, np.nan)),
            ("main run", "shuffled sentence", main["test_shuffled"].get(metric, np.nan)),
        ]
    df = pd.DataFrame(rows, columns=["variant", "sentences", "score"])
    sns.barplot(
        data=df,
        x="variant",
        y="score",
        hue="sentences",
        order=[*variants, "main run"],
        errorbar=("pi", 100),
        capsize=0.15,
        err_kws={"linewidth": 1},
        ax=ax,
    )
    ax.set_xlabel("")
    ax.set_ylabel(f"test {LABELS[metric]} (%)")
    ax.set_title("Shuffled-sentence control (bars: mean over seeds; whiskers: min–max)")
    ax.tick_params(axis="x", labelrotation=20)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")


def ours_vs_paper(
    ax: Any,
    ours: dict[str, float],
    reference: dict[str, float],
    title: str,
    ref_label: str,
    keys: Sequence[str] = paper.METRICS,
) -> None:
    """Grouped bars: every metric of `keys`, ours next to the reference's (no bar where it has none)."""
    keys = list(keys)
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [ours.get(k, np.nan) for k in keys], 0.4, label="ours (main run)", color="tab:blue")
    ax.bar(x + 0.2, [reference.get(k, np.nan) for k in keys], 0.4, label=ref_label, color="0.65")
    ax.set_xticks(
        x,
        [LABELS[k].replace(" 0.5:0.95", "") for k in keys],
        rotation=45,
        ha="right",
        rotation_mode="anchor",
    )
    ax.set_ylabel("value (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)


def take_legend(ax: Any) -> tuple[list[Any], list[str]]:
    """The axes' legend entries, removing a legend seaborn drew (the page places legends)."""
    leg = ax.get_legend()
    if leg is None:
        return ax.get_legend_handles_labels()
    handles, labels = list(leg.legend_handles), [t.get_text() for t in leg.get_texts()]
    leg.remove()
    return handles, labels


def image(ax: Any, path: Path, title: str) -> None:
    ax.imshow(mpimg.imread(path))
    ax.set_anchor("N")  # top-aligned under the caption
    ax.set_title(title)
    ax.set_axis_off()
