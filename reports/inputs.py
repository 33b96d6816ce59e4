"""Everything the report reads: the result tables and summaries other stages wrote under outputs/.

The report reads files only (never the model): a missing or malformed input is a one-line
`UserError` naming the file and the stage that writes it. What came later is optional, so
older outputs still build a report whose pages say what is missing: the strata columns of the
per-sample table, and the runs' own <run>/eval/bounds.json and per_sample.csv (the studies').
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import Params
from core.errors import UserError
from core.metrics import sample_map
from core.results import (
    ABLATION_COLUMNS,
    ABLATION_SAMPLE_COLUMNS,
    BOUND_PAIR_COLUMNS,
    BOUND_PAIRS,
    HISTORY_INDEX,
    METRIC_COLUMNS,
    STRATA_COLUMNS,
    STUDY_COLUMNS,
    read_per_sample,
    run_dir,
)

# file (relative to outputs) -> the pipeline stage that writes it
STAGES = {
    "processed/summary.json": "extract",
    "raw/synthetic_summary.json": "generate",
    "eval/metrics.json": "evaluate",
    "train/run.json": "train",
    "ablation/results.csv": "ablate",
    "ablation/per_sample.csv": "ablate",
    "ablation/histories.csv": "ablate",
    "studies/rhic_ratio.csv": "study_rhic",
    "studies/lambda_sensitivity.csv": "study_lambda",
}
# the columns the report needs (the schemas are core.results'); a metric column of an absent split
# may be missing and reads as NaN; the strata columns, f and other_iou (newer than the table) are missing in older ones
OPTIONAL_COLUMNS = (*METRIC_COLUMNS, *STRATA_COLUMNS, "f", "other_iou")
REQUIRED_COLUMNS = {
    rel: tuple(c for c in cols if c not in OPTIONAL_COLUMNS)
    for rel, cols in {
        "ablation/results.csv": ABLATION_COLUMNS,
        "ablation/per_sample.csv": ABLATION_SAMPLE_COLUMNS,
        "ablation/histories.csv": ("variant", "seed", HISTORY_INDEX, "train_loss", "val_loss"),
        "studies/rhic_ratio.csv": STUDY_COLUMNS,
        "studies/lambda_sensitivity.csv": STUDY_COLUMNS,
    }.items()
}


@dataclass(frozen=True)
class ReportInputs:
    processed: dict[str, Any]  # processed/summary.json
    synthetic: dict[str, Any] | None  # raw/synthetic_summary.json (synthetic source only)
    main_metrics: dict[str, dict[str, float]]  # eval/metrics.json: split -> metric -> %
    main_run: dict[str, Any]  # <run_dir>/run.json of the main run (pretrained, history)
    results: pd.DataFrame  # ablation/results.csv, one row per (variant, seed)
    per_sample: pd.DataFrame  # ablation/per_sample.csv, with `map` and `jf` (with_sample_map)
    histories: pd.DataFrame  # ablation/histories.csv
    rhic: pd.DataFrame  # studies/rhic_ratio.csv
    lam: pd.DataFrame  # studies/lambda_sensitivity.csv
    study_samples: dict[str, pd.DataFrame]  # run_hash -> <run>/eval/per_sample.csv of the study runs that have one
    bounds: dict[str, Any] | None  # <run>/eval/bounds.json of the Table-3 runs (None: none has one)
    # sensitivity/results.csv and its runs' per-sample tables (ablations/sensitivity.py; None: not run)
    sensitivity: tuple[pd.DataFrame, dict[str, pd.DataFrame]] | None = None
    environments: tuple[dict[str, str], ...] = ()  # each Table-3 and study run's run.json "environment"
    bound_pairs: pd.DataFrame | None = None  # eval/bound_pairs.csv (None: evaluated before it existed)
    calibration: pd.DataFrame | None = None  # calibration/per_sample.csv (ablations/calibration.py; None: not run)

    @property
    def fingerprint(self) -> str:
        return str(self.processed.get("fingerprint", "unknown"))

    @property
    def variants(self) -> list[str]:
        """Variants in the order of the result table (params.ablation.variants order)."""
        return list(dict.fromkeys(self.results["variant"]))


def _require(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise UserError(
            f"{path}: missing input of the report (written by the '{stage}' stage; run `dvc repro {stage}`)"
        )
    return path


def _rel(params: Params, rel: str) -> Path:
    return _require(params.outputs / rel, STAGES[rel])


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not readable JSON ({err})") from None


def read_table(params: Params, rel: str) -> pd.DataFrame:
    path = _rel(params, rel)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' parser errors are ValueErrors
        raise UserError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from None
    missing = [c for c in REQUIRED_COLUMNS.get(rel, ()) if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise UserError(f"{path}: no rows")
    for col in ("ccl", "rhic", "lcf", "reused"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
    if rel != "ablation/per_sample.csv" and rel != "ablation/histories.csv":
        df = df.reindex(columns=list(dict.fromkeys([*df.columns, *METRIC_COLUMNS])))  # absent split -> NaN
    return df


def main_run_info(params: Params) -> dict[str, Any]:
    """<run_dir>/run.json of the main run; run_dir from train/run.json, else outputs/runs/<run_hash>."""
    pointer = read_json(_rel(params, "train/run.json"))
    candidates = [Path(pointer["run_dir"])] if pointer.get("run_dir") else []
    if pointer.get("run_hash"):
        candidates.append(run_dir(params, pointer["run_hash"]))
    for folder in candidates:
        if (folder / "run.json").is_file():
            return read_json(folder / "run.json")
    where = candidates[0] / "run.json" if candidates else params.outputs / "train/run.json"
    raise UserError(f"{where}: missing run.json of the main run (written by the 'train' stage)")


def with_sample_map(df: pd.DataFrame) -> pd.DataFrame:
    """Per-sample rows with `map`: each sample's share of mAP (core.metrics.sample_map, 0..1), and
    `jf`: its (J + F) / 2 = (iou + f) / 2 (NaN where f is unknown: A2D, or a table older than f;
    the per-unit scores are reports.protocol's)."""
    f = pd.to_numeric(df["f"], errors="coerce") if "f" in df.columns else pd.Series(float("nan"), index=df.index)
    return df.assign(map=[sample_map(i, u) for i, u in zip(df["inter"], df["union"])], f=f, jf=(df["iou"] + f) / 2)


def run_samples(params: Params, run_hashes: list[str]) -> dict[str, pd.DataFrame]:
    """run_hash -> its <run>/eval/per_sample.csv (core.results.read_per_sample, with `map`), for
    the runs that have one."""
    paths = {h: run_dir(params, h) / "eval" / "per_sample.csv" for h in dict.fromkeys(map(str, run_hashes))}
    return {h: with_sample_map(pd.DataFrame(read_per_sample(p))) for h, p in paths.items() if p.is_file()}


def read_bounds(params: Params, run_hashes: list[str]) -> dict[str, Any] | None:
    """bounds.json of the first of the runs that has one: the bounds depend on the data alone,
    so every run of one data fingerprint carries the same values."""
    for h in dict.fromkeys(map(str, run_hashes)):
        path = run_dir(params, h) / "eval" / "bounds.json"
        if path.is_file():
            return read_json(path)
    return None


def run_environments(params: Params, run_hashes: list[str]) -> tuple[dict[str, str], ...]:
    """The environment each run was trained in (core.runtime.environment, from its run.json),
    one entry per distinct run; {} for a run whose run.json predates the record or is absent."""
    envs = []
    for h in dict.fromkeys(map(str, run_hashes)):
        path = run_dir(params, h) / "run.json"
        envs.append(dict(read_json(path).get("environment", {})) if path.is_file() else {})
    return tuple(envs)


SENSITIVITY = "sensitivity/results.csv"  # optional: not a DVC stage (ablations/sensitivity.py)
SENSITIVITY_COLUMNS = ("reading", "variant", "seed", "run_hash")
CALIBRATION = "calibration/per_sample.csv"  # optional: not a DVC stage (ablations/calibration.py)
CALIBRATION_COLUMNS = ("seed", "split", "pair", "sample", "video", "inter", "union", "iou")


def read_optional(params: Params, rel: str, columns: tuple[str, ...], writer: str) -> pd.DataFrame | None:
    """An optional table under outputs (None when absent); a broken one is a one-line UserError."""
    path = params.outputs / rel
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (rerun {writer})")
    return df


def read_sensitivity(params: Params) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]] | None:
    """The reconstruction-sensitivity rows when `python ablations/sensitivity.py` has written them,
    with their runs' per-sample tables."""
    df = read_optional(params, SENSITIVITY, SENSITIVITY_COLUMNS, "python ablations/sensitivity.py")
    return None if df is None else (df, run_samples(params, list(df["run_hash"])))


