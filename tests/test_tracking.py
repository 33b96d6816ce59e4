"""core.tracking: everything is read back through MlflowClient from a real SQLite store in tmp."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from core import tracking
from core.config import load_params
from core.identity import config_hash

ROOT = Path(__file__).resolve().parents[1]
PARAMS_YAML = ROOT / "params.yaml"


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def make_params(tmp_path, *overrides):
    return load_params(PARAMS_YAML, [f"paths.outputs={tmp_path}", *overrides])


def client_for(params):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(params))


# ---------------------------------------------------------------------------------------------
def test_default_uri_is_absolute_sqlite_under_outputs_and_env_overrides(tmp_path, monkeypatch):
    p = make_params(tmp_path)
    uri = tracking.tracking_uri(p)
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()

    relative = make_params(tmp_path, "tracking.uri=sqlite:///runs/m.db")
    assert tracking.tracking_uri(relative) == f"sqlite:///{ROOT / 'runs' / 'm.db'}"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(p) == "http://127.0.0.1:5999"
    assert tracking.tracking_uri(relative) == "http://127.0.0.1:5999"


def test_init_tracking_is_idempotent_and_keeps_artifacts_under_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = make_params(tmp_path / "out")
    exp_id = tracking.init_tracking(p)
    t0 = time.perf_counter()
    assert tracking.init_tracking(p) == exp_id
    assert time.perf_counter() - t0 < 0.05
    exp = client_for(p).get_experiment(exp_id)
    assert exp.name == p.tracking.experiment
    assert exp.artifact_location.startswith((tmp_path / "out" / "mlartifacts").as_uri())
    # no global state: the env var stays the user's alone, so it never pins later params
    assert "MLFLOW_TRACKING_URI" not in os.environ
    other = make_params(tmp_path / "other")
    assert tracking.tracking_uri(other) == f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"


def test_tracked_run_logs_params_tags_metrics_and_config(tmp_path):
    p = make_params(tmp_path)
    run_hash = config_hash(p, "fp-1")
    with tracking.tracked_run(
        p, name="CCL s0", run_hash=run_hash, tags={"cvls.variant": "CCL", "cvls.seed": "0"}
    ) as run:
        for epoch in range(3):
            run.log_metrics({"train_loss": 1.0 / (epoch + 1), "val_miou": 0.1 * epoch}, step=epoch)
        run.log_metrics({"test_miou": 0.5})
        run.set_tags({"cvls.note": "ok"})
        extra = tmp_path / "extra.txt"
        extra.write_text("hello")
        run.log_artifact(extra, "files")

    client = client_for(p)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "CCL s0"
    # params: one per flattened key, same names in every run ('+' is not allowed by MLflow)
    assert set(got.data.params) == {tracking.mlflow_name(k) for k in p.flat()}
    assert "ablation.variants.CCL_RHIC_LCF.lcf" in got.data.params
    assert got.data.params["loss.rhic_ratio"] == "1:3"
    assert got.data.params["loss.lcf"] == "true"
    assert got.data.params["train.grad_clip"] == "null"
    # tags
    tags = got.data.tags
    assert tags[tracking.TAG_SUITE] == "cvls"
    assert tags[tracking.TAG_GIT_COMMIT] == tracking.git_commit(p.root) != ""
    assert tags[tracking.TAG_DATA_SOURCE] == "synthetic"
    assert tags[tracking.TAG_CONFIG_HASH] == run_hash
    assert tags["cvls.variant"] == "CCL" and tags["cvls.seed"] == "0" and tags["cvls.note"] == "ok"
    assert tracking.TAG_PARENT_RUN_ID not in tags
    # metrics with steps: the per-epoch history
    history = client.get_metric_history(run.run_id, "val_miou")
    assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.0),
        (1, 0.1),
        (2, 0.2),
    ]
    assert got.data.metrics["test_miou"] == 0.5
    # artifacts: the resolved config snapshot, under outputs (not the CWD)
    assert [a.path for a in client.list_artifacts(run.run_id, "config")] == [tracking.CONFIG_ARTIFACT]
    assert [a.path for a in client.list_artifacts(run.run_id, "files")] == ["files/extra.txt"]
    local = Path(client.download_artifacts(run.run_id, tracking.CONFIG_ARTIFACT, str(tmp_path / "dl")))
    assert yaml.safe_load(local.read_text()) == p.to_dict()
    assert got.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_log_figure_and_disabled_handle(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = make_params(tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with tracking.tracked_run(p, name="fig", run_hash=None, tags={}) as run:
        run.log_figure(fig, "curves")
    plt.close(fig)
    assert [a.path for a in client_for(p).list_artifacts(run.run_id) if a.path.endswith(".png")] == ["curves.png"]

    other = make_params(tmp_path / "off")
    with tracking.tracked_run(other, name="x", run_hash="h", tags={}, enabled=False) as off:
        off.log_metrics({"a": 1.0}, step=0)
        off.set_tags({"a": "b"})
        off.log_artifact(tmp_path / "missing.txt")
        off.log_figure(object(), "f")
    assert off.run_id is None
    assert not (tmp_path / "off").exists()


def test_failure_marks_run_failed_with_error_and_reraises(tmp_path):
    p = make_params(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.tracked_run(p, name="bad", run_hash="h1", tags={}) as run:
            run.log_metrics({"loss": 1.0}, step=0)
            raise RuntimeError("boom\nsecond line")
    got = client_for(p).get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["error"] == "RuntimeError: boom second line"


def test_find_finished_run_ignores_failed_runs_and_other_hashes(tmp_path):
    p = make_params(tmp_path)
    assert tracking.find_finished_run(p, "abc") is None
    with tracking.tracked_run(p, name="ok-old", run_hash="abc", tags={}) as old:
        pass
    with tracking.tracked_run(p, name="other", run_hash="xyz", tags={}):
        pass
    with tracking.tracked_run(p, name="ok-new", run_hash="abc", tags={}) as new:
        pass
    with pytest.raises(ValueError):
        with tracking.tracked_run(p, name="failed", run_hash="abc", tags={}):
            raise ValueError("x")
    with pytest.raises(ValueError):
        with tracking.tracked_run(p, name="only-failed", run_hash="f00", tags={}):
            raise ValueError("x")
    assert old.run_id != new.run_id
    assert tracking.find_finished_run(p, "abc") == new.run_id  # the newest finished one
    assert tracking.find_finished_run(p, "f00") is None
    assert tracking.find_finished_run(p, "nope") is None


def test_nested_run_and_parent_find_or_create(tmp_path):
    p = make_params(tmp_path)
    parent = tracking.start_parent_run(p, name="ablation", tags={"cvls.parent_key": "ablation-1"})
    assert tracking.start_parent_run(p, name="ablation", tags={"cvls.parent_key": "ablation-1"}) == parent
    assert tracking.start_parent_run(p, name="ablation", tags={"cvls.parent_key": "ablation-2"}) != parent
    assert tracking.start_parent_run(p, name="free", tags={}) != parent
    with tracking.tracked_run(p, name="child", run_hash=None, tags={}, parent_run_id=parent) as child:
        pass
    client = client_for(p)
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(parent).info.experiment_id == client.get_run(child.run_id).info.experiment_id
    assert client.get_run(parent).data.tags["cvls.parent_key"] == "ablation-1"


def test_a_parent_run_spans_its_children_and_is_reopened_on_resume(tmp_path):
    """RUNNING from `start_parent_run` to the end of its `run_span` (after the children), then
    FINISHED; found again and reopened by the next invocation, which ends it later still; an
    interrupted span ends it KILLED."""
    p = make_params(tmp_path)
    client = client_for(p)
    key = {"cvls.parent_key": "suite-1"}
    parent = tracking.start_parent_run(p, name="suite", tags=key)
    assert client.get_run(parent).info.status == "RUNNING"
    with tracking.run_span(p, parent):
        with tracking.tracked_run(p, name="child", run_hash=None, tags={}, parent_run_id=parent) as child:
            time.sleep(0.05)
    first, kid = client.get_run(parent).info, client.get_run(child.run_id).info
    assert first.status == "FINISHED" and first.start_time <= kid.start_time and first.end_time >= kid.end_time

    again = tracking.start_parent_run(p, name="suite", tags=key)  # a resumed suite: the same parent, open
    assert again == parent and client.get_run(parent).info.status == "RUNNING"
    with pytest.raises(KeyboardInterrupt), tracking.run_span(p, parent):
        time.sleep(0.05)
        raise KeyboardInterrupt
    last = client.get_run(parent)
    assert last.info.status == "KILLED" and last.data.tags["error"].startswith("KeyboardInterrupt")
    assert last.info.start_time == first.start_time and last.info.end_time > first.end_time


def test_the_experiment_is_tagged_a_training_experiment_and_the_link_opens_its_runs(tmp_path):
    p = make_params(tmp_path)
    exp_id = tracking.init_tracking(p)
    assert client_for(p).get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    link = tracking.ui_link(p)
    assert link.endswith(f"http://127.0.0.1:5000/#/experiments/{exp_id}?workflowType=machine_learning")
    assert f"--backend-store-uri {tracking.tracking_uri(p)}" in link


def test_git_commit(tmp_path):
    assert tracking.git_commit(tmp_path) == "unknown"
    commit = tracking.git_commit(ROOT)
    assert commit == "unknown" or len(commit) == 40


_WORKER = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from core import tracking
from core.config import load_params
from core.identity import RUN, identity
out, i = Path(sys.argv[2]), sys.argv[3]
p = load_params(Path(sys.argv[1]) / "params.yaml", [f"paths.outputs={out}"])
(out / f"ready-{i}").touch()
while not (out / "go").exists():
    time.sleep(0.01)
tracking.init_tracking(p)
with tracking.tracked_run(p, name=f"worker-{i}", run_hash=f"h{i}", tags={"worker": i}) as run:
    run.log_metrics({"x": float(i)}, step=0)
print(run.run_id)
"""


