"""MLflow tracking for every stage: one experiment, one run per trained model, nested under a suite.

- Where: `tracking_uri` (MLFLOW_TRACKING_URI > params.tracking.uri > sqlite:///<outputs>/mlflow.db);
  run artifacts go to <outputs>/mlartifacts/<experiment> (never the current directory).
- Safe start: `init_tracking` creates the DB schema and the experiment once, under a file lock next
  to the SQLite file, so parallel workers on a fresh DB never race the schema migration.
- What a run records (`tracked_run`): every params key flattened ('loss.lcf', identical names in
  every run, so the MLflow compare view lines them up), the tags below, the resolved config as
  the artifact config/params.resolved.yaml, metrics with steps, and its outcome: FINISHED, or
  FAILED with the one-line error in the tag 'error'.
- Identity: `config_hash`, the run's identity (`core.identity`: what decides a trained model, plus
  its fingerprint); `find_finished_run` looks it up so a finished run is not trained twice.
- No run is left RUNNING by a dead process: Ctrl-C and SIGTERM (core.cli) end it KILLED; a run
  SIGKILLed is tagged with its owner (host, pid, process start: core.procs), so the next run of
  the same config on that host marks it KILLED and names it in 'cvls.replaces'; the study
  machinery ends it (`end_running_runs`) once its trial is known dead.
- Parents (`start_parent_run`): a suite's or a study's runs nest under one parent, RUNNING until
  its table is written (`run_span`), so it spans its children; a resumed suite reopens it.
- The experiment is tagged mlflow.experimentKind = custom_model_development (what the UI's own
  kind selector writes). MLflow 3.17's UI still opens an experiment on its GenAI overview unless
  the URL asks for the runs table: `ui_link` gives the link with ?workflowType=machine_learning.

Runs are driven through `MlflowClient` with explicit run ids (no global active run), so several
runs, threads or processes never interfere; they still show normally in `mlflow ui`.
MLflow only accepts names made of alphanumerics, '_', '-', '.', ' ', ':' and '/', so other
characters in params/metric/tag names are replaced by '_' (variant 'CCL+RHIC' -> 'CCL_RHIC').
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import unquote

import yaml

from core import procs
from core.config import Params
from core.dburl import driver_url
from core.identity import RUN, identity

log = logging.getLogger("cvls")

SUITE = "cvls"
TAG_SUITE = "cvls.suite"
TAG_GIT_COMMIT = "cvls.git_commit"
TAG_DATA_SOURCE = "cvls.data_source"
TAG_CONFIG_HASH = "cvls.config_hash"
TAG_PROFILES = "cvls.profiles"  # the profile files layered over params.yaml (their values are the params)
TAG_PARENT_KEY = "cvls.parent_key"
TAG_ERROR = "error"
TAG_OWNER = "cvls.owner"  # host:pid:process-start of the process that created the run
TAG_REPLACES = "cvls.replaces"  # the stale RUNNING runs of the same config this run marked KILLED
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # what the MLflow UI nests runs by
# the experiment tag MLflow's own kind selector writes: a training experiment, not a GenAI one
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
TAG_ENV = "cvls.env."  # + torch, torchvision, cpu, isa, threads, precision[, gpu] (core.runtime.environment)
CONFIG_ARTIFACT = "config/params.resolved.yaml"

_LOCK_TIMEOUT_S = 600
_ready: dict[tuple[str, str], str] = {}  # (uri, experiment) -> experiment id, per process
_ready_lock = threading.Lock()
_BAD_NAME_CHARS = re.compile(r"[^\w./\- :]")


# ---------------------------------------------------------------------------------------------
# where, and once-only setup
# ---------------------------------------------------------------------------------------------
def tracking_uri(params: Params) -> str:
    """MLFLOW_TRACKING_URI env var > params.tracking.uri > sqlite:///<outputs>/mlflow.db."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    uri = params.tracking.uri
    if uri:
        # a relative sqlite path is relative to the project root, like every path in params
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            rel = unquote(uri[len("sqlite:///") :])
            if rel and rel != ":memory:":
                return f"sqlite:///{params.resolve(rel)}"
        return uri
    return f"sqlite:///{params.outputs / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The DB file of a sqlite:/// URI (None for other schemes and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///") :]).split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _is_remote(uri: str) -> bool:
    return uri.split(":", 1)[0] in ("http", "https", "databricks", "databricks-uc", "uc")


@contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """Serialise schema/experiment creation across processes when the store is a SQLite file."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    import filelock

    db.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(db) + ".lock", timeout=_LOCK_TIMEOUT_S):
        yield


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=driver_url(uri))


def init_tracking(params: Params) -> str:
    """Create the schema and the experiment at `tracking_uri(params)` once; the experiment id.

    Safe when several processes call it at once on a fresh SQLite file (a file lock next to the
    DB serialises the migration); cheap on later calls in the same process.
    """
    from mlflow.exceptions import MlflowException

    # Only MlflowClient(uri) is used, never the global mlflow.set_tracking_uri: MLflow >= 3
    # implements that by writing MLFLOW_TRACKING_URI, which would then pass for the user's choice.
    uri = tracking_uri(params)
    name = params.tracking.experiment
    key = (uri, name)
    if key in _ready:
        return _ready[key]
    with _ready_lock:
        if key in _ready:
            return _ready[key]
        with _creation_lock(uri):
            client = _client(uri)  # first store access creates/migrates the DB schema
            exp = client.get_experiment_by_name(name)
            if exp is None:
                location = None
                if not _is_remote(uri):  # a server picks its own artifact root
                    slug = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "experiment"
                    location = (params.outputs / "mlartifacts" / slug).as_uri()
                try:
                    exp_id = client.create_experiment(name, artifact_location=location)
                except MlflowException:
                    exp = client.get_experiment_by_name(name)  # created concurrently elsewhere
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    log.warning("MLflow experiment %r was deleted; restoring it", name)
                    client.restore_experiment(exp_id)
            if TAG_EXPERIMENT_KIND not in (exp.tags if exp is not None else {}):  # a user's own choice stays
                client.set_experiment_tag(exp_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        _ready[key] = exp_id
    return exp_id


# ---------------------------------------------------------------------------------------------
# identity and provenance
# ---------------------------------------------------------------------------------------------
def config_hash(params: Params, fingerprint: str) -> str:
    """A run's identity: `core.identity.RUN`'s keys (no operational one) + its fingerprint
    (`core.train.run_fingerprint`: the data and the start weights)."""
    return identity(params, RUN, extra={"data_fingerprint": fingerprint})


@functools.lru_cache(maxsize=16)
def git_commit(root: Path) -> str:
    """`git rev-parse HEAD` in `root`; 'unknown' when it is not a git checkout (or git is absent)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def mlflow_name(key: str) -> str:
    """A params/metric/tag name MLflow accepts: other characters become '_' ('CCL+RHIC' -> 'CCL_RHIC')."""
    return _BAD_NAME_CHARS.sub("_", key)


def _param_value(v: Any) -> str:
    # YAML-readable, so a logged value can be pasted back as `--set key=value`
    return v if isinstance(v, str) else json.dumps(v)


def _flat_params(params: Params) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.flat().items():
        name = mlflow_name(key)
        if name in out:  # two keys that differ only in forbidden characters
            name = f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:6]}"
        out[name] = _param_value(value)
    return out


