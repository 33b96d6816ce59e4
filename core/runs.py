"""One tracked, reusable experiment = train (or reuse) + evaluate, as a flat result row.

The ablation suite and both Optuna studies call `run_variant`; because runs are keyed by
config hash, a configuration they share (e.g. the full model at ratio 1:3, lambda 0.8, seed 0)
is trained once and reused everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import tracking
from core.config import Params
from core.errors import UserError
from core.evaluate import evaluate_run
from core.results import RUN_INFO, log_history, mlflow_metrics, read_per_sample, run_dir, run_row
from core.reuse import evaluated, fetch_run
from core.train import train


@dataclass(frozen=True)
class RunRecord:
    run_id: str | None
    run_hash: str
    run_dir: Path
    reused: bool
    metrics: dict[str, dict[str, float]]  # split -> metric -> value (percent)
    history: list[dict[str, float]]

    def row(self) -> dict[str, Any]:
        """The run as one flat row of `core.results.RUN_COLUMNS` (result tables)."""
        return run_row(self.run_id, self.run_hash, self.reused, self.metrics)

    def per_sample(self) -> list[dict[str, Any]]:
        return read_per_sample(self.run_dir / "eval" / "per_sample.csv")


def run_variant(
    params: Params,
    *,
    name: str,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
) -> RunRecord:
    """Train `params` (reused when an identical FINISHED run exists) and evaluate it (cached)."""
    result = train(params, name=name, tags=tags, parent_run_id=parent_run_id, force=force)
    metrics = evaluate_run(params, result.run_dir, result.run_id)
    record = RunRecord(result.run_id, result.run_hash, result.run_dir, result.reused, metrics, result.history)
    if result.reused and parent_run_id and result.run_id:
        log_reference(params, record, name=name, tags=tags or {}, parent_run_id=parent_run_id)
    return record


def log_reference(params: Params, record: RunRecord, *, name: str, tags: dict[str, str], parent_run_id: str) -> None:
    """A reused run belongs to its first parent; under another parent (a study, the suite) it
    appears as a light reference child with the same params and metrics, so every parent lists
    all its rows in `mlflow ui`. It carries no config-hash tag, so reuse never picks it."""
    client = tracking.run_handle(params, record.run_id).client
    if client.get_run(record.run_id).data.tags.get("mlflow.parentRunId") == parent_run_id:
        return
    ref_tags = tags | {"cvls.reuses": record.run_id, "cvls.reused_hash": record.run_hash}
    with tracking.tracked_run(params, name=name, run_hash=None, tags=ref_tags, parent_run_id=parent_run_id) as handle:
        log_history(handle, record.history)
        handle.log_metrics(mlflow_metrics(record.row()))  # NaN (an absent split) is left out


def local_run(params: Params, run_id: str, run_hash: str) -> Path:
    """The run's folder on this machine with its run.json and evaluation, copied from the tracking
    server when the run was trained on another machine (`core.reuse.fetch_run`)."""
    folder = run_dir(params, run_hash)
    if (folder / RUN_INFO).is_file() and evaluated(folder):
        return folder
    if not fetch_run(params, run_id, folder):
        raise UserError(
            f"MLflow run {run_id} ({tracking.tracking_uri(params)}): no run/{RUN_INFO} and eval/ artifacts "
            f"to copy into {folder} (trained elsewhere and not evaluated, or by an older version of the suite)"
        )
    return folder
