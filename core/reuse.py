"""Finding a run instead of training it: a FINISHED run of the same config hash, trained on this
machine or on another one that shares the tracking server.

A run trained elsewhere (an MLflow server shared by several machines) and evaluated there has its
`run.json` and `eval/` artifacts copied into this machine's `outputs/runs/<hash>/` (`fetch_run`);
its weights stay where they were trained, and its evaluation is read from the copied files
rather than recomputed. Local files are reused only while the tracking store holds their run
FINISHED (a store that does not know the run, e.g. a fresh MLflow DB, trains it again).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from core import tracking
from core.config import Params
from core.io import publish_dir
from core.results import EVAL_FILES, RUN_INFO

log = logging.getLogger("cvls")


def finished_run(params: Params, run_hash: str, run_dir: Path, *, tracking_enabled: bool, fetch: bool) -> dict | None:
    """The run.json of the FINISHED run of `run_hash` in `run_dir`, copied from the tracking server
    first when `fetch` and it is not here yet; None when there is none to reuse (train it)."""
    info_path = run_dir / RUN_INFO
    if tracking_enabled and fetch and not info_path.is_file():
        remote = tracking.find_finished_run(params, run_hash)
        if remote is not None and fetch_run(params, remote, run_dir):
            log.info(
                "run %s (config %s) was trained on another machine: its results copied from tracking", remote, run_hash
            )
    if not info_path.is_file() or not ((run_dir / "model.pt").is_file() or evaluated(run_dir)):
        return None
    info: dict[str, Any] = json.loads(info_path.read_text())
    if tracking_enabled and tracking.find_finished_run(params, run_hash) != info.get("run_id"):
        return None
    log.info("reusing finished run %s (config %s)", info.get("run_id"), run_hash)
    return info


def evaluated(run_dir: Path) -> bool:
    """Whether the run's evaluation (core.evaluate) is complete in its folder."""
    return all((run_dir / "eval" / name).is_file() for name in EVAL_FILES)


def fetch_run(params: Params, run_id: str, run_dir: Path) -> bool:
    """Copy a FINISHED, evaluated MLflow run's run.json and eval/ artifacts into `run_dir`, the
    folder this machine keeps for its config; run.json last, so its presence means the rest is
    there. False (nothing written) when the run has not all of them: not evaluated yet, or logged
    before run.json became an artifact; the caller then trains it here."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=run_dir.parent) as tmp:
        staged = Path(tmp)
        if not tracking.download_artifacts(params, run_id, [f"run/{RUN_INFO}", "eval"], staged):
            return False
        if not evaluated(staged):
            return False
        run_dir.mkdir(exist_ok=True)
        publish_dir(staged / "eval", run_dir / "eval")
        os.replace(staged / "run" / RUN_INFO, run_dir / RUN_INFO)
    return True