def test_concurrent_init_on_fresh_sqlite(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(ROOT), str(out), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(4)
    ]
    try:
        deadline = time.monotonic() + 50
        while len(list(out.glob("ready-*"))) < 4:  # all imported: now start them at once
            assert time.monotonic() < deadline and all(pr.poll() is None for pr in procs), "workers did not start"
            time.sleep(0.05)
        (out / "go").touch()
        results = [pr.communicate(timeout=50) for pr in procs]
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
    for pr, (stdout, stderr) in zip(procs, results):
        assert pr.returncode == 0, stderr[-3000:]
    p = make_params(out)
    client = client_for(p)
    exps = [e for e in client.search_experiments() if e.name == p.tracking.experiment]
    assert len(exps) == 1
    runs = client.search_runs([exps[0].experiment_id])
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.tags["worker"] for r in runs) == ["0", "1", "2", "3"]


# ---------------------------------------------------------------------------------------------
# no run left RUNNING: SIGTERM ends it KILLED; a SIGKILLed one is closed by the next run
_HOLDER = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from core import tracking
from core.cli import run_main
from core.config import load_params
from core.identity import RUN, identity
out = Path(sys.argv[2])
p = load_params(Path(sys.argv[1]) / "params.yaml", [f"paths.outputs={out}"])

