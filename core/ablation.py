"""Component ablation (paper Table 3): every variant x seed, tracked under one parent run.

    python ablations/components.py [--params params.yaml] [--set key=value ...] [--storage URL] [--n-jobs N]

(this module is that script's body, importable by ablations/sensitivity.py and the tests)

Variants are named switch combinations in params.yaml (`ablation.variants`), nothing else.
The (variant, seed) rows are the trials of one queue, the studies' (core.study, kind
'ablation'): in an Optuna RDB (`--storage`, else params studies.storage, else
sqlite:///<outputs>/optuna.db), each row is trained exactly once by whichever worker claims it,
`--n-jobs N` local workers (params ablation.n_jobs; one GPU each on a machine with several) or
the same command on other machines against the same storage and MLflow server. A killed worker's
row is retried; a finished suite reruns in seconds. Every row trains like the main run.
Writes to <outputs>/ablation/: results.csv (one row per run), per_sample.csv (every test
sample's IoU, for paired statistics), histories.csv (training curves), summary.json; a row
trained on another machine is read from the tracking server (its run.json and eval/ artifacts).
"""

from __future__ import annotations

import json
import logging
from typing import Sequence

from core import tracking
from core.config import Params
from core.errors import UserError
from core.io import write_csv, write_json
from core.results import ABLATION_COLUMNS, ABLATION_SAMPLE_COLUMNS, ABLATION_SAMPLE_SPLITS, RUN_INFO
from core.runs import RunRecord, local_run
from core.study import ABLATION, collect_rows, grid, run_queue, trial_params
from core.study.grid import GridPoint
from core.study.runner import counts_line, queue_cli
from core.vos_metrics import JF_KEYS

log = logging.getLogger("cvls")


def variant_params(params: Params, variant: str, seed: int) -> Params:
    """One Table-3 row: the variant's switches and the seed; it trains exactly like the main run
    (train.*: the same steps, schedule and checkpoint rule for every row)."""
    return trial_params(ABLATION, params, GridPoint(variant, 0.0, seed))


def run_suite(
    params: Params,
    *,
    storage: str | None = None,
    n_jobs: int | None = None,
    write: bool = False,
    title: str | None = None,
) -> tuple[list[tuple[str, int, RunRecord]], dict[str, int]]:
    """Work the ablation's queue until every (variant, seed) of params.ablation is COMPLETE (on
        this machine or any other), then one RunRecord per row, in the params order, and what this
        invocation did (`QueueResult.counts`: trained here / reused / trained elsewhere). `write`:
        also write the tables (`write_outputs`); `title`: the MLflow parent's name, if not Table 3.
    The MLflow parent ends after that."""
    q = run_queue(ABLATION, params, storage=storage, n_jobs=n_jobs, title=title)
    with tracking.run_span(q.base, q.parent_run_id):
        rows = collect_rows(ABLATION, params, q.study)
        done = {(r["point"], r["seed"]) for r in rows}
        missing = [f"{gp.point} seed {gp.seed}" for gp in grid(ABLATION, params) if gp.pair not in done]
        if missing:
            raise UserError(
                f"ablation {q.name}: rows not complete: {', '.join(missing)}" + "".join(f"; {p}" for p in q.problems)
            )
        results = []
        for r in rows:
            folder = local_run(params, r["run_id"], r["run_hash"])
            info = json.loads((folder / RUN_INFO).read_text())
            metrics = json.loads((folder / "eval" / "metrics.json").read_text())
            rec = RunRecord(r["run_id"], r["run_hash"], folder, r["reused"], metrics, info.get("history", []))
            results.append((r["point"], r["seed"], rec))
        if write:
            write_outputs(params, results, q.counts)
    return results, q.counts


def write_outputs(params: Params, results: list[tuple[str, int, RunRecord]], counts: dict[str, int]) -> None:
    """<outputs>/ablation/*.csv and summary.json (`counts`: this invocation's rows by origin)."""
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
    write_json(
        folder / "summary.json",
        {
            "runs": len(results),
            **counts,  # this invocation: trained_here, reused, trained_elsewhere
            "variants": list(params.ablation.variants),
            "seeds": list(params.ablation.seeds),
        },
    )
    write_csv(folder / "results.csv", results_rows, ABLATION_COLUMNS)  # last: its presence means the rest is there


def format_table(params: Params, results: list[tuple[str, int, RunRecord]]) -> str:
    keys: tuple[str, ...] = ("mAP", "overall_iou", "mean_iou")
    if results and "J&F" in results[0][2].metrics["test"]:  # ytvos / mevis: the DAVIS scores too
        keys += JF_KEYS
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
    params, storage, n_jobs = queue_cli(
        "Run the Table-3 component ablation (Baseline ... CCL+RHIC+LCF) over the seeds in params",
        "ablation.n_jobs",
        argv,
    )
    results, counts = run_suite(params, storage=storage, n_jobs=n_jobs, write=True)
    print(format_table(params, results))
    print(f"{len(results)} runs: {counts_line(counts)}; tables in {params.outputs / 'ablation'}")
    print(f"MLflow: {tracking.ui_link(params)}")
    return 0
