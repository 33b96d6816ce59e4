"""The whole DVC pipeline on the tiny profile, from a copy of the tracked tree, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .pipeline_clone import STAGES, clone_project, run_env, run_ok


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_project(tmp_path_factory)


def _column(db: Path, sql: str) -> list:
    """One column of a query on a SQLite file (an absent file or table: no rows)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [v for (v,) in con.execute(sql)]
    except sqlite3.OperationalError:  # schema not created yet
        return []


def _suite_processes(project: Path) -> list[str]:
    """'pid cmdline' of every process working in the project's folder (the stages and their workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).is_relative_to(project):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name} {cmdline}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="finds the stage's processes through /proc")
def test_sigterm_to_dvc_alone_stops_the_stage_and_its_workers(project):
    """SIGTERM to the `dvc repro` process only (what a container runtime sends its PID 1, or a
    scheduler that signals the main process), mid-ablation: dvc exits at once, and the stage's
    python and its two workers stop within 10 s, having closed the trial FAIL and the runs KILLED
    themselves (nothing RUNNING before any rerun). The next test's `dvc repro` resumes it."""
    dvc = str(Path(sys.executable).parent / "dvc")
    outputs = project / "outputs"
    with (project.parent / "killed_repro.log").open("w") as log:
        proc = subprocess.Popen([dvc, "repro"], cwd=project, env=run_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 900
        while True:  # the ablation mid-way: one row trained (the other COMPLETE is the reused main run)
            states = _column(outputs / "optuna.db", "SELECT state FROM trials")
            if states.count("COMPLETE") >= 2 and "RUNNING" in states:
                break
            assert proc.poll() is None, (project.parent / "killed_repro.log").read_text()[-3000:]
            assert time.time() < deadline, "the ablation never had a trained row and a running one"
            time.sleep(0.2)
        assert any("components.py" in p for p in _suite_processes(project))
        proc.send_signal(signal.SIGTERM)  # dvc alone, not its process group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 10
    while left := _suite_processes(project):
        assert time.time() < deadline, f"still running 10 s after dvc was stopped: {left}"
        time.sleep(0.2)
    states = _column(outputs / "optuna.db", "SELECT state FROM trials")
    assert "RUNNING" not in states and "FAIL" in states, states
    running = _column(outputs / "mlflow.db", "SELECT name || ' ' || run_uuid FROM runs WHERE status = 'RUNNING'")
    assert not running, (running, (project.parent / "killed_repro.log").read_text()[-3000:])
    assert "KILLED" in _column(outputs / "mlflow.db", "SELECT status FROM runs")


def test_dvc_repro_runs_every_stage_to_a_report(project):
    """Every stage, to the report; after the kill above, the stages it finished are not run again
    and the ablation resumes, training only what the killed run had not finished."""
    dvc = str(Path(sys.executable).parent / "dvc")
    complete_before = _column(project / "outputs" / "optuna.db", "SELECT state FROM trials").count("COMPLETE")
    out = run_ok([dvc, "repro"], project)
    ran = {stage for stage in STAGES if f"Running stage '{stage}'" in out}
    assert ran >= set(STAGES[STAGES.index("ablate") :]), ran
    assert "Data and pipelines are up to date" in run_ok([dvc, "status"], project)
    outputs = project / "outputs"
    assert (outputs / "report" / "report.pdf").stat().st_size > 10_000
    metrics = json.loads((outputs / "eval" / "metrics.json").read_text())
    assert {"test", "jhmdb", "test_shuffled"} <= set(metrics)
    ablation = (outputs / "ablation" / "results.csv").read_text().splitlines()
    assert len(ablation) == 1 + 5 * 2  # header + 5 variants x 2 seeds (tiny profile)
    summary = json.loads((outputs / "ablation" / "summary.json").read_text())
    # this invocation's rows: what the killed run finished (or the train stage's run, the full
    # model at seed 0) is reused, the rest trained here, nothing elsewhere
    assert summary["runs"] == 10 and summary["trained_elsewhere"] == 0, summary
    assert summary["reused"] >= max(1, complete_before) and summary["trained_here"] == 10 - summary["reused"]
    assert f"10 runs: {summary['trained_here']} trained here, {summary['reused']} reused, 0 trained elsewhere" in out
    mlflow = [line for line in out.splitlines() if line.startswith("MLflow: mlflow ui --backend-store-uri ")]
    assert mlflow and mlflow[0].endswith("?workflowType=machine_learning")
    numbers = json.loads((outputs / "report" / "report_numbers.json").read_text())
    variants = yaml.safe_load((project / "params.yaml").read_text())["ablation"]["variants"]
    for variant in variants:  # each row against its own shuffled-sentence control, paired by seed and video
        assert f"shuffled/shuffled->{variant}/test/mAP/q" in numbers and f"shuffled/{variant}/test_mAP" in numbers
    assert len([k for k in numbers if k.startswith("step/") and k.endswith("/test/mAP/holm")]) == 5  # the verdicts
    assert numbers["environments"]["value"] == 1  # every row's run.json records where it was trained
    # every stage ended the runs it opened itself (none was left to the exit's net, none RUNNING)
    assert "still open when its process ended" not in out
    assert set(_column(outputs / "mlflow.db", "SELECT status FROM runs")) <= {"FINISHED", "KILLED"}

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
    """`mlflow ui` on the pipeline's DB (loopback only): the ablation parent lists its rows and
    spans them, the rows carry the same param keys, so the compare view lines them up, and the
    experiment is tagged a training one (what the UI's experiment-kind selector writes)."""
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
        (exp,) = [e for e in exps["experiments"] if e["name"] == "cvls"]
        exp_id = exp["experiment_id"]
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in exp["tags"]
        runs = _post(f"{api}/runs/search", {"experiment_ids": [exp_id], "max_results": 1000})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        assert "RUNNING" not in {r["info"]["status"] for r in runs}
        (parent,) = [r for r, t in zip(runs, tags) if t.get("mlflow.runName") == "ablation: Table 3"]
        pid = parent["info"]["run_id"]
        children = [(r, t) for r, t in zip(runs, tags) if t.get("mlflow.parentRunId") == pid]
        # the rows, FINISHED; and, when the kill test ran first, the runs it stopped, KILLED
        assert {r["info"]["status"] for r, _ in children} <= {"FINISHED", "KILLED"}
        children = [(r, t) for r, t in children if r["info"]["status"] == "FINISHED"]
        assert sorted(t["variant"] for _, t in children) == sorted(
            ["Baseline", "CCL", "CCL+RHIC", "CCL+LCF", "CCL+RHIC+LCF"] * 2
        )
        keys = [frozenset(p["key"] for p in r["data"]["params"]) for r, _ in children]
        assert len(set(keys)) == 1 and "loss.lambda_seg" in keys[0] and "loss.ccl" in keys[0]
        info = parent["info"]
        assert info["status"] == "FINISHED"
        assert int(info["start_time"]) <= min(int(r["info"]["start_time"]) for r, _ in children)
        assert int(info["end_time"]) >= max(int(r["info"]["end_time"]) for r, _ in children)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: its uvicorn may not stop in time
            server.kill()
            server.wait(timeout=30)
