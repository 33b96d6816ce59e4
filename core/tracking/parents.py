"""Parent runs: a suite's or a study's runs nest under one parent in `mlflow ui`.

A parent is RUNNING from `start_parent_run` until its caller has written its table and ends it
(`core.tracking.run.run_span`), so it spans its children. With a parent key, a resumed suite
reopens the parent it started before, which then spans every invocation's children.
"""

from __future__ import annotations

from contextlib import nullcontext

from core import procs, signals
from core.config import Params
from core.tracking.names import TAG_OWNER, TAG_PARENT_KEY, mlflow_name, quoted
from core.tracking.provenance import base_tags
from core.tracking.run import opened
from core.tracking.store import client, creation_lock, init_tracking, tracking_uri


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
    api = client(uri)
    key = tags.get(TAG_PARENT_KEY)
    all_tags = base_tags(params) | {TAG_OWNER: procs.owner()} | {mlflow_name(k): str(v) for k, v in tags.items()}
    # found or created and recorded as open in one step: no signal falls between them
    with creation_lock(uri) if key else nullcontext(), signals.held():
        found = []
        if key:
            found = api.search_runs(
                [exp_id],
                filter_string=f"tags.`{TAG_PARENT_KEY}` = {quoted(key)}",
                max_results=1,
                order_by=["attributes.start_time ASC"],  # oldest: concurrent creators converge
            )
        if not found:
            run_id = api.create_run(exp_id, tags=all_tags, run_name=name).info.run_id
            opened(run_id, uri)
            return run_id
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            api.update_run(run_id, status="RUNNING")
        opened(run_id, uri)
        from mlflow.entities import RunTag

        api.log_batch(run_id, tags=[RunTag(TAG_OWNER, all_tags[TAG_OWNER])])
    return run_id