def main(argv):
    with tracking.tracked_run(p, name="holder", run_hash="held", tags={}) as run:
        (out / "run_id").write_text(run.run_id)
        time.sleep(120)

run_main(main)
"""


def _start_holder(out: Path) -> tuple[subprocess.Popen, str]:
    """A process inside a tracked run of config 'held' (run_main, as every script); its run id."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(ROOT), str(out)], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not (out / "run_id").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"holder did not start: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    return proc, (out / "run_id").read_text()


def test_sigterm_ends_the_run_killed_and_a_live_run_is_left_alone(tmp_path):
    p = make_params(tmp_path)
    proc, held = _start_holder(tmp_path)
    client = client_for(p)
    try:
        # the same config again while the holder lives: its RUNNING run is not stale
        with tracking.tracked_run(p, name="second", run_hash="held", tags={}) as second:
            pass
        assert client.get_run(held).info.status == "RUNNING"
        assert tracking.TAG_REPLACES not in client.get_run(second.run_id).data.tags
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM and err.strip().endswith("terminated"), err[-3000:]
    got = client.get_run(held)
    assert got.info.status == "KILLED"
    assert got.data.tags["error"] == f"Terminated: terminated by signal {int(signal.SIGTERM)}"


def test_a_run_left_running_by_a_killed_process_is_closed_by_the_next_run_of_its_config(tmp_path):
    p = make_params(tmp_path)
    proc, held = _start_holder(tmp_path)
    proc.kill()  # SIGKILL: nothing in the process can close its run
    proc.communicate()
    client = client_for(p)
    assert client.get_run(held).info.status == "RUNNING"
    exp_id = tracking.init_tracking(p)
    here = socket.gethostname()
    elsewhere = {tracking.TAG_CONFIG_HASH: "held", tracking.TAG_OWNER: "another-host:1:1"}
    remote = client.create_run(exp_id, tags=elsewhere).info.run_id  # may be alive: not ours to judge
    # a pid that lives, but is not the process that made the run (it started at another time)
    reused = {tracking.TAG_CONFIG_HASH: "held", tracking.TAG_OWNER: f"{here}:{os.getppid()}:1"}
    recycled = client.create_run(exp_id, tags=reused).info.run_id

    with tracking.tracked_run(p, name="resumed", run_hash="held", tags={}) as resumed:
        pass
    for run_id in (held, recycled):
        old = client.get_run(run_id)
        assert old.info.status == "KILLED" and old.data.tags["error"].startswith("stale: its process"), run_id
    assert client.get_run(remote).info.status == "RUNNING"
    new = client.get_run(resumed.run_id)
    assert new.info.status == "FINISHED"
    assert sorted(new.data.tags[tracking.TAG_REPLACES].split(",")) == sorted([held, recycled])
    assert new.data.tags[tracking.TAG_OWNER].startswith(f"{here}:{os.getpid()}:")


