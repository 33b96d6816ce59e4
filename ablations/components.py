"""Component ablation (paper Table 3): every variant x seed, tracked under one parent run.

    python ablations/components.py [--params params.yaml] [--set key=value ...] [--force]

Variants are named switch combinations in params.yaml (`ablation.variants`), nothing else.
Each row is a `run_variant`: trained once per resolved config and reused afterwards, so a
killed suite resumes where it stopped (and a finished one reruns in seconds).
Writes to <outputs>/ablation/: results.csv (one row per run), per_sample.csv (every test
sample's IoU, for paired statistics), histories.csv (training curves), summary.json.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Sequence

import torch

from core import tracking
from core.cli import params_from, parser, run_main, setup_logging
from core.config import Params
from core.io import write_csv, write_json
from core.results import ABLATION_COLUMNS, ABLATION_SAMPLE_COLUMNS, ABLATION_SAMPLE_SPLITS
from core.runs import RunRecord, run_variant
from core.runtime import cpu_cores

log = logging.getLogger("cvls")


def variant_params(params: Params, variant: str, seed: int) -> Params:
    """One Table-3 row: the variant's switches and the seed; it trains exactly like the main run
    (train.*: the same steps, schedule and checkpoint rule for every row)."""
    return params.with_variant(variant).replace(**{"train.seed": seed})


def suite_key(params: Params) -> str:
    fingerprint = json.loads((params.processed / "summary.json").read_text())["fingerprint"]
    return f"ablation:{params.digest(('data', 'model', 'loss', 'train', 'eval', 'ablation'))}:{fingerprint}"


def run_row(params: Params, variant: str, seed: int, parent: str, force: bool) -> RunRecord:
    return run_variant(
        variant_params(params, variant, seed),
        name=variant,
        tags={"suite": "ablation", "variant": variant},
        parent_run_id=parent,
        force=force,
    )


def _worker_init(threads: int) -> None:
    setup_logging()
    torch.set_num_threads(threads)


def run_suite(params: Params, force: bool = False) -> list[tuple[str, int, RunRecord]]:
    """Every (variant, seed) of params.ablation, nested under one MLflow parent run; with
    ablation.n_jobs > 1 the rows train in that many processes, the CPU threads split between them."""
    parent = tracking.start_parent_run(
        params, name="ablation: Table 3", tags={"cvls.parent_key": suite_key(params), "suite": "ablation"}
    )
    combos = [(v, s) for v in params.ablation.variants for s in params.ablation.seeds]
    jobs = min(params.ablation.n_jobs, len(combos))
    if jobs == 1:
        return [(v, s, run_row(params, v, s, parent, force)) for v, s in combos]
    threads = max(1, cpu_cores() // jobs)
    with ProcessPoolExecutor(
        jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(run_row, params, v, s, parent, force) for v, s in combos]
        results = []
        for (variant, seed), fut in zip(combos, futures):
            results.append((variant, seed, fut.result()))  # a failed row raises here, after the others finish
            log.info("ablation %d/%d done: %s seed %d", len(results), len(combos), variant, seed)
    return results


def write_outputs(params: Params, results: list[tuple[str, int, RunRecord]]) -> None:
    folder = params.outputs / "ablation"
    results_rows, sample_rows, history_rows = [], [], []
    for variant, seed, rec in results:
        sw = params.ablation.variants[variant]
        results_rows.append(
            {"variant": variant, "seed": seed, "ccl": sw.ccl, "rhic": sw.rhic, "lcf": sw.lcf, **rec.row()}
        )
        sample_rows.extend(
            {"variant": variant, "seed": seed, **r} for r in rec.per_sample() if r["split"] in ABLATION_SAMPLE_SPLITS
        )
        history_rows.extend({"variant": variant, "seed": seed, **h} for h in rec.history)
    write_csv(folder / "per_sample.csv", sample_rows, ABLATION_SAMPLE_COLUMNS)
    write_csv(folder / "histories.csv", history_rows)
    trained = sum(not rec.reused for _, _, rec in results)
    write_json(
        folder / "summary.json",
        {
            "runs": len(results),
            "trained": trained,
            "reused": len(results) - trained,
            "variants": list(params.ablation.variants),
            "seeds": list(params.ablation.seeds),
        },
    )
    write_csv(folder / "results.csv", results_rows, ABLATION_COLUMNS)  # last: its presence means the rest is there


def format_table(params: Params, results: list[tuple[str, int, RunRecord]]) -> str:
    keys = ("mAP", "overall_iou", "mean_iou")
    lines = [f"{'variant':14s} seeds " + " ".join(f"{'test ' + k:>16s}" for k in keys) + f" {'shuffled mAP':>13s}"]
    for variant in params.ablation.variants:
        recs = [rec for v, _, rec in results if v == variant]
        mean = {k: sum(r.metrics["test"][k] for r in recs) / len(recs) for k in keys}
        shuffled = sum(r.metrics["test_shuffled"]["mAP"] for r in recs) / len(recs)
        lines.append(
            f"{variant:14s} {len(recs):5d} " + " ".join(f"{mean[k]:16.1f}" for k in keys) + f" {shuffled:13.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("Run the Table-3 component ablation (Baseline ... CCL+RHIC+LCF) over the seeds in params")
    p.add_argument("--force", action="store_true", help="retrain every row even if a finished run exists")
    args = p.parse_args(argv)
    params = params_from(args)
    results = run_suite(params, force=args.force)
    write_outputs(params, results)
    print(format_table(params, results))
    trained = sum(not rec.reused for _, _, rec in results)
    print(
        f"{len(results)} runs: {trained} trained, {len(results) - trained} reused; "
        f"tables in {params.outputs / 'ablation'}"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
