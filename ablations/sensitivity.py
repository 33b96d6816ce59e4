"""Reconstruction sensitivity: Table 3 under each reading of the spec's [open] choices.

    python ablations/sensitivity.py [--params params.yaml] [--set key=value ...] [--storage URL] [--n-jobs N]

The spec (../shared/spec/cvls-method.md) leaves two readings of Eq. 3 open: the BCE's reduction
over a frame's pixels (`loss.seg_reduction`: mean | sum; the sum makes L_seg, not L_ccl, dominate
Eq. 4 at lambda = 0.8) and the multi-modal tensor the decoder reads (`model.fusion`: concat |
product); and one of the visual map F (`model.merge`: concat, the levels concatenated as the text
writes it | conv, reduced to C by a 3x3 conv, the first reconstruction). This trains the whole
ablation (every variant x seed, at the main run's budget, through the ablation's queue:
`ablations/components.py`) once per reading: the params' own values, then each alternative alone.
Writes <outputs>/sensitivity/results.csv (one row per reading, variant and seed) and table.csv
(per reading and variant: the mean over seeds with its t-interval, and the difference from the
same reading's Baseline, paired over seeds, with its t-interval).

Not a DVC stage: each alternative reading costs one more full ablation (about 25 min on the
2-core default); the params' own reading reuses the `ablate` stage's runs.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core.ablation import run_suite
from core.cli import run_main
from core.config import Params
from core.io import write_csv
from core.study.runner import counts_line, queue_cli
from reports.stats import mean_ci

log = logging.getLogger("cvls")

# the [open] readings (around Eq. 3, and F's), each params key with its values
READINGS = {
    "loss.seg_reduction": ("mean", "sum"),
    "model.fusion": ("concat", "product"),
    "model.merge": ("concat", "conv"),
}
METRICS = ("test/mAP", "test/mean_iou")
BASELINE = "Baseline"


def readings(params: Params) -> list[tuple[str, dict[str, Any]]]:
    """('as params', {}) first, then one ('key=value', {key: value}) per alternative value: one
    open choice changed at a time, the rest as in params."""
    flat = params.flat()
    out: list[tuple[str, dict[str, Any]]] = [("as params", {})]
    for key, values in READINGS.items():
        out += [(f"{key}={v}", {key: v}) for v in values if v != flat[key]]
    return out


def sensitivity_table(results: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per (reading, variant): mean, t half-width over seeds, and the mean difference from the
    reading's Baseline paired over seeds with its t half-width, for each of METRICS."""
    rows = []
    for reading, by_reading in results.groupby("reading", sort=False):
        base = by_reading[by_reading["variant"] == BASELINE].set_index("seed")
        for variant, group in by_reading.groupby("variant", sort=False):
            row: dict[str, Any] = {"reading": reading, "variant": variant, "seeds": len(group)}
            g = group.set_index("seed")
            for metric in METRICS:
                ci = mean_ci(list(g[metric]), confidence)
                row[metric], row[f"{metric} ±"] = ci.mean, ci.half
                if base.empty:
                    row[f"Δ {metric}"] = row[f"Δ {metric} ±"] = float("nan")
                    continue
                common = g.index.intersection(base.index)
                d = mean_ci(list(g.loc[common, metric] - base.loc[common, metric]), confidence)
                row[f"Δ {metric}"], row[f"Δ {metric} ±"] = d.mean, d.half
            rows.append(row)
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    def cell(v: float, h: float) -> str:
        return f"{v:5.1f}" + ("" if np.isnan(h) else f" ± {h:4.1f}")

    lines = [f"{'reading':26s} {'variant':14s} {'test mAP':>13s} {'Δ vs Baseline':>14s} {'mean IoU':>13s}"]
    for r in table.to_dict("records"):
        lines.append(
            f"{r['reading']:26s} {r['variant']:14s} {cell(r['test/mAP'], r['test/mAP ±']):>13s} "
            f"{cell(r['Δ test/mAP'], r['Δ test/mAP ±']):>14s} {cell(r['test/mean_iou'], r['test/mean_iou ±']):>13s}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    params, storage, n_jobs = queue_cli(
        "Table 3 under each [open] reading (loss.seg_reduction, model.fusion, model.merge)", "ablation.n_jobs", argv
    )
    rows: list[dict[str, Any]] = []
    folder = params.outputs / "sensitivity"
    for name, over in readings(params):
        log.info("reading %s: the whole ablation", name)
        results, counts = run_suite(params.replace(**over), storage=storage, n_jobs=n_jobs)
        log.info("reading %s: %s", name, counts_line(counts))
        for variant, seed, rec in results:
            rows.append({"reading": name, "variant": variant, "seed": seed, **rec.row()})
        # after every reading: a killed run keeps the readings it finished (their rows are reused on a rerun)
        table = sensitivity_table(pd.DataFrame(rows), params.report.confidence)
        write_csv(folder / "results.csv", rows)
        write_csv(folder / "table.csv", table.to_dict("records"))
    print(format_table(table))
    print(f"tables in {folder}")
    return 0


if __name__ == "__main__":
    run_main(main)
