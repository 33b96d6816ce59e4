"""Optuna studies: each (grid point, seed) exactly once, sequential, killed + resumed, concurrent;
outputs from the study alone; every trial an MLflow run nested under the study's parent."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from core import procs, runs, tracking
from core.errors import UserError
from core.study import (
    LAMBDA_SENSITIVITY,
    RHIC_RATIO,
    WorkerContext,
    create_study,
    grid,
    open_study,
    run_study,
    run_worker,
)

from .conftest import ROOT

FAST = {"train.epochs": 1, "train.max_steps_per_epoch": 2, "studies.n_jobs": 1}  # one worker unless a test asks


def _params(tiny_store, **over):
    return tiny_store.replace(**{**FAST, **over})


def _url(folder: Path) -> str:
    return f"sqlite:///{folder / 'optuna.db'}"


def _pairs(trials, state=TrialState.COMPLETE):
    return [(t.user_attrs["point"], t.user_attrs["seed"]) for t in trials if t.state == state]


def _assert_each_pair_once(study, kind, params):
    done = _pairs(study.trials)
    assert Counter(done) == Counter(gp.pair for gp in grid(kind, params)), done


def _script(kind: str, params, folder: Path, url: str, *extra: str) -> list[str]:
    pfile = folder / "params.yaml"
    pfile.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    return [sys.executable, str(ROOT / "studies" / f"{kind}.py"), "--params", str(pfile), "--storage", url, *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _states(db: Path) -> list[str]:
    """Trial states read straight from the SQLite file (no Optuna schema work while it runs)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [s for (s,) in con.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # schema not created yet
        return []


@contextmanager
def _deadline(seconds: int):
    """Fail the test instead of hanging (SIGALRM; tests run in the main thread)."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _only_study(url: str):
    (summary,) = optuna.get_all_study_summaries(url)
    return optuna.load_study(study_name=summary.study_name, storage=url)


# ---------------------------------------------------------------- sequential
@pytest.fixture(scope="module")
def sequential(tiny_store, tmp_path_factory):
    p = _params(tiny_store, **{"studies.rhic_ratios": ["1:1", "1:3"], "studies.seeds": [0]})
    url = _url(tmp_path_factory.mktemp("optuna_seq"))
    result = run_study(RHIC_RATIO, p, storage=url)
    return p, url, result


def test_sequential_study_runs_each_point_once_and_writes_outputs(sequential):
    p, url, result = sequential
    assert result.ok, result.problems
    assert result.study_name.startswith("rhic_ratio-")
    study, _ = open_study(url, result.study_name, 30)
    _assert_each_pair_once(study, RHIC_RATIO, p)
    out = p.outputs / "studies"
    for suffix in ("csv", "png", "svg", "json"):
        assert (out / f"rhic_ratio.{suffix}").stat().st_size > 0
    rows = list(csv.DictReader((out / "rhic_ratio.csv").open()))
    assert [r["point"] for r in rows] == ["1:3", "1:1"]  # paper order (ascending h/e), not params order
    assert [float(r["x"]) for r in rows] == [pytest.approx(1 / 3), 1.0]
    by_trial = {t.number: t for t in study.trials}
    for r in rows:
        t = by_trial[int(r["trial"])]
        assert r["study"] == result.study_name and (r["point"], int(r["seed"])) == (
            t.user_attrs["point"],
            t.user_attrs["seed"],
        )
        assert float(r["val/mAP"]) == pytest.approx(t.value)
        assert r["run_id"] == t.user_attrs["row"]["run_id"]
        for col in ("test/mAP", "jhmdb/P@0.5", "test/overall_iou"):
            assert float(r[col]) == pytest.approx(t.user_attrs["row"][col])
    info = json.loads((out / "rhic_ratio.json").read_text())
    assert info["study"] == result.study_name and info["n_complete"] == 2 and info["missing"] == []
    # this invocation trained both (no other process works this storage); reused = an identical
    # FINISHED run found by config hash (here: none, or the full model's run of another test)
    assert info["trained_here"] + info["reused"] == 2 and info["trained_elsewhere"] == 0
    assert info["trained_here"] >= 1 and info["best"]["point"] in ("1:3", "1:1")

    # the same command again: nothing new is enqueued or trained, and its summary says so
    lines: list[str] = []
    again = run_study(RHIC_RATIO, p, storage=url, echo=lines.append)
    assert again.study_name == result.study_name and again.enqueued == 0 and again.ok
    assert len(open_study(url, result.study_name, 30)[0].trials) == 2
    assert (again.info["trained_here"], again.info["reused"], again.info["trained_elsewhere"]) == (0, 2, 0)
    assert lines[-1].startswith("2/2 trials complete (0 trained here, 2 reused, 0 trained elsewhere)")


def test_each_trial_is_an_mlflow_run_nested_under_the_study_parent(sequential):
    p, url, result = sequential
    client = MlflowClient(tracking.tracking_uri(p))
    exp = tracking.init_tracking(p)
    (parent,) = client.search_runs([exp], f"tags.`cvls.parent_key` = 'study:{result.study_name}'")
    assert parent.info.run_id == result.parent_run_id and parent.data.tags["study"] == result.study_name
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    study, _ = open_study(url, result.study_name, 30)
    for t in study.trials:
        if t.state != TrialState.COMPLETE:
            continue
        mine = [c for c in children if c.data.tags.get("trial") == str(t.number)]
        assert len(mine) == 1, (t.number, [c.data.tags for c in children])
        tags = mine[0].data.tags
        assert tags["study"] == result.study_name and tags["variant"] == "CCL+RHIC+LCF"
        assert mine[0].data.params["loss.rhic_ratio"] == t.user_attrs["point"]
        assert mine[0].data.params["loss.lcf"] == "true" and mine[0].data.params["train.seed"] == "0"


# ---------------------------------------------------------------- duplicates and errors (no training)
def test_enqueue_is_idempotent_and_a_duplicate_never_trains(tiny_store, tmp_path, monkeypatch):
    p = _params(tiny_store, **{"studies.lambdas": [1.0, 0.8], "studies.seeds": [0]})
    url = _url(tmp_path)
    study, n = create_study(LAMBDA_SENSITIVITY, p, url, "dup-test")
    assert n == 2 and create_study(LAMBDA_SENSITIVITY, p, url, "dup-test")[1] == 0
    # a racing enqueue of the same pair (what a lock-less backend could produce)
    study.enqueue_trial({"lambda_seg": 0.8, "seed": 0}, user_attrs={"point": "0.8", "seed": 0, "x": 0.8})
    calls = []

    def fake_run_variant(params, *, name, tags, parent_run_id):
        calls.append((params.loss.lambda_seg, params.train.seed, params.loss.lcf))
        metrics = {"val": {"mAP": 10 * params.loss.lambda_seg}, "test": {"mAP": 5.0}}
        return runs.RunRecord(f"run-{len(calls)}", "h", tmp_path, False, metrics, [])

    monkeypatch.setattr(runs, "run_variant", fake_run_variant)
    with _deadline(60):
        res = run_worker(WorkerContext("lambda_sensitivity", p, url, "dup-test", None))
    assert sorted(calls) == [(0.8, 0, True), (1.0, 0, True)] and res.failed == [] and res.missing == []
    study, _ = open_study(url, "dup-test", 30)
    _assert_each_pair_once(study, LAMBDA_SENSITIVITY, p)
    (dup,) = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert dup.user_attrs["duplicate_of"] == [t for t in study.trials if _pairs([t]) == [("0.8", 0)]][0].number
    assert {t.params["lambda_seg"] for t in study.trials if t.state == TrialState.COMPLETE} == {0.8, 1.0}


def test_a_trial_abandoned_before_its_first_heartbeat_is_retried(tiny_store, tmp_path, monkeypatch):
    """A worker killed between popping a trial and storing its first heartbeat leaves a RUNNING
    trial that Optuna's heartbeat check never fails; the next worker retries it."""
    p = _params(tiny_store, **{"studies.lambdas": [0.5], "studies.seeds": [0, 1]})
    url = _url(tmp_path)
    study, _ = create_study(LAMBDA_SENSITIVITY, p, url, "abandoned")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        popped = study.ask()  # ...and the worker dies here
    calls = []
    monkeypatch.setattr(
        runs,
        "run_variant",
        lambda params, **kw: (
            calls.append(params.train.seed) or runs.RunRecord(None, "h", tmp_path, False, {"val": {"mAP": 1.0}}, [])
        ),
    )
    with _deadline(60):
        res = run_worker(WorkerContext("lambda_sensitivity", p, url, "abandoned", None))
    assert sorted(calls) == [0, 1] and res.missing == []
    study, _ = open_study(url, "abandoned", 30)
    _assert_each_pair_once(study, LAMBDA_SENSITIVITY, p)
    states = {t.number: t.state for t in study.trials}
    assert states[popped.number] == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == popped.number]
    assert retry.state == TrialState.COMPLETE and _pairs([retry]) == _pairs(
        [study.trials[popped.number]], TrialState.FAIL
    )


