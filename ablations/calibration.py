"""A/A calibration: one configuration trained at many seeds, and how often the report's tests flag
a difference between disjoint groups of its seeds (there is none).

    python ablations/calibration.py [--params params.yaml] [--set key=value ...] [--storage URL] [--n-jobs N]

Trains `calibration.variant` (default the Baseline) at ablation.seeds plus `calibration.extra_seeds`
more, through the ablation's queue machinery (exactly once per seed, resumable, shared by workers
and machines; the seeds Table 3 already trained are reused by config hash). Writes
<outputs>/calibration/: results.csv (one row per seed), per_sample.csv (every test pair of every
seed) and summary.json: the configuration's variance components (seed / video / seed × video /
unit, in pp²) and the A/A rates: its seeds split at random into pseudo-rows of the ablation's seed
count, each split a Table 3 with no true difference, tested as the report tests Table 3
(reports.calibration). The report adds an A/A page once these exist. Not a DVC stage: with the
defaults it trains 12 more runs (about one ablation row's time each).
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from core.ablation import run_suite
from core.cli import run_main
from core.config import Params
from core.io import write_csv, write_json
from core.results import ABLATION_SAMPLE_COLUMNS
from core.study.runner import counts_line, queue_cli
from reports.analysis import primary_metric
from reports.calibration import aa_rates, configuration_parts
from reports.inputs import with_sample_map
from reports.protocol import protocol
from reports.scores import run_table


def calibration_params(params: Params) -> Params:
    """The queue of calibration.variant at ablation.seeds + calibration.extra_seeds more seeds."""
    seeds = list(params.ablation.seeds)
    seeds += [max(seeds) + 1 + i for i in range(params.calibration.extra_seeds)]
    name = params.calibration.variant
    return params.replace(
        **{"ablation.variants": {name: params.ablation.variants[name].model_dump()}, "ablation.seeds": seeds}
    )


def main(argv: Sequence[str] | None = None) -> int:
    params, storage, n_jobs = queue_cli(
        "Train one configuration at many seeds and measure the A/A rate of the report's tests", "ablation.n_jobs", argv
    )
    cal = calibration_params(params)
    variant, seeds = params.calibration.variant, list(cal.ablation.seeds)
    results, counts = run_suite(
        cal, storage=storage, n_jobs=n_jobs, title=f"calibration: {variant} x {len(seeds)} seeds"
    )
    folder = params.outputs / "calibration"
    samples = [
        {"variant": variant, "seed": s, **r} for _, s, rec in results for r in rec.per_sample() if r["split"] == "test"
    ]
    write_csv(folder / "per_sample.csv", samples, ABLATION_SAMPLE_COLUMNS)
    write_csv(folder / "results.csv", [{"variant": variant, "seed": s, **rec.row()} for _, s, rec in results])
    rows, metric = with_sample_map(pd.DataFrame(samples)), primary_metric(params, protocol(params))
    one = run_table(rows, metric)
    aa = aa_rates(one.z[0], one.seeds, len(params.ablation.seeds), params.report.confidence)
    parts = configuration_parts(rows, metric)
    summary = {"variant": variant, "seeds": seeds, "metric": metric, "components": parts, "aa": vars(aa)}
    write_json(folder / "summary.json", summary)
    print(f"{variant} at {len(seeds)} seeds, test {metric}: " + " ".join(f"{v:.1f}" for v in one.y[0]))
    print("variance components (pp²): " + ", ".join(f"{k} {v:.2f}" for k, v in (parts or {}).items()))
    print(
        f"A/A over {aa.splits} random splits into {aa.rows} rows of {aa.per_row} seeds: "
        + ", ".join(f"{k} {100 * v:.1f}% flagged" for k, v in aa.fpr.items())
        + f"; Holm family-wise {100 * aa.fwer:.1f}%"
    )
    print(f"{counts_line(counts)}; tables in {folder}")
    return 0


if __name__ == "__main__":
    run_main(main)
