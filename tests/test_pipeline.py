"""The whole DVC pipeline on the tiny profile, from a copy of the tracked tree, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import merge_profile

from .conftest import ROOT, TINY

TWIN_VARIANTS = ("Baseline", "CCL", "CCL+RHIC+LCF")
STAGES = ["generate", "extract", "pretrain", "train", "evaluate", "ablate", "study_rhic", "study_lambda", "report"]


def _run(args: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` in dvc.yaml = this venv
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _clone(tmp_path_factory: pytest.TempPathFactory, dataset: str = "a2d") -> Path:
    """A fresh copy of the tracked files (what a clone holds), with the tiny profile merged in
    and data.dataset set (the README's one switch for the synthetic twins)."""
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
    merge_profile(dest / "params.yaml", TINY, dest / "params.yaml")
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


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clone(tmp_path_factory)


def test_dvc_repro_runs_every_stage_to_a_report(project):
    dvc = str(Path(sys.executable).parent / "dvc")
    out = _run([dvc, "repro"], project)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out, stage
    outputs = project / "outputs"
    assert (outputs / "report" / "report.pdf").stat().st_size > 10_000
    metrics = json.loads((outputs / "eval" / "metrics.json").read_text())
    assert {"test", "jhmdb", "test_shuffled"} <= set(metrics)
    ablation = (outputs / "ablation" / "results.csv").read_text().splitlines()
    assert len(ablation) == 1 + 5 * 2  # header + 5 variants x 2 seeds (tiny profile)
    summary = json.loads((outputs / "ablation" / "summary.json").read_text())
    assert summary["reused"] >= 1  # the full model, seed 0 = the train stage's run
    numbers = json.loads((outputs / "report" / "report_numbers.json").read_text())
    variants = yaml.safe_load((project / "params.yaml").read_text())["ablation"]["variants"]
    for variant in variants:  # each row against its own shuffled-sentence control, paired over the pairs
        assert numbers[f"shuffled/{variant}/pairs"]["value"] > 0 and f"shuffled/{variant}/mean_iou/p" in numbers
    assert numbers["environments"]["value"] == 1  # every row's run.json records where it was trained

    again = _run([dvc, "repro"], project)
    assert "Running stage" not in again  # an unchanged tree does nothing

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["loss"]["lambda_seg"] = 0.7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = _run([dvc, "repro", "--dry"], project)  # what would run, without training it all again
    ran = {stage for stage in STAGES if f"Running stage '{stage}'" in rerun}
    # the stages that read loss.*; evaluate and report then follow through train's outputs. Data
    # and pretext do not depend on the loss
    assert ran == {"train", "ablate", "study_rhic", "study_lambda"}
    params["loss"]["lambda_seg"] = 0.8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "Running stage" not in _run([dvc, "repro", "--dry"], project)  # back: nothing to do


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_mlflow_server_lists_the_suite_and_lines_up_params(project):
    """`mlflow ui` on the pipeline's DB (loopback only): the ablation parent lists its rows, and
    the rows carry the same param keys, so the compare view lines them up."""
    import time
    import urllib.error

    db = project / "outputs" / "mlflow.db"
    port = _free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [mlflow, "ui", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=project,
    )
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.time() + 120
        while True:
            try:
                exps = _post(f"{api}/experiments/search", {"max_results": 10})
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.time() < deadline, "mlflow ui did not start"
                time.sleep(1)
        exp_id = next(e["experiment_id"] for e in exps["experiments"] if e["name"] == "cvls")
        runs = _post(f"{api}/runs/search", {"experiment_ids": [exp_id], "max_results": 1000})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        parents = [r for r, t in zip(runs, tags) if t.get("mlflow.runName") == "ablation: Table 3"]
        assert parents
        pid = parents[0]["info"]["run_id"]
        children = [(r, t) for r, t in zip(runs, tags) if t.get("mlflow.parentRunId") == pid]
        assert sorted(t["variant"] for _, t in children) == sorted(
            ["Baseline", "CCL", "CCL+RHIC", "CCL+LCF", "CCL+RHIC+LCF"] * 2
        )
        keys = [frozenset(p["key"] for p in r["data"]["params"]) for r, _ in children]
        assert len(set(keys)) == 1 and "loss.lambda_seg" in keys[0] and "loss.ccl" in keys[0]
        assert all(r["info"]["status"] == "FINISHED" for r, _ in children)
    finally:
        server.terminate()
        server.wait(timeout=30)


# CI time: the stages after `evaluate` do not depend on the dataset's reader (they read the
# processed store and the runs' metrics), so MeViS runs the whole pipeline to its J&F report and
# Ref-YouTube-VOS the dataset-specific part, `dvc repro evaluate` (its report: test_report_vos.py)
TWIN_TARGETS = {"ytvos": "evaluate", "mevis": "report"}


@pytest.mark.parametrize("dataset", sorted(TWIN_TARGETS))
def test_dvc_repro_on_a_synthetic_twin_reports_jf_and_exports_valid(tmp_path_factory, dataset):
    """`data.dataset: ytvos | mevis` and `dvc repro`: the twin is written in that dataset's layout
    and read by its reader, every run is scored in J, F and J&F (the split's J&F recomputed here
    from the per-sample file, per expression first), Table 3 is in J&F (MeViS: the whole
    pipeline), and `python -m core.evaluate --export` zips the valid split's masks in the
    submission layout."""
    import csv
    import zipfile

    project = _clone(tmp_path_factory, dataset)
    target = TWIN_TARGETS[dataset]
    out = _run([str(Path(sys.executable).parent / "dvc"), "repro", target], project)
    stages = STAGES[: STAGES.index(target) + 1]
    for stage in STAGES:
        assert (f"Running stage '{stage}'" in out) == (stage in stages), stage
    outputs = project / "outputs"
    metrics = json.loads((outputs / "eval" / "metrics.json").read_text())
    assert "jhmdb" not in metrics and {"val", "test", "test_shuffled"} <= set(metrics)
    with open(outputs / "eval" / "per_sample.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    per_expression: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        per_expression.setdefault(r["sample"], []).append((float(r["iou"]), float(r["f"])))
    j = 100 * sum(sum(x for x, _ in v) / len(v) for v in per_expression.values()) / len(per_expression)
    f_ = 100 * sum(sum(y for _, y in v) / len(v) for v in per_expression.values()) / len(per_expression)
    test = metrics["test"]
    assert test["J"] == pytest.approx(j) and test["F"] == pytest.approx(f_)
    assert test["J&F"] == pytest.approx((j + f_) / 2) and test["n_expressions"] == len(per_expression)
    if target == "report":
        _check_jf_report(outputs)

    _run([sys.executable, "-m", "core.evaluate", "--export"], project)
    (zip_path,) = (outputs / "runs").glob("*/export/*.zip")
    with zipfile.ZipFile(zip_path) as z:
        names = [n for n in z.namelist() if n.endswith(".png")]
    assert names and all(n.count("/") == (3 if dataset == "ytvos" else 2) for n in names)


def _check_jf_report(outputs: Path) -> None:
    """Table 3 of a J&F dataset: every row scored in J&F, the report's means equal results.csv's,
    the paired tests over expressions (the Baseline -> CCL step, each row vs its shuffled control)."""
    import csv

    with open(outputs / "ablation" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(TWIN_VARIANTS) * 2 and all(r["test/J&F"] for r in table)
    numbers = json.loads((outputs / "report" / "report_numbers.json").read_text())
    for variant in {r["variant"] for r in table}:
        mean = sum(float(r["test/J&F"]) for r in table if r["variant"] == variant) / 2
        assert numbers[f"table3/{variant}/test/J&F/mean"]["value"] == pytest.approx(mean, abs=0.051)
    assert "significance/Baseline->CCL/J/diff" in numbers  # the step's paired bootstrap, over expressions
    for variant in TWIN_VARIANTS:
        assert numbers[f"shuffled/{variant}/expressions"]["value"] > 0, variant
    assert (outputs / "report" / "report.pdf").stat().st_size > 10_000
