"""Optuna storage: URL, cross-process lock, heartbeats, dead-trial recovery, create-once + enqueue-once."""

from __future__ import annotations

import hashlib
import inspect
import logging
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from core import procs, tracking
from core.config import Params
from core.dburl import driver_url
from core.errors import UserError
from core.study.grid import (
    ATTR_CLAIM,
    ATTR_POINT,
    ATTR_SEED,
    LOCK_TIMEOUT_S,
    MAX_RETRY,
    GridPoint,
    StudyKind,
    grid,
    pair_of,
)

log = logging.getLogger("cvls")


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


def backend_of(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(driver_url(url)).get_backend_name()
    except Exception as err:  # noqa: BLE001
        raise UserError(
            f"optuna storage {display_url(url)!r}: not a database URL ({one_line(err)}); "
            "expected e.g. sqlite:////abs/path/optuna.db or postgresql://user@host/db"
        ) from None


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
            raise UserError(f"optuna storage {url}: cannot create {db.parent} ({one_line(err)})") from None
        try:
            with filelock.FileLock(str(db) + ".lock", timeout=timeout_s):
                yield
        except filelock.Timeout:
            raise UserError(f"optuna storage {url}: lock {db}.lock held for over {timeout_s:.0f}s") from None
        return
    backend = backend_of(url)
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
                driver_url(url), poolclass=NullPool, connect_args={"connect_timeout": 15}
            )
        conn = engine.connect()
    except Exception as err:  # noqa: BLE001 - a missing driver, an unreachable server, bad credentials
        raise UserError(f"optuna storage {display_url(url)}: cannot connect ({one_line(err)})") from None
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

    backend = backend_of(url)
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 120}}  # waits on a busy DB instead of failing
    elif backend == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": 15}, "pool_pre_ping": True}
    elif backend in ("mysql", "mariadb"):
        engine_kwargs = {"connect_args": {"connect_timeout": 15}}
    kwargs: dict[str, Any] = {"heartbeat_interval": int(heartbeat_s), "grace_period": 2 * int(heartbeat_s)}
    sig = inspect.signature(optuna.storages.RDBStorage)
    kwargs[
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in sig.parameters
        else "failed_trial_callback"
    ] = _retry_callback()
    last: Exception | None = None
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(driver_url(url), engine_kwargs=engine_kwargs, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to open is the user's URL/server
            last = err
            if not _is_integrity_error(err):
                break
            time.sleep(0.5 * (attempt + 1))  # schema created concurrently elsewhere: try again
    raise UserError(f"optuna storage {display_url(url)}: cannot open ({one_line(last)})") from None


def _is_integrity_error(err: BaseException) -> bool:
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    e: BaseException | None = err
    while e is not None:
        if isinstance(e, (IntegrityError, ProgrammingError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def one_line(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:400]


def _locks(url: str) -> bool:
    """Whether `storage_lock` really serialises this backend."""
    return tracking.sqlite_path(url) is not None or backend_of(url) in ("postgresql", "mysql", "mariadb")


def recover_trials(study: Any, storage: Any, url: str) -> list[int]:
    """Mark dead workers' trials FAIL and re-enqueue them (RetryHeartbeatStaleTrialCallback, max 3
    retries); the numbers of the trials failed. Call under `storage_lock`.

    - claimed by a process of THIS host that no longer runs (the claim's owner, core.procs):
      at once, without waiting for its heartbeat to go stale;
    - heartbeat older than the grace period (a worker on another host): Optuna's fail_stale_trials;
    - RUNNING without this claim's ATTR_CLAIM: its worker died between the pop and its first
      heartbeat, a trial Optuna never sees as stale. Claims are atomic under the lock, so on a
      locked backend such a trial is abandoned at once; elsewhere after the grace period.
    """
    import datetime as dt

    import optuna
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    failed = sorted(before - {t.number for t in running})
    locked = _locks(url)
    grace = dt.timedelta(seconds=2 * storage.get_heartbeat_interval())
    for t in running:
        claim = t.user_attrs.get(ATTR_CLAIM)
        if isinstance(claim, dict) and claim.get("trial") == t.number:
            if procs.owner_gone(claim.get("owner")):
                why = f"its worker {claim['owner']} on this host is gone"
                if _fail_and_retry(study, storage, t.number, why):
                    failed.append(t.number)
            continue
        if not locked and (t.datetime_start is None or dt.datetime.now() - t.datetime_start < grace):
            continue
        if _fail_and_retry(study, storage, t.number, "its worker died before its first heartbeat"):
            failed.append(t.number)
    return failed


def _fail_and_retry(study: Any, storage: Any, number: int, why: str) -> bool:
    """A RUNNING trial whose worker is known dead: FAIL, then Optuna's retry callback re-enqueues
    it; False when it finished meanwhile."""
    import copy

    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    try:
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    log.warning("trial %d: %s; retrying it now", number, why)
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is not None:
        callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    return True


def heartbeat_age_s(storage: Any, trial_id: int) -> float | None:
    """Seconds since the trial's last heartbeat, by the database's clock (as Optuna judges
    staleness); None when unknown (no beat yet, or Optuna's tables changed)."""
    try:
        import sqlalchemy
        from optuna.storages._rdb import models

        session = storage.scoped_session()
        try:
            now = session.execute(sqlalchemy.func.now()).scalar()
            beat = models.TrialHeartbeatModel.where_trial_id(trial_id, session)
        finally:
            session.close()
        if beat is None or now is None:
            return None
        return (now.replace(tzinfo=None) - beat.heartbeat).total_seconds()
    except Exception:  # noqa: BLE001 - Optuna internals: the message then gives the bound alone
        return None


def wait_line(study: Any, storage: Any, trial: Any) -> str:
    """One line for a trial this worker waits on: which, since when, who holds it, how long at most."""
    grace = 2 * storage.get_heartbeat_interval()
    claim = trial.user_attrs.get(ATTR_CLAIM) or {}
    holder = str(claim.get("owner") or claim.get("worker") or "a worker that has not claimed it yet")
    pair = pair_of(trial)
    what = f"trial {trial.number}" + (f" ({pair[0]} seed {pair[1]})" if pair else "")
    since = trial.datetime_start.strftime("%Y-%m-%d %H:%M:%S") if trial.datetime_start else "an unknown time"
    head = f"waiting for {what}, RUNNING since {since} on {holder}"
    if procs.owner_host(holder) == socket.gethostname():
        return f"{head} (alive on this host): until it finishes"
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    age = heartbeat_age_s(storage, trial_id)
    if age is None:
        bound = f"at most {grace} s after its last heartbeat"
    else:
        bound = f"at most {max(0.0, grace - age):.0f} s more (last heartbeat {age:.0f} s ago)"
    return f"{head}: until it finishes there or, if that worker is dead, {bound}; then it is retried here"


def end_stale_runs(params: Params, study_name: str, trials: list[int]) -> None:
    """The MLflow runs that trials failed by `recover_trials` left RUNNING: KILLED. Their worker
    died, possibly on another machine, so nothing else would ever close them. Best effort: the
    study goes on when MLflow cannot be reached (the runs then stay RUNNING)."""
    for number in trials:
        reason = f"stale: trial {number} of study {study_name} lost its worker (no heartbeat); it is retried"
        try:
            ended = tracking.end_running_runs(params, {"study": study_name, "trial": str(number)}, reason)
        except Exception as err:  # noqa: BLE001 - a tracking problem must not stop the recovery
            log.warning("could not mark the MLflow runs of stale trial %d KILLED: %s", number, one_line(err))
            continue
        for run_id in ended:
            log.warning("MLflow run %s of stale trial %d marked KILLED", run_id, number)


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
                stale = recover_trials(study, storage, url)
                enqueued = enqueue_grid(study, kind, grid(kind, params))
            end_stale_runs(params, name, stale)
            return study, enqueued
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001
            if not _is_integrity_error(err) or attempt == 2:
                raise UserError(
                    f"optuna storage {display_url(url)}: cannot create study {name} ({one_line(err)})"
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def enqueue_grid(study: Any, kind: StudyKind, points: list[GridPoint]) -> int:
    """Enqueue each pair that has no WAITING, RUNNING or COMPLETE trial (FAIL ones are retried;
    PRUNED ones are duplicates). Idempotent; call under `storage_lock`."""
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    have = {pair_of(t) for t in study.get_trials(deepcopy=False, states=live)}
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