def _claimed(study, storage, owner: str) -> int:
    """Pop a trial as a worker does (heartbeat, claim) for `owner` ('host:pid:start'); its number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = study.ask()
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    storage.record_heartbeat(trial_id)
    host, pid, _ = owner.rsplit(":", 2)
    trial.set_user_attr("claim", {"worker": f"{host}:{pid}:0", "trial": trial.number, "owner": owner})
    return trial.number


def _fake_runs(monkeypatch, tmp_path) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(
        runs,
        "run_variant",
        lambda params, **kw: (
            calls.append(params.train.seed) or runs.RunRecord(None, "h", tmp_path, False, {"val": {"mAP": 1.0}}, [])
        ),
    )
    return calls


def test_a_trial_of_a_dead_process_on_this_host_is_retried_at_once(tiny_store, tmp_path, monkeypatch, caplog):
    """Its owner (host, pid, start) is gone: no waiting for its heartbeat to go stale (here it
    would take 1200 s)."""
    p = _params(tiny_store, **{"studies.lambdas": [0.5], "studies.seeds": [0, 1], "studies.heartbeat_s": 600})
    url = _url(tmp_path)
    study, _ = create_study(LAMBDA_SENSITIVITY, p, url, "dead-here")
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = f"{socket.gethostname()}:{dead.pid}:{procs.process_start(dead.pid)}"
    dead.kill()
    dead.wait()
    _, storage = open_study(url, "dead-here", 600)
    number = _claimed(study, storage, owner)
    calls = _fake_runs(monkeypatch, tmp_path)
    caplog.set_level(logging.INFO, logger="cvls")
    with _deadline(60):
        res = run_worker(WorkerContext("lambda_sensitivity", p, url, "dead-here", None))
    assert sorted(calls) == [0, 1] and res.missing == []
    study, _ = open_study(url, "dead-here", 600)
    _assert_each_pair_once(study, LAMBDA_SENSITIVITY, p)
    assert study.trials[number].state == TrialState.FAIL
    assert f"trial {number}: its worker {owner} on this host is gone; retrying it now" in caplog.messages
    assert not [m for m in caplog.messages if m.startswith("waiting for")]


def test_a_trial_held_on_another_host_is_waited_out_with_one_line(tiny_store, tmp_path, monkeypatch, caplog):
    """Which trial, since when, held by whom, and how long at most; said once, then retried when
    its heartbeat goes stale (grace 2 s here)."""
    p = _params(tiny_store, **{"studies.lambdas": [0.5], "studies.seeds": [2], "studies.heartbeat_s": 1})
    url = _url(tmp_path)
    study, _ = create_study(LAMBDA_SENSITIVITY, p, url, "remote")
    _, storage = open_study(url, "remote", 1)
    number = _claimed(study, storage, "gpu-node-7:4242:123456")
    calls = _fake_runs(monkeypatch, tmp_path)
    caplog.set_level(logging.INFO, logger="cvls")
    with _deadline(60):
        res = run_worker(WorkerContext("lambda_sensitivity", p, url, "remote", None))
    assert calls == [2] and res.missing == []
    waits = [m for m in caplog.messages if m.startswith("waiting for")]
    assert len(waits) == 1, waits
    since = open_study(url, "remote", 1)[0].trials[number].datetime_start.strftime("%Y-%m-%d %H:%M:%S")
    assert re.fullmatch(
        rf"waiting for trial {number} \(0\.5 seed 2\), RUNNING since {since} on gpu-node-7:4242:123456: until it "
        r"finishes there or, if that worker is dead, at most [0-2] s more \(last heartbeat [0-2] s ago\); "
        r"then it is retried here",
        waits[0],
    ), waits[0]


def test_bad_storage_and_missing_store_are_one_line_errors(tiny_store, tmp_path):
    p = _params(tiny_store)
    with pytest.raises(UserError, match="bogus://nowhere"):
        run_study(RHIC_RATIO, p, storage="bogus://nowhere")
    with pytest.raises(UserError, match="not a database URL"):
        run_study(RHIC_RATIO, p, storage="just-a-name")
    with pytest.raises(UserError, match=r"postgresql://u:\*\*\*@127.0.0.1:1/db") as err:
        run_study(RHIC_RATIO, p, storage="postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value) and "\n" not in str(err.value)
    empty = p.replace(**{"paths.outputs": str(tmp_path / "nothing")})
    with pytest.raises(UserError, match="processed store not found"):
        run_study(RHIC_RATIO, empty, storage=_url(tmp_path))


# ---------------------------------------------------------------- killed, then resumed
def test_killed_study_resumes_each_point_once(tiny_store, tmp_path):
    p = _params(tiny_store, **{"studies.lambdas": [0.7, 0.9], "studies.seeds": [3]})
    url = _url(tmp_path)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        _script("lambda_sensitivity", p, tmp_path, url), stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path
    )
    deadline = time.time() + 120
    try:
        while True:  # kill it while the second trial runs, after the first is COMPLETE
            states = _states(tmp_path / "optuna.db")
            if states.count("COMPLETE") >= 1 and "RUNNING" in states:
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the study never reached one COMPLETE + one RUNNING trial"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        log.close()
    assert _states(tmp_path / "optuna.db").count("COMPLETE") == 1
    # restarted (here in-process): its killed trial's owner is gone from this host, so it is retried
    # at once (with a 600 s heartbeat, waiting for it to go stale would outlast the deadline)
    with _deadline(180):
        again = run_study(LAMBDA_SENSITIVITY, p.replace(**{"studies.heartbeat_s": 600}), storage=url)
    assert again.ok and again.enqueued == 0, again.problems
    study = _only_study(url)
    _assert_each_pair_once(study, LAMBDA_SENSITIVITY, p)
    (stale,) = [t for t in study.trials if t.state == TrialState.FAIL]  # the killed trial, marked stale...
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == stale.number]
    assert [t.state for t in retried] == [TrialState.COMPLETE]  # ...and retried once, to completion
    assert _pairs([stale], TrialState.FAIL) == _pairs(retried)
    # no MLflow run left RUNNING: whatever the killed trial had started was marked KILLED
    client = MlflowClient(tracking.tracking_uri(p))
    mine = client.search_runs([tracking.init_tracking(p)], f"tags.study = '{again.study_name}'")
    assert "RUNNING" not in {r.info.status for r in mine}
    assert {r.info.status for r in mine if r.data.tags.get("trial") == str(stale.number)} <= {"KILLED"}
    rows = list(csv.DictReader((p.outputs / "studies" / "lambda_sensitivity.csv").open()))
    assert sorted((r["point"], r["seed"]) for r in rows) == [("0.7", "3"), ("0.9", "3")]


# ---------------------------------------------------------------- concurrent workers
def test_concurrent_workers_run_each_point_once(tiny_store, tmp_path):
    """Two invocations at once on a fresh storage: a plain subprocess, and one with --n-jobs 2
    (two spawned worker processes)."""
    p = _params(tiny_store, **{"studies.lambdas": [0.6, 0.9], "studies.seeds": [4]})
    url = _url(tmp_path)
    other = subprocess.Popen(
        _script("lambda_sensitivity", p, tmp_path, url),
        env=_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with _deadline(240):
            mine = run_study(LAMBDA_SENSITIVITY, p, storage=url, n_jobs=2)
    finally:
        out = other.communicate(timeout=240)[0]
    assert other.returncode == 0, out[-3000:]
    assert mine.ok, mine.problems
    study = _only_study(url)
    _assert_each_pair_once(study, LAMBDA_SENSITIVITY, p)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    # every config trained exactly once: one FINISHED training run per config hash
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    hashes = {t.user_attrs["row"]["run_hash"] for t in complete}
    assert len(hashes) == len(complete) and not any(t.user_attrs["row"]["reused"] for t in complete)
    client = MlflowClient(tracking.tracking_uri(p))
    for h in hashes:
        trained = client.search_runs([tracking.init_tracking(p)], f"tags.`cvls.config_hash` = '{h}'")
        assert [r.info.status for r in trained] == ["FINISHED"], h
    info = json.loads((p.outputs / "studies" / "lambda_sensitivity.json").read_text())
    assert info["n_complete"] == 2 and all(s["mean_val_mAP"] is not None for s in info["points"])
    # each invocation counts what it trained itself and what the other trained meanwhile
    by_other = sum(t.user_attrs["claim"]["worker"].split(":")[1] == str(other.pid) for t in complete)
    assert (mine.info["trained_here"], mine.info["trained_elsewhere"]) == (2 - by_other, by_other)
    assert f"({by_other} trained here, 0 reused, {2 - by_other} trained elsewhere)" in out
