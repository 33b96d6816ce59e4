"""The whole DVC pipeline on the tiny profile, from a copy of the tracked tree, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .pipeline_clone import STAGES, clone_project, run_ok


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_project(tmp_path_factory)


def test_dvc_repro_runs_every_stage_to_a_report(project):
    dvc = str(Path(sys.executable).parent / "dvc")
    out = run_ok([dvc, "repro"], project)
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
    for variant in variants:  # each row against its own shuffled-sentence control, paired by seed and video
        assert f"shuffled/shuffled->{variant}/test/mAP/q" in numbers and f"shuffled/{variant}/test_mAP" in numbers
    assert len([k for k in numbers if k.startswith("step/") and k.endswith("/test/mAP/holm")]) == 5  # the verdicts
    assert numbers["environments"]["value"] == 1  # every row's run.json records where it was trained

    again = run_ok([dvc, "repro"], project)
    assert "Running stage" not in again  # an unchanged tree does nothing

    # what a change would rerun: DVC compares each stage's keys of the resolved params
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["loss"]["lambda_seg"] = 0.7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the stages that read loss.*; evaluate and report then follow through train's outputs. Data
    # and pretext do not depend on the loss
    assert stale_stages(project) == {"train", "ablate", "study_rhic", "study_lambda"}
    params["loss"]["lambda_seg"] = 0.8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stale_stages(project) == set()  # back: nothing to do
    # a profile is a layer: a change in the active one reruns the stages that read what it changes...
    tiny = project / "profiles" / "tiny.yaml"
    text = tiny.read_text()
    tiny.write_text(text.replace("simulations: 200", "simulations: 300"))
    assert stale_stages(project) == {"report"}
    tiny.write_text(text)
    assert stale_stages(project) == set()
    # ...and one in a profile params.yaml does not list, nothing
    paper = project / "profiles" / "paper.yaml"
    paper.write_text(paper.read_text().replace("channels: 256", "channels: 128"))
    assert stale_stages(project) == set()
    assert "Running stage" not in run_ok([dvc, "repro"], project)


def stale_stages(project: Path) -> set[str]:
    """The stages `dvc repro` would run now, beyond resolving the params (run here: it takes a second)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    run_ok([dvc, "repro", "resolve"], project)
    return set(json.loads(run_ok([dvc, "status", "--json"], project, stdout_only=True) or "{}"))


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
