"""Optuna grid studies of the full CVLS model: one piece of machinery for every swept key.

    python studies/rhic_ratio.py          [--params params.yaml] [--set k=v] [--storage URL] [--n-jobs N]
    python studies/lambda_sensitivity.py  (same options)

A study sweeps one params key over a fixed grid (params.studies.rhic_ratios / .lambdas) for each
seed in params.studies.seeds. Every (grid point, seed) pair is one Optuna trial that calls
`core.runs.run_variant` (train, or reuse a FINISHED run with the same config hash, then
evaluate); the objective is validation mAP (maximised). The trial's flat result row is stored
as the user attr 'row', so the outputs are written from the study alone.

Guarantees, with any number of workers (`--n-jobs N` processes, or the same command on other
machines against the same storage):
- Storage: an Optuna RDB (default sqlite:///<outputs>/optuna.db). Opening the storage, creating
  the study and enqueueing the grid happen once under `storage_lock` (a file lock next to a
  SQLite file; an advisory lock on PostgreSQL/MySQL); `load_if_exists=True` everywhere.
- Study name `<kind>-<digest>`: the digest covers what the trials share (data, model, loss but
  the swept key, train but the seed, eval, the data fingerprint), so a changed params.yaml
  starts a new study instead of mixing results.
- The grid is enqueued explicitly (no sampler): only pairs without a WAITING/RUNNING/COMPLETE
  trial are enqueued. Workers pop WAITING trials under the same lock and check, in the same
  critical section, that no other COMPLETE or RUNNING trial has the pair (else the trial is
  PRUNED with user attr 'duplicate_of' and never trains). A trial created without a grid pair
  (possible only on a backend without a lock) is PRUNED the same way. Workers never ask the
  sampler for new points; they stop when every pair is COMPLETE (the budget: grid x seeds
  COMPLETE trials), waiting meanwhile on pairs RUNNING elsewhere.
- Resume: RDBStorage heartbeats (params.studies.heartbeat_s, grace 2x); a RUNNING trial whose
  worker died goes stale, is marked FAIL and re-enqueued (max 3 retries); a run killed mid-way
  resumes from its checkpoint (core.train). A trial that raised is FAIL and is enqueued again by
  the next invocation.
- MLflow: one parent run per study (`study <name>`, found again on resume via cvls.parent_key);
  each trial's run (or a light reference run when the config was trained elsewhere) is nested
  under it with tags study, trial, variant, study_point.
- Outputs (atomic) in <outputs>/studies/: <kind>.csv (one row per (point, seed)), <kind>.png/.svg
  (val and test mAP vs the swept value, mean line + seeds + min-max band), <kind>.json summary.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import math
import multiprocessing
import os
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from core import tracking
from core.cli import params_from, parser, run_main, setup_logging
from core.config import Params, parse_ratio
from core.errors import UserError
from core.io import atomic_path, write_csv, write_json

log = logging.getLogger("cvls")

FULL_MODEL = {"loss.ccl": True, "loss.rhic": True, "loss.lcf": True}
FULL_VARIANT = "CCL+RHIC+LCF"
OBJECTIVE = ("val", "mAP")
MAX_RETRY = 3
LOCK_TIMEOUT_S = 600
ATTR_ROW = "row"
ATTR_POINT = "point"
ATTR_SEED = "seed"
ATTR_DUPLICATE = "duplicate_of"
ATTR_CLAIM = "claim"  # {"worker": host:pid:index, "trial": number}, set once the first heartbeat is stored
_SEED_RANGE = (-(2**31), 2**31 - 1)


# ---------------------------------------------------------------------------------------------
# what a study sweeps
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyKind:
    """One swept params key: its grid, its Optuna parameter and how to plot it."""

    name: str  # 'rhic_ratio' -> study '<name>-<digest>', outputs <name>.csv/.png/.json
    key: str  # dotted params key set per trial
    param: str  # Optuna parameter name (numeric x)
    param_range: tuple[float, float]
    title: str
    x_label: str
    categorical: bool  # plotted as evenly spaced categories (ratios) or on a numeric axis
    grid_values: Callable[[Params], Sequence[Any]]
    point_text: Callable[[Any], str]  # grid value -> the 'point' column
    x_of: Callable[[str], float]  # point text -> numeric x
    value_of: Callable[[str], Any]  # point text -> the params value

    @property
    def leaf(self) -> str:
        return self.key.split(".")[-1]


def _ratio_x(text: str) -> float:
    h, e = parse_ratio(text)
    return h / e


RHIC_RATIO = StudyKind(
    name="rhic_ratio", key="loss.rhic_ratio", param="h_over_e", param_range=(0.0, 1e9),
    title="RHIC hard:easy ratio (Fig. 6a)", x_label="RHIC hard:easy ratio h:e",
    categorical=True, grid_values=lambda p: p.studies.rhic_ratios, point_text=lambda v: str(v).strip(),
    x_of=_ratio_x, value_of=lambda t: t,
)
LAMBDA_SENSITIVITY = StudyKind(
    name="lambda_sensitivity", key="loss.lambda_seg", param="lambda_seg", param_range=(0.0, 1.0),
    title="Loss weight λ sensitivity (Eq. 4)", x_label="λ = loss.lambda_seg (weight of L_seg; L_ccl gets 1 − λ)",
    categorical=False, grid_values=lambda p: p.studies.lambdas, point_text=lambda v: repr(float(v)),
    x_of=float, value_of=float,
)
KINDS = {k.name: k for k in (RHIC_RATIO, LAMBDA_SENSITIVITY)}


@dataclass(frozen=True)
class GridPoint:
    point: str  # '1:3' or '0.8'
    x: float
    seed: int

    @property
    def pair(self) -> tuple[str, int]:
        return (self.point, self.seed)


def grid(kind: StudyKind, params: Params) -> list[GridPoint]:
    """Every (point, seed) pair of the study, points in ascending x (the paper's order), no repeats."""
    points: list[str] = []
    for v in kind.grid_values(params):
        text = kind.point_text(v)
        if text not in points:
            points.append(text)
    points.sort(key=kind.x_of)  # stable: ties keep the params order
    seeds = list(dict.fromkeys(params.studies.seeds))
    return [GridPoint(pt, kind.x_of(pt), s) for pt in points for s in seeds]


def base_params(kind: StudyKind, params: Params) -> Params:
    """The config every trial shares: the full model (CCL + RHIC + LCF)."""
    return params.replace(**FULL_MODEL)


def trial_params(kind: StudyKind, base: Params, gp: GridPoint) -> Params:
    return base.replace(**{kind.key: kind.value_of(gp.point), "train.seed": gp.seed})


def study_name(kind: StudyKind, base: Params, data_fingerprint: str) -> str:
    """'<kind>-<10 hex>' over data, model, loss (but the swept key), train (but the seed), eval
    and the data fingerprint: the same params.yaml resumes the same study, a changed one does not."""
    d = base.to_dict()
    shared = {k: d[k] for k in ("data", "model", "loss", "train", "eval")}
    shared["loss"] = {k: v for k, v in shared["loss"].items() if k != kind.leaf}
    shared["train"] = {k: v for k, v in shared["train"].items() if k != "seed"}
    blob = json.dumps({"kind": kind.name, "shared": shared, "data_fingerprint": data_fingerprint}, sort_keys=True)
    return f"{kind.name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def _pair_of(trial: Any) -> tuple[str, int] | None:
    attrs = trial.user_attrs
    if ATTR_POINT not in attrs or ATTR_SEED not in attrs:
        return None
    return (str(attrs[ATTR_POINT]), int(attrs[ATTR_SEED]))


# ---------------------------------------------------------------------------------------------
# storage: URL, lock, open
# ---------------------------------------------------------------------------------------------
def storage_url(params: Params, override: str | None = None) -> str:
    """--storage > params.studies.storage > sqlite:///<outputs>/optuna.db (absolute).

    A relative SQLite path in params is relative to the project root (like every params path);
    one given on the command line is made absolute by the caller (relative to the cwd)."""
    url = (override or params.studies.storage or "").strip()
    if not url:
        return f"sqlite:///{params.outputs / 'optuna.db'}"
    db = tracking.sqlite_path(url)
    if db is not None and not db.is_absolute():
        return "sqlite:///" + str(params.resolve(db)) + _sqlite_query(url)
    return url


def absolute_sqlite(url: str, base: Path) -> str:
    """A relative sqlite:/// path made absolute against `base` (other URLs unchanged)."""
    db = tracking.sqlite_path(url)
    if db is None or db.is_absolute():
        return url
    return "sqlite:///" + str((base / db).resolve()) + _sqlite_query(url)




def _sqlite_query(url: str) -> str:
    return "?" + url.split("?", 1)[1] if "?" in url else ""


def display_url(url: str) -> str:
    """The URL with any password masked (for messages, logs, tags and the summary)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def _backend(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).get_backend_name()
    except Exception as err:  # noqa: BLE001
        raise UserError(f"optuna storage {display_url(url)!r}: not a database URL ({_one_line(err)}); "
                        "expected e.g. sqlite:////abs/path/optuna.db or postgresql://user@host/db") from None


_lock_engines: dict[str, Any] = {}


@contextmanager
def storage_lock(url: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Serialise study creation, enqueueing and trial pops across processes and machines.

    SQLite: a file lock next to the DB file. PostgreSQL / MySQL: a session advisory lock.
    Other backends: no lock (the duplicate guard in the worker still applies)."""
    db = tracking.sqlite_path(url)
    if db is not None:
        import filelock

        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"optuna storage {url}: cannot create {db.parent} ({_one_line(err)})") from None
        try:
            with filelock.FileLock(str(db) + ".lock", timeout=timeout_s):
                yield
        except filelock.Timeout:
            raise UserError(f"optuna storage {url}: lock {db}.lock held for over {timeout_s:.0f}s") from None
        return
    backend = _backend(url)
    if backend not in ("postgresql", "mysql", "mariadb"):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    name = "cvls-optuna-study"
    try:
        engine = _lock_engines.get(url)
        if engine is None:
            engine = _lock_engines[url] = sqlalchemy.create_engine(
                url, poolclass=NullPool, connect_args={"connect_timeout": 15})
        conn = engine.connect()
    except Exception as err:  # noqa: BLE001 - a missing driver, an unreachable server, bad credentials
        raise UserError(f"optuna storage {display_url(url)}: cannot connect ({_one_line(err)})") from None
    with conn:  # closing the connection releases the lock in any case
        if backend == "postgresql":
            key = int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            release = ("SELECT pg_advisory_unlock(:k)", {"k": key})
        else:
            got = conn.execute(sqlalchemy.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": int(timeout_s)}).scalar()
            if got != 1:
                raise UserError(f"optuna storage {display_url(url)}: lock {name!r} held for over {timeout_s:.0f}s")
            release = ("SELECT RELEASE_LOCK(:n)", {"n": name})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text(release[0]), release[1])


