"""A worker: pops WAITING trials (under the storage lock) until every grid pair is COMPLETE."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from core import procs, signals, tracking
from core.cli import run_main
from core.config import Params
from core.errors import UserError
from core.study.grid import (
    ATTR_CLAIM,
    ATTR_DUPLICATE,
    ATTR_ROW,
    KINDS,
    OBJECTIVE,
    SEED_RANGE,
    GridPoint,
    StudyKind,
    base_params,
    grid,
    pair_of,
    trial_params,
)
from core.study.storage import end_stale_runs, one_line, open_study, recover_trials, storage_lock, wait_line

log = logging.getLogger("cvls")


@dataclass
class WorkerContext:
    """Everything a worker needs (picklable, for spawned worker processes)."""

    kind: str
    params: Params
    url: str
    study_name: str
    parent_run_id: str | None
    threads: int | None = None
    index: int = 0
    gpu: str | None = None  # this worker's CUDA_VISIBLE_DEVICES (one GPU per worker on a multi-GPU machine)


@dataclass
class WorkerResult:
    ran: list[int] = field(default_factory=list)  # trial numbers this worker completed
    failed: list[int] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)  # pairs not COMPLETE at the end


@contextmanager
def _heartbeat(storage: Any, trial_id: int, interval: int) -> Iterator[None]:
    """Record the trial's heartbeat every `interval` s (what Study.optimize does for its trials)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception as err:  # noqa: BLE001 - a missed beat must not kill the trial
                log.warning("heartbeat of trial %d failed: %s", trial_id, one_line(err))

    thread = threading.Thread(target=beat, name=f"optuna-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _claim(study: Any, storage: Any, worker: str, held: list[Any]) -> tuple[Any, int, tuple[str, int]] | None | str:
    """Under the lock: pop one WAITING trial. Returns (trial, trial_id, pair); None when nothing is
    WAITING; 'skip' when the popped trial was a duplicate (told PRUNED, never trained). The popped
    trial is in `held` from the moment ask() returns it until it is told (here, or by the caller).

    A WAITING pair outside the current grid (enqueued by a run with more seeds/points, same
    shared config) is run too: queued work is never dropped; the table shows the grid only."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.WAITING for t in trials):
        return None
    # ask() warns that heartbeats are meant for optimize(); we beat ourselves. Popped and held in
    # one step: no signal falls between them
    with warnings.catch_warnings(), signals.held():
        warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
        trial = study.ask()
        held.append(trial)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    storage.record_heartbeat(trial_id)  # a worker killed from here on leaves a stale, retried trial
    frozen = storage.get_trial(trial_id)
    pair = pair_of(frozen)
    if pair is None:  # ask() created it: the queue emptied between the check and the pop
        trial.set_user_attr(ATTR_DUPLICATE, "none")
        study.tell(trial, state=TrialState.PRUNED)
        held.clear()
        log.info("trial %d pruned: no grid pair (created while the queue was empty)", trial.number)
        return "skip"
    live = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        if t.number != trial.number and pair_of(t) == pair
    ]
    if live:
        trial.set_user_attr(ATTR_DUPLICATE, live[0].number)
        study.tell(trial, state=TrialState.PRUNED)
        held.clear()
        log.info(
            "trial %d pruned: point %s seed %d already has trial %d (%s)",
            trial.number,
            pair[0],
            pair[1],
            live[0].number,
            live[0].state.name,
        )
        return "skip"
    claim = {"worker": worker, "trial": trial.number, "owner": procs.owner()}
    trial.set_user_attr(ATTR_CLAIM, claim)  # the claim is complete
    return trial, trial_id, pair


def run_worker(ctx: WorkerContext) -> WorkerResult:
    """Pop and run WAITING trials until every grid pair has a COMPLETE trial; meanwhile wait on
    pairs RUNNING in other workers (a dead worker's trial goes stale and is retried here). Stops
    early only when the remaining pairs have nothing left but FAIL trials."""
    from optuna.trial import TrialState

    from core.runs import run_variant

    kind = KINDS[ctx.kind]
    params = ctx.params
    hb = params.studies.heartbeat_s
    study, storage = open_study(ctx.url, ctx.study_name, hb)
    base = base_params(kind, params)
    points = {gp.pair: gp for gp in grid(kind, params)}
    worker = f"{socket.gethostname()}:{os.getpid()}:{ctx.index}"
    result = WorkerResult()
    poll = max(0.5, min(5.0, hb / 2))
    announced: set[int] = set()  # the trials this worker said it waits on (one line each)
    held: list[Any] = []  # the trial popped and not told yet: told FAIL on Ctrl-C / SIGTERM wherever it lands
    try:
        while True:
            held.clear()
            with storage_lock(ctx.url):
                stale = recover_trials(study, storage, ctx.url)  # dead workers' trials -> FAIL + re-enqueued
                claimed = _claim(study, storage, worker, held)
            end_stale_runs(params, ctx.study_name, stale)  # ...and their MLflow runs KILLED
            if claimed == "skip":
                continue
            if claimed is None:
                trials = study.get_trials(deepcopy=False)
                complete = {pair_of(t) for t in trials if t.state == TrialState.COMPLETE}
                running = {pair_of(t) for t in trials if t.state == TrialState.RUNNING}
                if set(points) <= complete:
                    break  # the budget: every (point, seed) COMPLETE once
                if set(points) & running:
                    for t in trials:  # another worker's trial (or a dead one on another host, until it goes stale)
                        if t.state == TrialState.RUNNING and pair_of(t) in points and t.number not in announced:
                            announced.add(t.number)
                            log.info("%s", wait_line(study, storage, t))
                    time.sleep(poll)
                    continue
                result.missing = sorted(set(points) - complete)
                break  # what is left has only FAIL trials: retried by the next invocation
            trial, trial_id, pair = claimed  # type: ignore[misc]
            gp = points.get(pair) or GridPoint(pair[0], kind.x_of(pair[0]), pair[1])
            try:
                with _heartbeat(storage, trial_id, hb):
                    trial.suggest_float(kind.param, *kind.param_range)
                    trial.suggest_int("seed", *SEED_RANGE)
                    value, row = _run_trial(kind, base, gp, trial.number, ctx, run_variant)
                    trial.set_user_attr(ATTR_ROW, row)
            except Exception as err:  # noqa: BLE001 - one failed point must not stop the others
                log.error(
                    "trial %d (%s %s seed %d) failed: %s", trial.number, kind.name, gp.point, gp.seed, one_line(err)
                )
                try:
                    trial.set_user_attr("error", one_line(err))
                except Exception:  # noqa: BLE001
                    pass
                _tell_safely(study, trial, state=TrialState.FAIL)
                held.clear()
                result.failed.append(trial.number)
                continue
            told = _tell_safely(study, trial, values=value)
            held.clear()
            if told:
                result.ran.append(trial.number)
                log.info("trial %d: %s %s seed %d -> val mAP %.2f", trial.number, kind.name, gp.point, gp.seed, value)
    except KeyboardInterrupt:
        for trial in held:
            _tell_safely(study, trial, state=TrialState.FAIL)
        raise
    return result


def _run_trial(
    kind: StudyKind, base: Params, gp: GridPoint, number: int, ctx: WorkerContext, run_variant: Callable[..., Any]
) -> tuple[float, dict[str, Any]]:
    p = trial_params(kind, base, gp)
    tags = {
        "study": ctx.study_name,
        "trial": str(number),
        "variant": kind.variant_of(gp.point),
        "study_point": gp.point,
        "study_kind": kind.name,
    }
    if kind.sweeps_full_model:
        name = f"{kind.name} {gp.point} seed {gp.seed}"
    else:  # a Table-3 row: named for its variant, as in the paper
        name, tags["suite"] = gp.point, "ablation"
    record = run_variant(p, name=name, tags=tags, parent_run_id=ctx.parent_run_id)
    if record.reused and record.run_id and ctx.parent_run_id:
        # a retried trial whose run finished before its worker died: the run already sits under
        # this parent (so no reference child was made); point its trial tag at the new trial
        handle = tracking.run_handle(p, record.run_id)
        if handle.client.get_run(record.run_id).data.tags.get(tracking.TAG_PARENT_RUN_ID) == ctx.parent_run_id:
            handle.set_tags({"trial": str(number)})
    value = record.metrics.get(OBJECTIVE[0], {}).get(OBJECTIVE[1])
    if value is None or not math.isfinite(value):
        raise UserError(f"run {record.run_id} has no finite validation mAP (is data.val_fraction > 0?)")
    row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.row().items()}
    return float(value), row


def _tell_safely(study: Any, trial: Any, **kwargs: Any) -> bool:
    """tell(); False when the trial was already finished elsewhere (e.g. marked stale)."""
    try:
        study.tell(trial, **kwargs)
        return True
    except Exception as err:  # noqa: BLE001
        log.warning(
            "trial %d could not be told %s (%s); its retry reuses the finished run",
            trial.number,
            kwargs.get("state", "COMPLETE"),
            one_line(err),
        )
        return False


def worker_process(ctx: WorkerContext) -> None:
    """Entry point of a spawned worker process: exit 0 ok, 1 pairs left failed, 2 user error."""

    def main(_argv: object) -> int:
        if ctx.gpu is not None:  # before this process first touches CUDA: it then sees one GPU, cuda:0
            os.environ["CUDA_VISIBLE_DEVICES"] = ctx.gpu
        if ctx.threads:
            import torch

            torch.set_num_threads(ctx.threads)
        res = run_worker(ctx)
        return 1 if res.failed or res.missing else 0

    run_main(main, lifeline=True)  # a study process killed outright takes its workers with it