def _quoted(value: str) -> str:
    """A value for an MLflow filter string (which has no escape for quotes)."""
    if "'" in value:
        raise ValueError(f"cannot search MLflow for a value containing a quote: {value!r}")
    return f"'{value}'"


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
def find_finished_run(params: Params, run_hash: str) -> str | None:
    """The newest FINISHED run in the experiment tagged cvls.config_hash == run_hash, else None."""
    exp_id = init_tracking(params)
    runs = _client(tracking_uri(params)).search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_CONFIG_HASH}` = {_quoted(run_hash)} and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


def download_artifacts(params: Params, run_id: str, paths: Sequence[str], dest: Path) -> bool:
    """Each artifact path (a file or a folder) of the run copied under `dest` with its relative
    path; False when the run lacks one of them (or the store cannot be read: logged)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri(params))
    try:
        for path in paths:
            parent, _, leaf = path.rpartition("/")
            if leaf not in {a.path.rpartition("/")[2] for a in client.list_artifacts(run_id, parent or None)}:
                return False
            (dest / parent).mkdir(parents=True, exist_ok=True)
            client.download_artifacts(run_id, path, str(dest / parent))
    except (MlflowException, OSError) as err:
        log.warning("could not download the artifacts of MLflow run %s: %s", run_id, _one_line(err))
        return False
    return True


class RunHandle:
    """Logging into one run by explicit id; every method is a no-op when run_id is None."""

    def __init__(self, client: Any = None, run_id: str | None = None) -> None:
        self._client = client
        self.run_id = run_id

    @property
    def client(self) -> Any:
        """The MlflowClient behind this handle (None when tracking is disabled)."""
        return self._client

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """One batched call for the whole dict (no per-metric round trips)."""
        if self.run_id is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(mlflow_name(k), float(v), now, step or 0) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file, or a folder with its contents, under `artifact_path` in the run."""
        if self.run_id is None:
            return
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_figure(self, fig: Any, name: str) -> None:
        """A matplotlib figure as an image artifact ('name' gets '.png' when it has no extension)."""
        if self.run_id is None:
            return
        if not Path(name).suffix:
            name += ".png"
        self._client.log_figure(self.run_id, fig, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.run_id is None or not tags:
            return
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(mlflow_name(k), str(v)) for k, v in tags.items()])


def _base_tags(params: Params) -> dict[str, str]:
    commit = git_commit(params.root)
    return {
        TAG_SUITE: SUITE,
        TAG_PROFILES: " ".join(params.profiles) or "none",
        TAG_GIT_COMMIT: commit,
        TAG_DATA_SOURCE: params.data.source,
        # the standard MLflow tags, so the UI shows user, source and commit as for mlflow.start_run
        "mlflow.user": getpass.getuser(),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": sys.argv[0] or "python",
        "mlflow.source.git.commit": commit,
    }


def env_tags(env: dict[str, str]) -> dict[str, str]:
    """A training run's environment (core.runtime.environment) as its MLflow tags."""
    return {TAG_ENV + k: v for k, v in env.items()}


def end_running_runs(params: Params, tags: dict[str, str], reason: str) -> list[str]:
    """Mark KILLED, with tag 'error' = reason, every RUNNING run of the experiment that carries all
    `tags` (e.g. a stale study trial's runs); their ids."""
    exp_id = init_tracking(params)
    client = _client(tracking_uri(params))
    where = " and ".join(f"tags.`{mlflow_name(k)}` = {_quoted(str(v))}" for k, v in tags.items())
    found = client.search_runs([exp_id], filter_string=f"{where} and attributes.status = 'RUNNING'", max_results=100)
    for run in found:
        _kill(client, run.info.run_id, reason)
    return [run.info.run_id for run in found]


def _kill(client: Any, run_id: str, reason: str, status: str = "KILLED") -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(TAG_ERROR, reason[:1000])])
    client.set_terminated(run_id, status)


def _end_stale_runs(client: Any, exp_id: str, run_hash: str) -> list[str]:
    """RUNNING runs of this config whose owner process on this host is gone -> KILLED; their ids."""
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_CONFIG_HASH}` = {_quoted(run_hash)} and attributes.status = 'RUNNING'",
        max_results=100,
    )
    stale = [r for r in found if procs.owner_gone(r.data.tags.get(TAG_OWNER))]
    for run in stale:
        owner = run.data.tags.get(TAG_OWNER)
        log.warning(
            "MLflow run %s (config %s) was left RUNNING by %s, which is gone: KILLED", run.info.run_id, run_hash, owner
        )
        _kill(client, run.info.run_id, f"stale: its process {owner} ended without closing the run")
    return [r.info.run_id for r in stale]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:1000]


