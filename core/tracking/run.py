"""One tracked run: its start, what it logs, its end, and finding a finished one again.

- What a run records (`tracked_run`): every params key flattened (`core.tracking.names`), the
  provenance tags (`core.tracking.provenance`), its owner, the resolved config as the artifact
  config/params.resolved.yaml, metrics with steps, and its outcome: FINISHED, or FAILED (an
  error) / KILLED (Ctrl-C, SIGTERM) with the one-line error in the tag 'error'.
- Identity: a run carries its `core.identity.config_hash` as a tag; `find_finished_run` looks it
  up so a finished run is not trained twice, `download_artifacts` copies its files.
- A run left open (a parent, `core.tracking.parents`) ends with `end_run` / `run_span`.
- Every run a process opens is recorded until it ends; `end_open_runs` ends what is left when the
  process exits (core.cli.run_main), so a signal that falls between two statements, or an error
  no handler saw, never leaves a run RUNNING.

Runs are driven through `MlflowClient` with explicit run ids (no global active run), so several
runs, threads or processes never interfere; they still show normally in `mlflow ui`.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

import yaml

from core import procs, signals
from core.config import Params
from core.tracking.names import (
    CONFIG_ARTIFACT,
    TAG_CONFIG_HASH,
    TAG_OWNER,
    TAG_PARENT_RUN_ID,
    TAG_REPLACES,
    flat_params,
    mlflow_name,
    one_line,
    quoted,
)
from core.tracking.provenance import base_tags
from core.tracking.stale import end_stale_runs, mark_ended
from core.tracking.store import client, init_tracking, tracking_uri

log = logging.getLogger("cvls")

_open: dict[str, str] = {}  # run id -> tracking URI: the runs this process opened and has not ended


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


def run_handle(params: Params, run_id: str) -> RunHandle:
    """A handle on an existing run (e.g. evaluation logging into a finished training run)."""
    init_tracking(params)
    return RunHandle(client(tracking_uri(params)), run_id)


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
    are marked KILLED first (`core.tracking.stale`). enabled=False yields a no-op handle."""
    if not enabled:
        yield RunHandle()
        return
    from mlflow.entities import Param

    exp_id = init_tracking(params)
    uri = tracking_uri(params)
    api = client(uri)
    all_tags = base_tags(params) | {TAG_OWNER: procs.owner()}
    if run_hash:
        all_tags[TAG_CONFIG_HASH] = run_hash
        replaced = end_stale_runs(api, exp_id, run_hash)
        if replaced:
            all_tags[TAG_REPLACES] = ",".join(replaced)
    if parent_run_id:
        all_tags[TAG_PARENT_RUN_ID] = parent_run_id
    all_tags.update({mlflow_name(k): str(v) for k, v in tags.items()})
    with signals.held():  # created and recorded as open in one step: no signal falls between them
        run_id = api.create_run(exp_id, tags=all_tags, run_name=name).info.run_id
        opened(run_id, uri)
    try:
        # MLflow caps a batch at 100 params/tags; log_batch splits the list into such batches
        api.log_batch(run_id, params=[Param(k, v) for k, v in flat_params(params).items()])
        api.log_text(run_id, yaml.safe_dump(params.to_dict(), sort_keys=False), CONFIG_ARTIFACT)
        yield RunHandle(api, run_id)
    except BaseException as err:
        _end(uri, run_id, err)
        raise
    with signals.held():
        api.set_terminated(run_id, "FINISHED")
        _open.pop(run_id, None)


def opened(run_id: str, uri: str) -> None:
    """Record a run this process opened (call inside `signals.held()`, with its creation)."""
    _open[run_id] = uri


def end_run(params: Params, run_id: str | None, err: BaseException | None = None) -> None:
    """End a run: FINISHED, or KILLED (Ctrl-C / SIGTERM) / FAILED (an error) with tag 'error'.
    Never raises: a tracking problem is logged, and must not hide `err`."""
    if run_id is not None:
        _end(tracking_uri(params), run_id, err)


def open_runs() -> list[str]:
    """The runs this process opened and has not ended."""
    return list(_open)


def end_open_runs(err: BaseException | None, keep: Collection[str] = ()) -> list[str]:
    """End every run this process opened and has not ended, but those in `keep`, as `end_run`
    with `err` (None: the process returned normally, and the run is FAILED as left open); their
    ids. For the exit (core.cli.run_main)."""
    left = [(run_id, uri) for run_id, uri in _open.items() if run_id not in keep]
    for run_id, uri in left:
        log.warning("MLflow run %s was still open when its process ended: ended now", run_id)
        _end(uri, run_id, err or RuntimeError("left open by its process, which returned"))
    return [run_id for run_id, _ in left]


def _end(uri: str, run_id: str, err: BaseException | None) -> None:
    status = "FINISHED" if err is None else "FAILED" if isinstance(err, Exception) else "KILLED"
    try:
        with signals.held():
            api = client(uri)
            if err is None:
                api.set_terminated(run_id, status)
            else:
                mark_ended(api, run_id, one_line(err), status)
            _open.pop(run_id, None)
    except Exception as track_err:  # noqa: BLE001
        log.warning("could not mark MLflow run %s as %s: %s", run_id, status, one_line(track_err))


@contextmanager
def run_span(params: Params, run_id: str | None) -> Iterator[None]:
    """`end_run` of an open run once the block ends (with the block's exception, re-raised)."""
    try:
        yield
    except BaseException as err:
        end_run(params, run_id, err)
        raise
    end_run(params, run_id)


def find_finished_run(params: Params, run_hash: str) -> str | None:
    """The newest FINISHED run in the experiment tagged cvls.config_hash == run_hash, else None."""
    exp_id = init_tracking(params)
    runs = client(tracking_uri(params)).search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_CONFIG_HASH}` = {quoted(run_hash)} and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


def download_artifacts(params: Params, run_id: str, paths: Sequence[str], dest: Path) -> bool:
    """Each artifact path (a file or a folder) of the run copied under `dest` with its relative
    path; False when the run lacks one of them (or the store cannot be read: logged)."""
    from mlflow.exceptions import MlflowException

    api = client(tracking_uri(params))
    try:
        for path in paths:
            parent, _, leaf = path.rpartition("/")
            if leaf not in {a.path.rpartition("/")[2] for a in api.list_artifacts(run_id, parent or None)}:
                return False
            (dest / parent).mkdir(parents=True, exist_ok=True)
            api.download_artifacts(run_id, path, str(dest / parent))
    except (MlflowException, OSError) as err:
        log.warning("could not download the artifacts of MLflow run %s: %s", run_id, one_line(err))
        return False
    return True
