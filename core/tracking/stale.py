"""Ending the runs their process left RUNNING: no run stays RUNNING after its process died.

Ctrl-C and SIGTERM end a run themselves (core.cli: KILLED). A SIGKILLed process cannot, so:
- every run is tagged with its owner (host, pid, process start: `core.procs.owner`), and the next
  run of the same config on that host marks the old one KILLED when its owner is gone
  (`end_stale_runs`, called by `core.tracking.run.tracked_run`, which names them in 'cvls.replaces');
- the study machinery ends a dead trial's runs by their tags once the trial is known dead
  (`end_running_runs`): their owner may have been on another host.
"""

from __future__ import annotations

import logging
from typing import Any

from core import procs
from core.config import Params
from core.tracking.names import TAG_CONFIG_HASH, TAG_ERROR, TAG_OWNER, mlflow_name, quoted
from core.tracking.store import client, init_tracking, tracking_uri

log = logging.getLogger("cvls")


def mark_ended(api: Any, run_id: str, reason: str, status: str = "KILLED") -> None:
    """End a run as `status` with tag 'error' = reason."""
    from mlflow.entities import RunTag

    api.log_batch(run_id, tags=[RunTag(TAG_ERROR, reason[:1000])])
    api.set_terminated(run_id, status)


def end_running_runs(params: Params, tags: dict[str, str], reason: str) -> list[str]:
    """Mark KILLED, with tag 'error' = reason, every RUNNING run of the experiment that carries all
    `tags` (e.g. a stale study trial's runs); their ids."""
    exp_id = init_tracking(params)
    api = client(tracking_uri(params))
    where = " and ".join(f"tags.`{mlflow_name(k)}` = {quoted(str(v))}" for k, v in tags.items())
    found = api.search_runs([exp_id], filter_string=f"{where} and attributes.status = 'RUNNING'", max_results=100)
    for run in found:
        mark_ended(api, run.info.run_id, reason)
    return [run.info.run_id for run in found]


def end_stale_runs(api: Any, exp_id: str, run_hash: str) -> list[str]:
    """RUNNING runs of this config whose owner process on this host is gone -> KILLED; their ids."""
    found = api.search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_CONFIG_HASH}` = {quoted(run_hash)} and attributes.status = 'RUNNING'",
        max_results=100,
    )
    stale = [r for r in found if procs.owner_gone(r.data.tags.get(TAG_OWNER))]
    for run in stale:
        owner = run.data.tags.get(TAG_OWNER)
        log.warning(
            "MLflow run %s (config %s) was left RUNNING by %s, which is gone: KILLED", run.info.run_id, run_hash, owner
        )
        mark_ended(api, run.info.run_id, f"stale: its process {owner} ended without closing the run")
    return [r.info.run_id for r in stale]
