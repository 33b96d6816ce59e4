"""The whole study: create/resume, fan out to workers, write outputs; the CLI of studies/*.py."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from core import tracking
from core.cli import params_from, parser, run_main
from core.config import Params
from core.errors import Terminated, UserError
from core.runtime import cpu_cores, worker_gpus
from core.study.grid import ATTR_ROW, FULL_VARIANT, KINDS, StudyKind, base_params, grid, pair_of, study_name
from core.study.outputs import collect_rows, invocation_counts, summary_table, write_outputs
from core.study.storage import (
    absolute_sqlite,
    backend_of,
    create_study,
    display_url,
    one_line,
    open_study,
    storage_lock,
    storage_url,
)
from core.study.worker import WorkerContext, run_worker, worker_process

log = logging.getLogger("cvls")


@dataclass
class QueueResult:
    """A study's queue after this invocation: the study, where it lives, its MLflow parent, and
    what this invocation did (`counts`: the grid's COMPLETE rows by `core.study.outputs.ORIGINS`)."""

    study: Any
    url: str
    name: str
    base: Params
    parent_run_id: str | None
    enqueued: int
    failed_workers: int
    problems: list[str]
    counts: dict[str, int]


@dataclass
class StudyResult:
    study_name: str
    storage: str
    parent_run_id: str | None
    enqueued: int
    info: dict[str, Any]
    ok: bool
    problems: list[str]


def run_queue(
    kind: StudyKind,
    params: Params,
    *,
    storage: str | None = None,
    n_jobs: int | None = None,
    echo: Callable[[str], None] = print,
    title: str | None = None,
) -> QueueResult:
    """Create/resume the study's queue of (point, seed) trials and work it with n_jobs worker
    processes (1: in this process; on a machine with several GPUs, one GPU each) until every pair
    is COMPLETE. Safe on several machines at once against the same storage. The MLflow parent is
    left RUNNING: the caller ends it once its table is written (`tracking.run_span`)."""
    from optuna.trial import TrialState

    from core.train import run_fingerprint

    n_jobs = n_jobs or (params.studies.n_jobs if kind.sweeps_full_model else params.ablation.n_jobs)
    url = storage_url(params, storage)
    backend_of(url)  # a bad URL is a one-line error before any work
    fingerprint = run_fingerprint(params)  # the store or the start weights missing: a one-line error
    if params.data.val_fraction <= 0:
        raise UserError(
            "data.val_fraction is 0: every trial's objective is validation mAP, which needs a validation split"
        )
    base = base_params(kind, params)
    name = study_name(kind, base, fingerprint)
    study, enqueued = create_study(kind, params, url, name)
    points = grid(kind, params)
    n_points, n_seeds = len({gp.point for gp in points}), len({gp.seed for gp in points})
    echo(
        f"study {name} on {display_url(url)}: {kind.key} over {n_points} points x {n_seeds} seed(s) = "
        f"{len(points)} trials ({enqueued} enqueued now), {n_jobs} worker(s)"
    )
    # under the storage lock: with an MLflow server (no SQLite file lock), workers starting at
    # once on several machines would each create a parent; the advisory lock makes them find one
    with storage_lock(url):
        parent = _parent_run(kind, base, name, url, title)
    problems: list[str] = []
    failed_workers = 0
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    pids: set[int] = set()  # this invocation's worker processes
    complete = {pair_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    try:
        if {gp.pair for gp in points} <= complete:
            echo("every trial is already COMPLETE: nothing to run")
        elif n_jobs <= 1:
            pids.add(os.getpid())
            res = run_worker(WorkerContext(kind.name, params, url, name, parent))
            if res.failed:
                problems.append(f"trials {res.failed} failed")
        else:
            failed_workers = _fan_out(kind, params, url, name, parent, n_jobs, problems, pids)
        study, _ = open_study(url, name, params.studies.heartbeat_s)
        counts = invocation_counts(collect_rows(kind, params, study), study, before, socket.gethostname(), pids)
    except BaseException as err:
        tracking.end_run(base, parent, err)
        raise
    return QueueResult(study, url, name, base, parent, enqueued, failed_workers, problems, counts)


def _fan_out(
    kind: StudyKind,
    params: Params,
    url: str,
    name: str,
    parent: str,
    n_jobs: int,
    problems: list[str],
    pids: set[int],
) -> int:
    """n_jobs spawned workers, the CPU threads split between them, one GPU each where there are
    several; adds their pids to `pids`; returns how many exited non-zero (each named in `problems`)."""
    threads = max(1, cpu_cores() // n_jobs)
    gpus = worker_gpus(n_jobs, params.train.device)
    mp = multiprocessing.get_context("spawn")
    procs = []
    for i in range(n_jobs):
        wctx = WorkerContext(kind.name, params, url, name, parent, threads=threads, index=i, gpu=gpus[i])
        proc = mp.Process(target=worker_process, args=(wctx,), name=f"{kind.name}-worker-{i}")
        proc.start()
        procs.append(proc)
        pids.add(proc.pid)
    try:
        for proc in procs:
            proc.join()
    except BaseException as err:
        if isinstance(err, Terminated):  # a Ctrl-C reaches the whole process group, SIGTERM only us
            for proc in procs:
                proc.terminate()
        for proc in procs:  # a moment to mark their trials FAIL and their runs KILLED
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()  # its trial goes stale and is retried on the next run
        raise
    failed = 0
    for i, proc in enumerate(procs):
        if proc.exitcode != 0:
            failed += 1
            problems.append(f"worker {i} exited with code {proc.exitcode}")
    return failed


def run_study(
    kind: StudyKind | str,
    params: Params,
    *,
    storage: str | None = None,
    n_jobs: int | None = None,
    echo: Callable[[str], None] = print,
) -> StudyResult:
    """A sweep (Fig. 6a/6b): work its queue (`run_queue`), then write the outputs from the study
    alone, each row's evaluation files fetched from the tracking server where another machine
    trained it."""
    kind = KINDS[kind] if isinstance(kind, str) else kind
    q = run_queue(kind, params, storage=storage, n_jobs=n_jobs, echo=echo)
    problems = list(q.problems)
    with tracking.run_span(q.base, q.parent_run_id):  # the parent ends once its table is written
        fetch_rows(params, q.study)
        info = write_outputs(kind, params, q.study, q.url, counts=q.counts, failed_workers=q.failed_workers)
        try:
            handle = tracking.run_handle(q.base, q.parent_run_id)
            for fmt in ("csv", "png", "svg", "json"):
                handle.log_artifact(Path(info["files"][fmt]), "study")
        except Exception as err:  # noqa: BLE001 - the outputs are on disk; MLflow is a convenience here
            log.warning("could not attach the study outputs to MLflow run %s: %s", q.parent_run_id, one_line(err))
    if info["missing"]:
        problems.append("not complete: " + ", ".join(f"{m['point']} seed {m['seed']}" for m in info["missing"]))
    echo(summary_table(info))
    best = info["best"]
    echo(
        f"{info['n_complete']}/{info['grid']['size']} trials complete ({counts_line(q.counts)})"
        + (f"; best {best['point']} (mean val mAP {best['mean_val_mAP']:.1f})" if best else "")
        + f"; outputs in {params.outputs / 'studies'}"
    )
    return StudyResult(q.name, display_url(q.url), q.parent_run_id, q.enqueued, info, not problems, problems)


def counts_line(counts: dict[str, int]) -> str:
    """'3 trained here, 7 reused, 0 trained elsewhere' (`QueueResult.counts`)."""
    return ", ".join(f"{n} {origin.replace('_', ' ')}" for origin, n in counts.items())


def fetch_rows(params: Params, study: Any) -> None:
    """Each COMPLETE trial's run folder (run.json, eval/) on this machine: a run trained on another
    machine is copied from the tracking server (`core.runs.local_run`), so the report reads the
    same files wherever the trials ran. Best effort: a run whose files cannot be had is logged."""
    from optuna.trial import TrialState

    from core.runs import local_run

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = t.user_attrs.get(ATTR_ROW) or {}
        if row.get("run_id") and row.get("run_hash"):
            try:
                local_run(params, row["run_id"], row["run_hash"])
            except UserError as err:
                log.warning("trial %d: %s", t.number, err)


def _parent_run(kind: StudyKind, base: Params, name: str, url: str, title: str | None = None) -> str:
    """The study's MLflow parent run, found again by its parent key (call under `storage_lock`);
    `title` names an ablation queue that is not Table 3 (the calibration's)."""
    tags = {
        tracking.TAG_PARENT_KEY: f"study:{name}",
        "study": name,
        "study_kind": kind.name,
        "swept_key": kind.key,
        "optuna_storage": display_url(url),
    }
    if kind.sweeps_full_model:
        return tracking.start_parent_run(base, name=f"study {name}", tags=tags | {"variant": FULL_VARIANT})
    return tracking.start_parent_run(base, name=title or "ablation: Table 3", tags=tags | {"suite": "ablation"})


def queue_cli(description: str, jobs_key: str, argv: Sequence[str] | None) -> tuple[Params, str | None, int | None]:
    """The command line every queue's script shares (the studies, the ablation, the sensitivity):
    --params/--set, --storage (a relative SQLite path is relative to the cwd), --n-jobs."""
    p: argparse.ArgumentParser = parser(description)
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna RDB URL of the queue (default: params studies.storage, else sqlite:///<outputs>/optuna.db)",
    )
    p.add_argument("--n-jobs", type=int, default=None, help=f"local worker processes (default: params {jobs_key})")
    args = p.parse_args(argv)
    if args.n_jobs is not None and args.n_jobs < 1:
        raise UserError(f"--n-jobs {args.n_jobs}: must be >= 1")
    storage = absolute_sqlite(args.storage, Path.cwd()) if args.storage else None
    return params_from(args), storage, args.n_jobs


def main(kind_name: str, argv: Sequence[str] | None = None) -> int:
    kind = KINDS[kind_name]
    params, storage, n_jobs = queue_cli(
        f"Optuna grid study: {kind.title} (full model, {kind.key})", "studies.n_jobs", argv
    )
    result = run_study(kind, params, storage=storage, n_jobs=n_jobs)
    print(f"MLflow: {tracking.ui_link(params)}")
    if not result.ok:
        import sys

        print(f"error: study {result.study_name}: " + "; ".join(result.problems), file=sys.stderr)
        return 1
    return 0


def cli(kind_name: str) -> None:
    run_main(lambda argv: main(kind_name, argv))