def test_a_training_run_killed_then_resumed_leaves_no_running_run(tiny_store, tmp_path):
    """`python -m core.train` SIGKILLed after its first epoch's checkpoint, then run again: it
    resumes from the checkpoint in a new run and marks the killed one KILLED (SQLite store)."""
    p = tiny_store.replace(**{"train.epochs": 3, "train.seed": 31, "tracking.experiment": "killed-train"})
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(p.to_dict(), sort_keys=False))
    cmd = [sys.executable, "-m", "core.train", "--params", str(pfile)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": "1"}
    client = client_for(p)
    exp_id = tracking.init_tracking(p)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:  # kill it once its run is RUNNING and epoch 1 is checkpointed
            runs = client.search_runs([exp_id], "attributes.status = 'RUNNING'")
            ckpt = runs and p.outputs / "runs" / runs[0].data.tags[tracking.TAG_CONFIG_HASH] / "checkpoint.pt"
            if ckpt and ckpt.is_file():
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpointed RUNNING run"
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
        log.close()
    (killed,) = runs
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = client.search_runs([exp_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
    (new,) = [r for r in runs if r.info.status == "FINISHED"]
    assert new.data.tags["resumed"] == "true" and new.data.tags[tracking.TAG_REPLACES] == killed.info.run_id
    assert client.get_run(killed.info.run_id).data.tags["error"].startswith("stale: its process")