@contextmanager
def tracked_run(
    params: Params,
    *,
    name: str,
    run_hash: str | None,
    tags: dict[str, str],
    parent_run_id: str | None = None,
    enabled: bool = True,
) -> Iterator[RunHandle]:
    """An MLflow run around the block: params, tags and the config snapshot logged at the start;
    FINISHED on success; FAILED (KILLED for Ctrl-C / SIGTERM) with tag 'error' on an exception,
    re-raised. With a run_hash, RUNNING runs of that config left by dead processes on this host
    are marked KILLED first (see `_end_stale_runs`). enabled=False yields a no-op handle."""
    if not enabled:
        yield RunHandle()
        return
    from mlflow.entities import Param, RunStatus, RunTag

    exp_id = init_tracking(params)
    client = _client(tracking_uri(params))
    all_tags = _base_tags(params) | {TAG_OWNER: procs.owner()}
    if run_hash:
        all_tags[TAG_CONFIG_HASH] = run_hash
        replaced = _end_stale_runs(client, exp_id, run_hash)
        if replaced:
            all_tags[TAG_REPLACES] = ",".join(replaced)
    if parent_run_id:
        all_tags[TAG_PARENT_RUN_ID] = parent_run_id
    all_tags.update({mlflow_name(k): str(v) for k, v in tags.items()})
    run = client.create_run(exp_id, tags=all_tags, run_name=name)
    run_id = run.info.run_id
    try:
        # MLflow caps a batch at 100 params/tags; log_batch splits the list into such batches
        client.log_batch(run_id, params=[Param(k, v) for k, v in _flat_params(params).items()])
        client.log_text(run_id, yaml.safe_dump(params.to_dict(), sort_keys=False), CONFIG_ARTIFACT)
        yield RunHandle(client, run_id)
    except BaseException as err:
        status = RunStatus.to_string(RunStatus.FAILED if isinstance(err, Exception) else RunStatus.KILLED)
        try:  # never let a tracking problem hide the real error
            client.log_batch(run_id, tags=[RunTag(TAG_ERROR, _one_line(err))])
            client.set_terminated(run_id, status)
        except Exception as track_err:  # noqa: BLE001
            log.warning("could not mark MLflow run %s as %s: %s", run_id, status, track_err)
        raise
    client.set_terminated(run_id, "FINISHED")


def start_parent_run(params: Params, *, name: str, tags: dict[str, str]) -> str:
    """A parent run grouping a suite/study's runs, RUNNING from here; its id. The caller ends it
    once its table is written (`run_span`), so the parent spans its children in `mlflow ui`.

    With tags['cvls.parent_key'], an existing run with that key is reopened (find-or-create,
    serialised like `init_tracking` on SQLite), so a resumed suite nests its new runs under the
    same parent, which then spans every invocation's children: from its first start to the end of
    the last invocation. It carries the owner tag of the process that last opened it.
    """
    exp_id = init_tracking(params)
    uri = tracking_uri(params)
    client = _client(uri)
    key = tags.get(TAG_PARENT_KEY)
    all_tags = _base_tags(params) | {TAG_OWNER: procs.owner()} | {mlflow_name(k): str(v) for k, v in tags.items()}
    with _creation_lock(uri) if key else nullcontext():
        found = []
        if key:
            found = client.search_runs(
                [exp_id],
                filter_string=f"tags.`{TAG_PARENT_KEY}` = {_quoted(key)}",
                max_results=1,
                order_by=["attributes.start_time ASC"],  # oldest: concurrent creators converge
            )
        if not found:
            return client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        from mlflow.entities import RunTag

        client.log_batch(run_id, tags=[RunTag(TAG_OWNER, all_tags[TAG_OWNER])])
    return run_id


def end_run(params: Params, run_id: str | None, err: BaseException | None = None) -> None:
    """End a run: FINISHED, or KILLED (Ctrl-C / SIGTERM) / FAILED (an error) with tag 'error'.
    Never raises: a tracking problem is logged, and must not hide `err`."""
    if run_id is None:
        return
    status = "FINISHED" if err is None else "FAILED" if isinstance(err, Exception) else "KILLED"
    try:
        client = _client(tracking_uri(params))
        if err is None:
            client.set_terminated(run_id, status)
        else:
            _kill(client, run_id, _one_line(err), status)
    except Exception as track_err:  # noqa: BLE001
        log.warning("could not mark MLflow run %s as %s: %s", run_id, status, _one_line(track_err))


@contextmanager
def run_span(params: Params, run_id: str | None) -> Iterator[None]:
    """`end_run` of an open run once the block ends (with the block's exception, re-raised)."""
    try:
        yield
    except BaseException as err:
        end_run(params, run_id, err)
        raise
    end_run(params, run_id)


def ui_link(params: Params) -> str:
    """Where to see the experiment's runs table in `mlflow ui` (one line). MLflow 3's UI opens an
    experiment on its GenAI overview unless the URL asks for the machine-learning view."""
    exp_id = init_tracking(params)
    uri = tracking_uri(params)
    page = f"#/experiments/{exp_id}?workflowType=machine_learning"
    if _is_remote(uri) and uri.startswith("http"):
        return f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}, then http://127.0.0.1:5000/{page}"


def run_handle(params: Params, run_id: str) -> RunHandle:
    """A handle on an existing run (e.g. evaluation logging into a finished training run)."""
    init_tracking(params)
    return RunHandle(_client(tracking_uri(params)), run_id)
