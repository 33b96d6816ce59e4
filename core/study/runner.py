"""The whole study: create/resume, fan out to workers, write outputs; the CLI of studies/*.py."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from core import tracking
from core.cli import params_from, parser, run_main
from core.config import Params
from core.errors import Terminated, UserError
from core.runtime import cpu_cores
from core.study.grid import FULL_VARIANT, KINDS, StudyKind, base_params, grid, pair_of, study_name
from core.study.outputs import summary_table, write_outputs
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
class StudyResult:
    study_name: str
    storage: str
    parent_run_id: str | None
    enqueued: int
    info: dict[str, Any]
    ok: bool
    problems: list[str]


def run_study(
    kind: StudyKind | str,
    params: Params,
    *,
    storage: str | None = None,
    n_jobs: int | None = None,
    echo: Callable[[str], None] = print,
) -> StudyResult:
    """Create/resume the study, run it with n_jobs worker processes (1: in this process), write
    the outputs. Safe to run on several machines at once against the same storage."""
    from optuna.trial import TrialState

    from core.results import data_fingerprint

    kind = KINDS[kind] if isinstance(kind, str) else kind
    n_jobs = n_jobs or params.studies.n_jobs
    url = storage_url(params, storage)
    backend_of(url)  # a bad URL is a one-line error before any work
    fingerprint = data_fingerprint(params)  # the store missing: core.train's one-line error
    if params.data.val_fraction <= 0:
        raise UserError("data.val_fraction is 0: the studies maximise validation mAP and need a validation split")
    base = base_params(kind, params)
    name = study_name(kind, base, fingerprint)
    study, enqueued = create_study(kind, params, url, name)
    points = grid(kind, params)
    echo(
        f"study {name} on {display_url(url)}: {kind.key} over {len({gp.point for gp in points})} points x "
        f"{len(params.studies.seeds)} seed(s) = {len(points)} trials ({enqueued} enqueued now), {n_jobs} worker(s)"
    )
    # under the storage lock: with an MLflow server (no SQLite file lock), workers starting at
    # once on several machines would each create a parent; the advisory lock makes them find one
    with storage_lock(url):
        parent = _parent_run(kind, base, name, url)
    ctx = WorkerContext(kind.name, params, url, name, parent)
    problems: list[str] = []
    failed_workers = 0
    complete = {pair_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if {gp.pair for gp in points} <= complete:
        echo("every trial is already COMPLETE: nothing to run")
    elif n_jobs <= 1:
        res = run_worker(ctx)
        if res.failed:
            problems.append(f"trials {res.failed} failed")
    else:
        threads = max(1, cpu_cores() // n_jobs)
        mp = multiprocessing.get_context("spawn")
        procs = []
        for i in range(n_jobs):
            wctx = WorkerContext(kind.name, params, url, name, parent, threads=threads, index=i)
            proc = mp.Process(target=worker_process, args=(wctx,), name=f"{kind.name}-worker-{i}")
            proc.start()
            procs.append(proc)
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
        for i, proc in enumerate(procs):
            if proc.exitcode != 0:
                failed_workers += 1
                problems.append(f"worker {i} exited with code {proc.exitcode}")
    study, _ = open_study(url, name, params.studies.heartbeat_s)
    info = write_outputs(kind, params, study, url, failed_workers=failed_workers)
    if info["missing"]:
        problems.append("not complete: " + ", ".join(f"{m['point']} seed {m['seed']}" for m in info["missing"]))
    try:
        handle = tracking.run_handle(base, parent)
        for fmt in ("csv", "png", "svg", "json"):
            handle.log_artifact(Path(info["files"][fmt]), "study")
    except Exception as err:  # noqa: BLE001 - the outputs are on disk; MLflow is a convenience here
        log.warning("could not attach the study outputs to MLflow run %s: %s", parent, one_line(err))
    echo(summary_table(info))
    best = info["best"]
    echo(
        f"{info['n_complete']}/{info['grid']['size']} trials complete "
        f"({info['trained']} trained, {info['reused']} reused)"
        + (f"; best {best['point']} (mean val mAP {best['mean_val_mAP']:.1f})" if best else "")
        + f"; outputs in {params.outputs / 'studies'}"
    )
    return StudyResult(name, display_url(url), parent, enqueued, info, not problems, problems)


def _parent_run(kind: StudyKind, base: Params, name: str, url: str) -> str:
    """The study's MLflow parent run, found again by its parent key (call under `storage_lock`)."""
    return tracking.start_parent_run(
        base,
        name=f"study {name}",
        tags={
            tracking.TAG_PARENT_KEY: f"study:{name}",
            "study": name,
            "study_kind": kind.name,
            "swept_key": kind.key,
            "optuna_storage": display_url(url),
            "variant": FULL_VARIANT,
        },
    )


def main(kind_name: str, argv: Sequence[str] | None = None) -> int:
    kind = KINDS[kind_name]
    p: argparse.ArgumentParser = parser(f"Optuna grid study: {kind.title} (full model, {kind.key})")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna RDB URL (default: params studies.storage, else sqlite:///<outputs>/optuna.db)",
    )
    p.add_argument("--n-jobs", type=int, default=None, help="worker processes (default: params studies.n_jobs)")
    args = p.parse_args(argv)
    if args.n_jobs is not None and args.n_jobs < 1:
        raise UserError(f"--n-jobs {args.n_jobs}: must be >= 1")
    params = params_from(args)
    storage = absolute_sqlite(args.storage, Path.cwd()) if args.storage else None
    result = run_study(kind, params, storage=storage, n_jobs=args.n_jobs)
    if not result.ok:
        import sys

        print(f"error: study {result.study_name}: " + "; ".join(result.problems), file=sys.stderr)
        return 1
    return 0


def cli(kind_name: str) -> None:
    run_main(lambda argv: main(kind_name, argv))
