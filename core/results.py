"""What a run leaves behind, in one place: its folder, the data it saw, and its result rows.

Every stage that writes or reads a result uses these names, so a column, a split or a run
folder is defined once:
- `run_dir`: <outputs>/runs/<hash>/ (training runs, the pretext's as pretext-<hash>);
- `data_fingerprint`: the processed store's identity (part of every run's identity);
- the schemas: `METRIC_KEYS` x `SPLITS` = `METRIC_COLUMNS` ('<split>/<metric>'), the columns of
  one evaluated run (`RUN_COLUMNS`), of the ablation's and the studies' tables, of per-sample
  scores and of training histories;
- the MLflow names of those metrics (`mlflow_metrics`: '@' and '&' are not allowed there,
  'P@0.5' -> 'P_at_0.5', 'J&F' -> 'J_and_F') and the logging of a training history (`log_history`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Protocol

from core.config import Params
from core.errors import UserError
from core.vos_metrics import JF_KEYS

METRIC_KEYS = ("P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mAP", "overall_iou", "mean_iou", *JF_KEYS)
SPLITS = ("val", "test", "jhmdb", "test_shuffled")
METRIC_COLUMNS = tuple(f"{s}/{k}" for s in SPLITS for k in METRIC_KEYS)
RUN_COLUMNS = ("run_id", "run_hash", "reused", *METRIC_COLUMNS)  # one evaluated run, flat
ABLATION_COLUMNS = ("variant", "seed", "ccl", "rhic", "lcf", *RUN_COLUMNS)  # ablation/results.csv
STUDY_COLUMNS = ("study", "trial", "point", "x", "seed", *RUN_COLUMNS)  # studies/<kind>.csv
# the strata of a scored pair (core.strata): distractor 1/0, attribute type; empty = unknown
STRATA_COLUMNS = ("distractor", "attribute")
# one scored (frame, sentence) pair of an evaluation: <run>/eval/per_sample.csv
# (f: the pair's DAVIS boundary F in [0, 1] on ytvos / mevis, empty on A2D; J is the iou column)
# other_iou: the prediction's best IoU with another actor of the frame (grounding; empty: none there)
SAMPLE_COLUMNS = (
    "split",
    "pair",
    "sample",
    "video",
    "frame",
    "inter",
    "union",
    "iou",
    "f",
    "other_iou",
    *STRATA_COLUMNS,
    "text",
)
# the ablation's per-sample table (the splits the report's paired tests use), without the text
ABLATION_SAMPLE_SPLITS = ("val", "test", "jhmdb", "test_shuffled")
ABLATION_SAMPLE_COLUMNS = ("variant", "seed", *(c for c in SAMPLE_COLUMNS if c != "text"))
HISTORY_INDEX = "epoch"  # a history row's step; every other key of the row is a metric
# what a finished run's folder holds besides its weights, each file also an artifact of its MLflow
# run under the same relative path, so another machine can have them from the tracking server
EVAL_FILES = ("metrics.json", "per_sample.csv", "bounds.json", "strata.json", "qualitative.png")  # <run>/eval/
# the evaluate stage's per-pair bounds of the test split (core.bounds.pair_bounds), beside its copies
# of the main run's eval files: what gives the report's language-blind reference its interval
BOUND_PAIRS = "bound_pairs.csv"
BOUND_PAIR_COLUMNS = ("split", "pair", "sample", "video", "bound", "inter", "union", "iou", "map", "f")
RUN_INFO = "run.json"  # <run>/run.json (run id, history); artifact run/run.json


class MetricLogger(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


def run_dir(params: Params, run_hash: str) -> Path:
    """The folder of the run with config hash `run_hash`."""
    return params.outputs / "runs" / str(run_hash)


def data_fingerprint(params: Params) -> str:
    """The processed store's fingerprint (written by extraction)."""
    summary = params.processed / "summary.json"
    if not summary.is_file():
        raise UserError(f"{summary}: processed store not found; run extraction first (dvc repro extract)")
    return json.loads(summary.read_text())["fingerprint"]


def run_row(run_id: str | None, run_hash: str, reused: bool, metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """An evaluated run as one flat row of `RUN_COLUMNS` (NaN where a split is absent)."""
    row: dict[str, Any] = {"run_id": run_id, "run_hash": run_hash, "reused": reused}
    for split in SPLITS:
        for k in METRIC_KEYS:
            row[f"{split}/{k}"] = metrics.get(split, {}).get(k, float("nan"))
    return row


def mlflow_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a flat row under names MLflow accepts ('test/P@0.5' -> 'test/P_at_0.5',
    'test/J&F' -> 'test/J_and_F', 'strata/test/attribute=colour/mAP' -> 'strata/test/attribute_colour/mAP')."""
    return {
        k.replace("@", "_at_").replace("&", "_and_").replace("=", "_"): float(v)
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """split -> metric -> value as '<split>/<metric>' -> value."""
    return {f"{split}/{k}": v for split, m in metrics.items() for k, v in m.items()}


def flat_bounds(bounds: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """split -> bound -> metric -> value (eval/bounds.json) as 'bound/<bound>/<split>/<metric>' -> value."""
    return {
        f"bound/{name}/{split}/{k}": v for split, b in bounds.items() for name, m in b.items() for k, v in m.items()
    }


def flat_strata(strata: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """split -> stratum -> metric -> value (eval/strata.json) as 'strata/<split>/<stratum>/<metric>' -> value."""
    return {
        f"strata/{split}/{name}/{k}": v for split, st in strata.items() for name, m in st.items() for k, v in m.items()
    }


def log_history(handle: MetricLogger, rows: list[dict[str, float]]) -> None:
    """Per-epoch training rows as MLflow metrics, each at its epoch as the step."""
    for row in rows:
        handle.log_metrics({k: v for k, v in row.items() if k != HISTORY_INDEX}, step=int(row[HISTORY_INDEX]))


def read_per_sample(path: Path) -> list[dict[str, Any]]:
    """A per_sample.csv written by evaluation, with its integer and float columns typed and the
    strata's empty cells (unknown) as None."""
    with open(path, newline="") as f:
        return [
            {
                **r,
                "pair": int(r["pair"]),
                "inter": int(r["inter"]),
                "union": int(r["union"]),
                "iou": float(r["iou"]),
                "f": float(r["f"]) if r.get("f") else None,
                "other_iou": float(r["other_iou"]) if r.get("other_iou") else None,
                "distractor": int(r["distractor"]) if r.get("distractor") else None,
                "attribute": r.get("attribute") or None,
            }
            for r in csv.DictReader(f)
        ]
