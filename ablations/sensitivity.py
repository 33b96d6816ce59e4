"""Reconstruction sensitivity: Table 3 under each reading of the method's [open] choices.

    python ablations/sensitivity.py [--params params.yaml] [--set key=value ...] [--storage URL] [--n-jobs N]

The method (docs/method.md) leaves two readings of Eq. 3 open: the BCE's reduction
over a frame's pixels (`loss.seg_reduction`: mean | sum; the sum makes L_seg, not L_ccl, dominate
Eq. 4 at lambda = 0.8) and the multi-modal tensor the decoder reads (`model.fusion`: concat |
product); and one of the visual map F (`model.merge`: concat, the levels concatenated as the text
writes it | conv, reduced to C by a 3x3 conv, the first reconstruction). This trains the whole
ablation (every variant x seed, at the main run's budget, through the ablation's queue:
`ablations/components.py`) once per reading: the params' own values, then each alternative alone.
Writes <outputs>/sensitivity/results.csv (one row per reading, variant and seed, with its run
hash) and prints, per reading and variant, the level and the difference from the same reading's
Baseline with intervals that count the seeds and the test videos (reports.sweeps); the report
adds the same as a page.

Not a DVC stage: each alternative reading costs one more full ablation (about 25 min on the
2-core default); the params' own reading reuses the `ablate` stage's runs.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import pandas as pd

from core.ablation import run_suite
from core.cli import run_main
from core.config import Params
from core.io import write_csv
from core.study.runner import counts_line, queue_cli
from reports.inference import Estimate
from reports.inputs import with_sample_map
from reports.sweeps import ReadingsAnalysis, analyze_readings

log = logging.getLogger("cvls")

# the [open] readings (around Eq. 3, and F's), each params key with its values
READINGS = {
    "loss.seg_reduction": ("mean", "sum"),
    "model.fusion": ("concat", "product"),
    "model.merge": ("concat", "conv"),
}


def readings(params: Params) -> list[tuple[str, dict[str, Any]]]:
    """('as params', {}) first, then one ('key=value', {key: value}) per alternative value: one
    open choice changed at a time, the rest as in params."""
    flat = params.flat()
    out: list[tuple[str, dict[str, Any]]] = [("as params", {})]
    for key, values in READINGS.items():
        out += [(f"{key}={v}", {key: v}) for v in values if v != flat[key]]
    return out


def format_table(table: ReadingsAnalysis) -> str:
    """The readings' levels and differences from each reading's Baseline (reports.sweeps), as text."""
    pri, sec = table.metrics

    def cell(e: Estimate | None) -> str:
        return "–" if e is None else f"{e.value:5.1f} ± {(e.hi - e.lo) / 2:4.1f}"

    lines = [f"{'reading':26s} {'variant':14s} {'test ' + pri:>13s} {'Δ vs Baseline':>14s} {'test ' + sec:>15s}"]
    diffs = {(t.scope, t.b): t.est for t in table.tests if t.metric == pri}
    for reading in table.readings:
        for v in table.variants:
            lines.append(
                f"{reading:26s} {v:14s} {cell(table.cells.get((reading, v, pri))):>13s} "
                f"{cell(diffs.get((reading, v))):>14s} {cell(table.cells.get((reading, v, sec))):>15s}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    params, storage, n_jobs = queue_cli(
        "Table 3 under each [open] reading (loss.seg_reduction, model.fusion, model.merge)", "ablation.n_jobs", argv
    )
    rows: list[dict[str, Any]] = []
    samples: dict[str, pd.DataFrame] = {}
    folder = params.outputs / "sensitivity"
    for name, over in readings(params):
        log.info("reading %s: the whole ablation", name)
        results, counts = run_suite(params.replace(**over), storage=storage, n_jobs=n_jobs)
        log.info("reading %s: %s", name, counts_line(counts))
        for variant, seed, rec in results:
            sw = params.ablation.variants[variant]
            flags = {"ccl": sw.ccl, "rhic": sw.rhic, "lcf": sw.lcf}
            rows.append({"reading": name, "variant": variant, "seed": seed, **flags, **rec.row()})
            samples[rec.run_hash] = with_sample_map(pd.DataFrame(rec.per_sample()))
        # after every reading: a killed run keeps the readings it finished (their rows are reused on a rerun)
        write_csv(folder / "results.csv", rows)
    print(format_table(analyze_readings(params, (pd.DataFrame(rows), samples))))
    print(f"tables in {folder}")
    return 0


if __name__ == "__main__":
    run_main(main)