def read_bound_pairs(params: Params) -> pd.DataFrame | None:
    """eval/bound_pairs.csv with `jf` = (iou + f) / 2 per pair (its `map` is already the expected
    share over the language-blind picks: not recomputed from the expected I and U)."""
    df = read_optional(params, f"eval/{BOUND_PAIRS}", BOUND_PAIR_COLUMNS, "dvc repro evaluate")
    return None if df is None else df.assign(jf=(df["iou"] + pd.to_numeric(df["f"], errors="coerce")) / 2)


def read_calibration(params: Params) -> pd.DataFrame | None:
    df = read_optional(params, CALIBRATION, CALIBRATION_COLUMNS, "python ablations/calibration.py")
    return None if df is None else with_sample_map(df)


def load_inputs(params: Params) -> ReportInputs:
    synthetic = None
    if params.data.source == "synthetic":
        synthetic = read_json(_rel(params, "raw/synthetic_summary.json"))
    results = read_table(params, "ablation/results.csv")
    rhic = read_table(params, "studies/rhic_ratio.csv")
    lam = read_table(params, "studies/lambda_sensitivity.csv")
    return ReportInputs(
        processed=read_json(_rel(params, "processed/summary.json")),
        synthetic=synthetic,
        main_metrics=read_json(_rel(params, "eval/metrics.json")),
        main_run=main_run_info(params),
        results=results,
        per_sample=with_sample_map(read_table(params, "ablation/per_sample.csv")),
        histories=read_table(params, "ablation/histories.csv"),
        rhic=rhic,
        lam=lam,
        study_samples=run_samples(params, [*rhic["run_hash"], *lam["run_hash"]]),
        bounds=read_bounds(params, list(results["run_hash"])),
        sensitivity=read_sensitivity(params),
        environments=run_environments(params, [*results["run_hash"], *rhic["run_hash"], *lam["run_hash"]]),
        bound_pairs=read_bound_pairs(params),
        calibration=read_calibration(params),
    )


def qualitative_image(params: Params, results: pd.DataFrame, variant: str, seed: int) -> Path:
    """<outputs>/runs/<run_hash>/eval/qualitative.png of one (variant, seed) row of results.csv."""
    rows = results[(results["variant"] == variant) & (results["seed"] == seed)]
    if rows.empty:
        raise UserError(f"{params.outputs / 'ablation/results.csv'}: no row for variant {variant!r} seed {seed}")
    return _require(run_dir(params, rows["run_hash"].iloc[0]) / "eval" / "qualitative.png", "ablate")