def _retry_callback() -> Any:
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=MAX_RETRY)


def open_storage(url: str, heartbeat_s: int) -> Any:
    """An RDBStorage with heartbeats, stale-trial retry; a UserError naming the URL if it fails.
    Call under `storage_lock(url)` (a fresh SQLite file gets its schema here)."""
    import optuna

    backend = _backend(url)
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 120}}  # waits on a busy DB instead of failing
    elif backend == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": 15}, "pool_pre_ping": True}
    elif backend in ("mysql", "mariadb"):
        engine_kwargs = {"connect_args": {"connect_timeout": 15}}
    kwargs: dict[str, Any] = {"heartbeat_interval": int(heartbeat_s), "grace_period": 2 * int(heartbeat_s)}
    sig = inspect.signature(optuna.storages.RDBStorage)
    kwargs["heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in sig.parameters
           else "failed_trial_callback"] = _retry_callback()
    last: Exception | None = None
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to open is the user's URL/server
            last = err
            if not _is_integrity_error(err):
                break
            time.sleep(0.5 * (attempt + 1))  # schema created concurrently elsewhere: try again
    raise UserError(f"optuna storage {display_url(url)}: cannot open ({_one_line(last)})") from None


def _is_integrity_error(err: BaseException) -> bool:
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    e: BaseException | None = err
    while e is not None:
        if isinstance(e, (IntegrityError, ProgrammingError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def _one_line(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:400]


def _locks(url: str) -> bool:
    """Whether `storage_lock` really serialises this backend."""
    return tracking.sqlite_path(url) is not None or _backend(url) in ("postgresql", "mysql", "mariadb")


def recover_trials(study: Any, storage: Any, url: str) -> list[int]:
    """Mark dead workers' trials FAIL and re-enqueue them (RetryHeartbeatStaleTrialCallback, max 3
    retries); the numbers of the trials failed. Call under `storage_lock`.

    - heartbeat older than the grace period: Optuna's fail_stale_trials;
    - RUNNING without this claim's ATTR_CLAIM: its worker died between the pop and its first
      heartbeat, a trial Optuna never sees as stale. Claims are atomic under the lock, so on a
      locked backend such a trial is abandoned at once; elsewhere after the grace period.
    """
    import datetime as dt

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    failed = sorted(before - {t.number for t in running})
    locked = _locks(url)
    grace = dt.timedelta(seconds=2 * storage.get_heartbeat_interval())
    callback = storage.get_heartbeat_stale_trial_callback()
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in running:
        claim = t.user_attrs.get(ATTR_CLAIM)
        if isinstance(claim, dict) and claim.get("trial") == t.number:
            continue
        if not locked and (t.datetime_start is None or dt.datetime.now() - t.datetime_start < grace):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        log.warning("trial %d was abandoned by a dead worker before its first heartbeat; retrying it", t.number)
        failed.append(t.number)
        if callback is not None:
            import copy

            callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    return failed


# ---------------------------------------------------------------------------------------------
# the study: create once, enqueue the grid once
# ---------------------------------------------------------------------------------------------
def create_study(kind: StudyKind, params: Params, url: str, name: str) -> tuple[Any, int]:
    """Create (or load) the study and enqueue the missing grid pairs, all under the lock.
    Returns (study, number of trials enqueued now)."""
    import optuna

    for attempt in range(3):
        try:
            with storage_lock(url):
                storage = open_storage(url, params.studies.heartbeat_s)
                study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
                if "kind" not in study.user_attrs:
                    study.set_user_attr("kind", kind.name)
                    study.set_user_attr("swept_key", kind.key)
                    study.set_user_attr("objective", "val/mAP (%)")
                recover_trials(study, storage, url)
                return study, enqueue_grid(study, kind, grid(kind, params))
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001
            if not _is_integrity_error(err) or attempt == 2:
                raise UserError(f"optuna storage {display_url(url)}: cannot create study {name} ({_one_line(err)})") from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def enqueue_grid(study: Any, kind: StudyKind, points: list[GridPoint]) -> int:
    """Enqueue each pair that has no WAITING, RUNNING or COMPLETE trial (FAIL ones are retried;
    PRUNED ones are duplicates). Idempotent; call under `storage_lock`."""
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    have = {_pair_of(t) for t in study.get_trials(deepcopy=False, states=live)}
    n = 0
    for gp in points:
        if gp.pair in have:
            continue
        study.enqueue_trial(
            {kind.param: gp.x, "seed": gp.seed},
            user_attrs={ATTR_POINT: gp.point, ATTR_SEED: gp.seed, "x": gp.x},
        )
        have.add(gp.pair)
        n += 1
    return n


def open_study(url: str, name: str, heartbeat_s: int) -> tuple[Any, Any]:
    """(study, its RDBStorage) of an existing study."""
    import optuna

    with storage_lock(url):
        storage = open_storage(url, heartbeat_s)
    try:
        return optuna.load_study(study_name=name, storage=storage), storage
    except KeyError:
        raise UserError(f"optuna storage {display_url(url)}: no study named {name}") from None


# ---------------------------------------------------------------------------------------------
# a worker: pop WAITING trials until every pair is COMPLETE
# ---------------------------------------------------------------------------------------------
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
                log.warning("heartbeat of trial %d failed: %s", trial_id, _one_line(err))

    thread = threading.Thread(target=beat, name=f"optuna-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _claim(study: Any, storage: Any, worker: str) -> tuple[Any, int, tuple[str, int]] | None | str:
    """Under the lock: pop one WAITING trial. Returns (trial, trial_id, pair); None when nothing is
    WAITING; 'skip' when the popped trial was a duplicate (told PRUNED, never trained).

    A WAITING pair outside the current grid (enqueued by a run with more seeds/points, same
    shared config) is run too: queued work is never dropped; the table shows the grid only."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.WAITING for t in trials):
        return None
    with warnings.catch_warnings():  # ask() warns that heartbeats are meant for optimize(); we beat ourselves
        warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
        trial = study.ask()
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number)
    storage.record_heartbeat(trial_id)  # a worker killed from here on leaves a stale, retried trial
    frozen = storage.get_trial(trial_id)
    pair = _pair_of(frozen)
    if pair is None:  # ask() created it: the queue emptied between the check and the pop
        trial.set_user_attr(ATTR_DUPLICATE, "none")
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d pruned: no grid pair (created while the queue was empty)", trial.number)
        return "skip"
    live = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            if t.number != trial.number and _pair_of(t) == pair]
    if live:
        trial.set_user_attr(ATTR_DUPLICATE, live[0].number)
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d pruned: point %s seed %d already has trial %d (%s)",
                 trial.number, pair[0], pair[1], live[0].number, live[0].state.name)
        return "skip"
    trial.set_user_attr(ATTR_CLAIM, {"worker": worker, "trial": trial.number})  # the claim is complete
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
    while True:
        with storage_lock(ctx.url):
            recover_trials(study, storage, ctx.url)  # dead workers' trials -> FAIL + re-enqueued
            claimed = _claim(study, storage, worker)
        if claimed == "skip":
            continue
        if claimed is None:
            trials = study.get_trials(deepcopy=False)
            complete = {_pair_of(t) for t in trials if t.state == TrialState.COMPLETE}
            running = {_pair_of(t) for t in trials if t.state == TrialState.RUNNING}
            if set(points) <= complete:
                break  # the budget: every (point, seed) COMPLETE once
            if set(points) & running:
                time.sleep(poll)  # another worker's trial (or a dead one, until it goes stale)
                continue
            result.missing = sorted(set(points) - complete)
            break  # what is left has only FAIL trials: retried by the next invocation
        trial, trial_id, pair = claimed  # type: ignore[misc]
        gp = points.get(pair) or GridPoint(pair[0], kind.x_of(pair[0]), pair[1])
        try:
            with _heartbeat(storage, trial_id, hb):
                trial.suggest_float(kind.param, *kind.param_range)
                trial.suggest_int("seed", *_SEED_RANGE)
                value, row = _run_trial(kind, base, gp, trial.number, ctx, run_variant)
                trial.set_user_attr(ATTR_ROW, row)
        except KeyboardInterrupt:
            _tell_safely(study, trial, state=TrialState.FAIL)
            raise
        except Exception as err:  # noqa: BLE001 - one failed point must not stop the others
            log.error("trial %d (%s %s seed %d) failed: %s", trial.number, kind.name, gp.point, gp.seed, _one_line(err))
            try:
                trial.set_user_attr("error", _one_line(err))
            except Exception:  # noqa: BLE001
                pass
            _tell_safely(study, trial, state=TrialState.FAIL)
            result.failed.append(trial.number)
            continue
        if _tell_safely(study, trial, values=value):
            result.ran.append(trial.number)
            log.info("trial %d: %s %s seed %d -> val mAP %.2f", trial.number, kind.name, gp.point, gp.seed, value)
    return result


def _run_trial(kind: StudyKind, base: Params, gp: GridPoint, number: int, ctx: WorkerContext,
               run_variant: Callable[..., Any]) -> tuple[float, dict[str, Any]]:
    p = trial_params(kind, base, gp)
    tags = {"study": ctx.study_name, "trial": str(number), "variant": FULL_VARIANT, "study_point": gp.point,
            "study_kind": kind.name}
    record = run_variant(p, name=f"{kind.name} {gp.point} seed {gp.seed}", tags=tags, parent_run_id=ctx.parent_run_id)
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
        log.warning("trial %d could not be told %s (%s); its retry reuses the finished run",
                    trial.number, kwargs.get("state", "COMPLETE"), _one_line(err))
        return False


def _worker_process(ctx: WorkerContext) -> None:
    """Entry point of a spawned worker process: exit 0 ok, 1 pairs left failed, 2 user error."""
    import sys

    setup_logging()
    if ctx.threads:
        import torch

        torch.set_num_threads(ctx.threads)
    try:
        res = run_worker(ctx)
    except UserError as err:
        print(f"error: worker {ctx.index}: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(1 if res.failed or res.missing else 0)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# results: the table, the figure, the summary
# ---------------------------------------------------------------------------------------------
def collect_rows(kind: StudyKind, params: Params, study: Any) -> list[dict[str, Any]]:
    """One row per grid (point, seed) with a COMPLETE trial, from the study alone (grid order)."""
    from optuna.trial import TrialState

    from core.runs import METRIC_KEYS, SPLITS

    metric_cols = [f"{s}/{k}" for s in SPLITS for k in METRIC_KEYS]
    by_pair: dict[tuple[str, int], Any] = {}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        pair = _pair_of(t)
        if pair in by_pair:
            log.warning("point %s seed %d has two COMPLETE trials (%d, %d); the table keeps %d",
                        pair[0], pair[1], by_pair[pair].number, t.number, by_pair[pair].number)
            continue
        by_pair[pair] = t
    rows = []
    for gp in grid(kind, params):
        t = by_pair.get(gp.pair)
        if t is None:
            continue
        row = t.user_attrs.get(ATTR_ROW, {})
        out: dict[str, Any] = {"study": study.study_name, "trial": t.number, "point": gp.point, "x": gp.x,
                               "seed": gp.seed, "run_id": row.get("run_id"), "run_hash": row.get("run_hash"),
                               "reused": bool(row.get("reused", False))}
        for col in metric_cols:
            v = row.get(col)
            out[col] = float("nan") if v is None else float(v)
        rows.append(out)
    return rows


def csv_columns() -> list[str]:
    from core.runs import METRIC_KEYS, SPLITS

    return ["study", "trial", "point", "x", "seed", "run_id", "run_hash", "reused"] + [f"{s}/{k}" for s in SPLITS for k in METRIC_KEYS]


def summarize_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point (grid order): seeds, mean/min/max of val and test mAP."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = out.setdefault(r["point"], {"point": r["point"], "x": r["x"], "seeds": [], "val": [], "test": []})
        s["seeds"].append(r["seed"])
        s["val"].append(r["val/mAP"])
        s["test"].append(r["test/mAP"])
    res = []
    for s in out.values():
        entry = {"point": s["point"], "x": s["x"], "seeds": s["seeds"]}
        for split in ("val", "test"):
            vals = [v for v in s[split] if not math.isnan(v)]
            entry[f"mean_{split}_mAP"] = sum(vals) / len(vals) if vals else None
            entry[f"min_{split}_mAP"] = min(vals) if vals else None
            entry[f"max_{split}_mAP"] = max(vals) if vals else None
        res.append(entry)
    return res


def plot(kind: StudyKind, rows: list[dict[str, Any]], name: str) -> Any:
    """val and test mAP vs the swept value: mean over seeds (line), each seed (dots), min-max band."""
    import matplotlib
    from matplotlib.figure import Figure

    summary = summarize_points(rows)
    with matplotlib.rc_context({"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10}):
        fig = Figure(figsize=(7.5, 5.2), layout="constrained")
        ax = fig.subplots()
        xs = list(range(len(summary))) if kind.categorical else [s["x"] for s in summary]
        pos = {s["point"]: x for s, x in zip(summary, xs)}
        n_seeds = max((len(s["seeds"]) for s in summary), default=0)
        for split, color, label in (("val", "tab:blue", "validation"), ("test", "tab:orange", "test")):
            mean = [s[f"mean_{split}_mAP"] for s in summary]
            if all(m is None for m in mean):
                continue
            mx = [x for x, m in zip(xs, mean) if m is not None]
            ax.plot(mx, [m for m in mean if m is not None], "-o", color=color, lw=2, ms=6,
                    label=f"{label} mAP (mean of {n_seeds} seeds)" if n_seeds > 1 else f"{label} mAP (1 seed)", zorder=3)
            lo = [s[f"min_{split}_mAP"] for s in summary if s[f"min_{split}_mAP"] is not None]
            hi = [s[f"max_{split}_mAP"] for s in summary if s[f"max_{split}_mAP"] is not None]
            if n_seeds > 1:
                ax.fill_between(mx, lo, hi, color=color, alpha=0.15, lw=0, label=f"{label}: min–max over seeds")
            pts = [(pos[r["point"]], r[f"{split}/mAP"]) for r in rows if not math.isnan(r[f"{split}/mAP"])]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=color, alpha=0.55,
                       edgecolors="none", zorder=2, label=f"{label}: individual seeds" if n_seeds > 1 else None)
        if kind.categorical:
            ax.set_xticks(xs, [s["point"] for s in summary])
        elif xs:
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(kind.x_label)
        ax.set_ylabel("mAP 0.5:0.95 (%)")
        ax.set_title(f"{kind.title}\nstudy {name}")
        ax.grid(True, alpha=0.3)
        if summary:  # below the axes, one column per split: never hides a point
            fig.legend(loc="outside lower center", ncols=2, frameon=False)
        else:
            ax.text(0.5, 0.5, "no completed trials yet", ha="center", va="center", transform=ax.transAxes)
    return fig


def write_outputs(kind: StudyKind, params: Params, study: Any, url: str, *, failed_workers: int = 0) -> dict[str, Any]:
    """<outputs>/studies/<kind>.csv, .png, .svg and .json (atomic); returns the JSON summary."""
    from optuna.trial import TrialState

    rows = collect_rows(kind, params, study)
    out_dir = params.outputs / "studies"
    write_csv(out_dir / f"{kind.name}.csv", rows, csv_columns())
    fig = plot(kind, rows, study.study_name)  # a bare Figure: no pyplot state, nothing to close
    for fmt in ("png", "svg"):
        with atomic_path(out_dir / f"{kind.name}.{fmt}", suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    summary = summarize_points(rows)
    scored = [s for s in summary if s["mean_val_mAP"] is not None]
    best = max(scored, key=lambda s: s["mean_val_mAP"]) if scored else None
    all_pairs = [gp.pair for gp in grid(kind, params)]
    done = {(r["point"], r["seed"]) for r in rows}
    info = {
        "study": study.study_name,
        "kind": kind.name,
        "swept_key": kind.key,
        "objective": "val/mAP (%), maximised",
        "storage": display_url(url),
        "grid": {"points": list(dict.fromkeys(p for p, _ in all_pairs)), "seeds": list(dict.fromkeys(s for _, s in all_pairs)),
                 "size": len(all_pairs)},
        "n_trials": len(trials),
        "n_complete": len(rows),
        "n_pruned_duplicates": sum(s == TrialState.PRUNED for s in states),
        "n_failed": sum(s == TrialState.FAIL for s in states),
        "trained": sum(not r["reused"] for r in rows),
        "reused": sum(bool(r["reused"]) for r in rows),
        "missing": [{"point": p, "seed": s} for p, s in all_pairs if (p, s) not in done],
        "failed_workers": failed_workers,
        "best": None if best is None else {"point": best["point"], "x": best["x"], "seeds": best["seeds"],
                                           "mean_val_mAP": best["mean_val_mAP"], "mean_test_mAP": best["mean_test_mAP"]},
        "points": summary,
        "files": {fmt: str(out_dir / f"{kind.name}.{fmt}") for fmt in ("csv", "png", "svg", "json")},
    }
    write_json(out_dir / f"{kind.name}.json", info)
    return info


def summary_table(info: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [f"{'point':>8}  {'seeds':>5}  {'mean val mAP':>12}  {'mean test mAP':>13}"]
    for s in info["points"]:
        lines.append(f"{s['point']:>8}  {len(s['seeds']):>5}  {f(s['mean_val_mAP']):>12}  {f(s['mean_test_mAP']):>13}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the whole study
# ---------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    study_name: str
    storage: str
    parent_run_id: str | None
    enqueued: int
    info: dict[str, Any]
    ok: bool
    problems: list[str]


def run_study(kind: StudyKind | str, params: Params, *, storage: str | None = None, n_jobs: int | None = None,
              echo: Callable[[str], None] = print) -> StudyResult:
    """Create/resume the study, run it with n_jobs worker processes (1: in this process), write
    the outputs. Safe to run on several machines at once against the same storage."""
    from optuna.trial import TrialState

    from core.train import data_fingerprint

    kind = KINDS[kind] if isinstance(kind, str) else kind
    n_jobs = n_jobs or params.studies.n_jobs
    url = storage_url(params, storage)
    _backend(url)  # a bad URL is a one-line error before any work
    fingerprint = data_fingerprint(params)  # the store missing: core.train's one-line error
    if params.data.val_fraction <= 0:
        raise UserError("data.val_fraction is 0: the studies maximise validation mAP and need a validation split")
    base = base_params(kind, params)
    name = study_name(kind, base, fingerprint)
    study, enqueued = create_study(kind, params, url, name)
    points = grid(kind, params)
    echo(f"study {name} on {display_url(url)}: {kind.key} over {len({gp.point for gp in points})} points x "
         f"{len(params.studies.seeds)} seed(s) = {len(points)} trials ({enqueued} enqueued now), {n_jobs} worker(s)")
    parent = tracking.start_parent_run(base, name=f"study {name}", tags={
        tracking.TAG_PARENT_KEY: f"study:{name}", "study": name, "study_kind": kind.name,
        "swept_key": kind.key, "optuna_storage": display_url(url), "variant": FULL_VARIANT})
    ctx = WorkerContext(kind.name, params, url, name, parent)
    problems: list[str] = []
    failed_workers = 0
    complete = {_pair_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if {gp.pair for gp in points} <= complete:
        echo("every trial is already COMPLETE: nothing to run")
    elif n_jobs <= 1:
        res = run_worker(ctx)
        if res.failed:
            problems.append(f"trials {res.failed} failed")
    else:
        threads = max(1, _cores() // n_jobs)
        mp = multiprocessing.get_context("spawn")
        procs = []
        for i in range(n_jobs):
            wctx = WorkerContext(kind.name, params, url, name, parent, threads=threads, index=i)
            proc = mp.Process(target=_worker_process, args=(wctx,), name=f"{kind.name}-worker-{i}")
            proc.start()
            procs.append(proc)
        try:
            for proc in procs:
                proc.join()
        except BaseException:
            for proc in procs:  # a Ctrl-C reached them too: a moment to mark their trials FAIL
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()  # its trial goes stale and is retried on the next run
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
        log.warning("could not attach the study outputs to MLflow run %s: %s", parent, _one_line(err))
    echo(summary_table(info))
    best = info["best"]
    echo(f"{info['n_complete']}/{info['grid']['size']} trials complete ({info['trained']} trained, {info['reused']} reused)"
         + (f"; best {best['point']} (mean val mAP {best['mean_val_mAP']:.1f})" if best else "")
         + f"; outputs in {params.outputs / 'studies'}")
    return StudyResult(name, display_url(url), parent, enqueued, info, not problems, problems)


def main(kind_name: str, argv: Sequence[str] | None = None) -> int:
    kind = KINDS[kind_name]
    p: argparse.ArgumentParser = parser(f"Optuna grid study: {kind.title} (full model, {kind.key})")
    p.add_argument("--storage", default=None,
                   help="Optuna RDB URL (default: params studies.storage, else sqlite:///<outputs>/optuna.db)")
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
