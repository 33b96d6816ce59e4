"""A fresh copy of the tracked tree with the tiny profile as its layer, and the CLI runner the
end-to-end pipeline tests share (test_pipeline.py, test_pipeline_twins.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

TWIN_VARIANTS = ("Baseline", "CCL", "CCL+RHIC+LCF")
STAGES = [
    "resolve",
    "generate",
    "extract",
    "pretrain",
    "train",
    "evaluate",
    "ablate",
    "study_rhic",
    "study_lambda",
    "report",
]


def run_env() -> dict[str, str]:
    """The environment of the CLI runs: no MLFLOW_TRACKING_URI, this venv's `python` first."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` in dvc.yaml = this venv
    return env


def run_ok(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    r = subprocess.run(args, cwd=cwd, env=run_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout if stdout_only else r.stdout + r.stderr


def clone_project(tmp_path_factory: pytest.TempPathFactory, dataset: str = "a2d") -> Path:
    """A fresh copy of the tracked files (what a clone holds), with the tiny profile switched on
    (`profiles: [tiny]`, the one line a user changes) and data.dataset set (the README's one
    switch for the synthetic twins)."""
    dest = tmp_path_factory.mktemp("clone") / "cvls"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    text = (dest / "params.yaml").read_text()
    assert text.count("\nprofiles: []") == 1
    (dest / "params.yaml").write_text(text.replace("\nprofiles: []", "\nprofiles: [tiny]"))
    if dataset != "a2d":
        params = yaml.safe_load((dest / "params.yaml").read_text())
        params["data"]["dataset"] = dataset
        # CI time for the twins: each study's one point is the main run (reused, nothing trained),
        # and Table 3 has three rows (one incremental step, Baseline -> CCL, for the paired tests)
        params["studies"]["rhic_ratios"] = [params["loss"]["rhic_ratio"]]
        params["studies"]["lambdas"] = [params["loss"]["lambda_seg"]]
        params["ablation"]["variants"] = {k: params["ablation"]["variants"][k] for k in TWIN_VARIANTS}
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"],
    ):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest
