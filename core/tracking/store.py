"""Where runs are kept: the tracking URI, a client on it, and the experiment, created once.

- Where: `tracking_uri` (MLFLOW_TRACKING_URI > params.tracking.uri > sqlite:///<outputs>/mlflow.db);
  run artifacts go to <outputs>/mlartifacts/<experiment> (never the current directory).
- Safe start: `init_tracking` creates the DB schema and the experiment once, under a file lock next
  to the SQLite file (`creation_lock`), so parallel workers on a fresh DB never race the schema migration.
- The experiment is tagged mlflow.experimentKind = custom_model_development (what the UI's own
  kind selector writes). MLflow 3.17's UI still opens an experiment on its GenAI overview unless
  the URL asks for the runs table: `ui_link` gives the link with ?workflowType=machine_learning.

Only `MlflowClient(uri)` is used, never the global `mlflow.set_tracking_uri`: MLflow >= 3
implements that by writing MLFLOW_TRACKING_URI, which would then pass for the user's choice.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

from core.config import Params
from core.dburl import driver_url

log = logging.getLogger("cvls")

# the experiment tag MLflow's own kind selector writes: a training experiment, not a GenAI one
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

_LOCK_TIMEOUT_S = 600
_ready: dict[tuple[str, str], str] = {}  # (uri, experiment) -> experiment id, per process
_ready_lock = threading.Lock()


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


def is_remote(uri: str) -> bool:
    """Whether `uri` is a tracking server (which picks its own artifact root)."""
    return uri.split(":", 1)[0] in ("http", "https", "databricks", "databricks-uc", "uc")


@contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Serialise schema/experiment/parent creation across processes when the store is a SQLite file."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    import filelock

    db.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(db) + ".lock", timeout=_LOCK_TIMEOUT_S):
        yield


def client(uri: str) -> Any:
    """An MlflowClient on `uri` (database URIs with the driver the suite installs)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=driver_url(uri))


def init_tracking(params: Params) -> str:
    """Create the schema and the experiment at `tracking_uri(params)` once; the experiment id.

    Safe when several processes call it at once on a fresh SQLite file (a file lock next to the
    DB serialises the migration); cheap on later calls in the same process.
    """
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(params)
    name = params.tracking.experiment
    key = (uri, name)
    if key in _ready:
        return _ready[key]
    with _ready_lock:
        if key in _ready:
            return _ready[key]
        with creation_lock(uri):
            api = client(uri)  # first store access creates/migrates the DB schema
            exp = api.get_experiment_by_name(name)
            if exp is None:
                location = None
                if not is_remote(uri):  # a server picks its own artifact root
                    slug = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "experiment"
                    location = (params.outputs / "mlartifacts" / slug).as_uri()
                try:
                    exp_id = api.create_experiment(name, artifact_location=location)
                except MlflowException:
                    exp = api.get_experiment_by_name(name)  # created concurrently elsewhere
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    log.warning("MLflow experiment %r was deleted; restoring it", name)
                    api.restore_experiment(exp_id)
            if TAG_EXPERIMENT_KIND not in (exp.tags if exp is not None else {}):  # a user's own choice stays
                api.set_experiment_tag(exp_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        _ready[key] = exp_id
    return exp_id


def ui_link(params: Params) -> str:
    """Where to see the experiment's runs table in `mlflow ui` (one line). MLflow 3's UI opens an
    experiment on its GenAI overview unless the URL asks for the machine-learning view."""
    exp_id = init_tracking(params)
    uri = tracking_uri(params)
    page = f"#/experiments/{exp_id}?workflowType=machine_learning"
    if is_remote(uri) and uri.startswith("http"):
        return f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}, then http://127.0.0.1:5000/{page}"
