"""Training: resume equals uninterrupted, config-hash reuse, NaN stop, MLflow run contents."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from mlflow import MlflowClient

from core import tracking
from core import train as train_mod
from core.checkpoint import load_checkpoint
from core.evaluate import evaluate_run
from core.hooks import cosine_lr
from core.loop import Diverged
from core.metrics import grounding, summarize
from core.results import EVAL_FILES, read_per_sample
from core.runtime import native_cpu_bf16
from core.strata import strata_metrics
from core.train import train

from .conftest import ROOT


def _weights(run_dir):
    return load_checkpoint(run_dir / "model.pt")["model"]


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_killed_run_resumes_to_the_same_weights(tiny_store, monkeypatch, schedule):
    p = tiny_store.replace(
        **{
            "train.deterministic": True,
            "train.epochs": 3,
            "train.seed": 11,
            "train.lr_schedule": schedule,
            "train.warmup_steps": 3,
        }
    )
    reference = train(p, force=True, tracking_enabled=False)
    expected = _weights(reference.run_dir)

    real_loss, calls = train_mod.cvls_loss, []

    def killed_mid_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # tiny profile: 5 steps per epoch, so this is inside epoch 2
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_mod, "cvls_loss", killed_mid_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(p, force=True, tracking_enabled=False)
    assert not (reference.run_dir / "model.pt").exists()
    assert load_checkpoint(reference.run_dir / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(train_mod, "cvls_loss", real_loss)
    resumed = train(p, tracking_enabled=False)
    got = _weights(resumed.run_dir)
    assert resumed.run_dir == reference.run_dir and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), k


def test_a_cosine_run_follows_its_curve_and_ends_near_zero(tiny_store):
    p = tiny_store.replace(**{"train.seed": 13, "train.lr_schedule": "cosine", "train.warmup_steps": 2})
    h = train(p, force=True, tracking_enabled=False).history
    total = int(h[-1]["step"])
    assert p.train.epochs == len(h) == 2 and total == 2 * int(h[0]["step"])
    # the history's lr is the one the epoch's last step ran at
    assert [r["lr"] for r in h] == pytest.approx([cosine_lr(int(r["step"]) - 1, total, p.train.lr, 2) for r in h])
    assert h[-1]["lr"] < 0.05 * p.train.lr


def test_a_config_seen_twice_trains_once(tiny_store, monkeypatch):
    p = tiny_store.replace(**{"train.seed": 12})
    first = train(p, name="twice")
    fits = []
    monkeypatch.setattr(train_mod, "fit_cvls", lambda *a, **k: fits.append(1) or [])
    second = train(p, name="twice")
    assert second.reused and second.run_id == first.run_id and fits == []
    client = MlflowClient(tracking.tracking_uri(p))
    runs = client.search_runs([tracking.init_tracking(p)], f"tags.`cvls.config_hash` = '{first.run_hash}'")
    assert len(runs) == 1
    monkeypatch.undo()
    forced = train(p, name="twice", force=True)
    assert not forced.reused and forced.run_id != first.run_id


def test_run_contents_read_back_through_mlflow(tiny_store):
    p = tiny_store.replace(**{"train.seed": 13})
    result = train(p, name="CCL+RHIC+LCF", tags={"suite": "test"})
    metrics = evaluate_run(p, result.run_dir, result.run_id)
    client = MlflowClient(tracking.tracking_uri(p))
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert set(run.data.params) == {tracking.mlflow_name(k) for k in p.flat()}
    assert run.data.params["loss.lambda_seg"] == "0.8"
    tags = run.data.tags
    assert tags["variant"] == "CCL+RHIC+LCF" and tags["seed"] == "13" and tags["cvls.config_hash"] == result.run_hash
    fingerprint = json.loads((p.processed / "summary.json").read_text())["fingerprint"]
    assert tags["dataset_fingerprint"] == fingerprint
    assert (
        tags["pretrained_backbone"] == "true" and tags["backbone_init"] == "pretext"
    )  # the tiny profile runs the pretext
    assert tags["cvls.git_commit"] and tags["cvls.data_source"] == "synthetic"
    # the environment that decides the floating-point results, in MLflow and in run.json
    env = json.loads((result.run_dir / "run.json").read_text())["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] == str(torch.get_num_threads()) and env["cpu"]
    assert {k: tags[tracking.TAG_ENV + k] for k in env} == env and "gpu" not in env  # CPU run
    history = client.get_metric_history(result.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, p.train.epochs + 1))
    assert run.data.metrics["test/mAP"] == metrics["test"]["mAP"]
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "eval")}
    assert artifacts == {f"eval/{name}" for name in EVAL_FILES}
    bounds = json.loads((result.run_dir / "eval" / "bounds.json").read_text())
    strata = json.loads((result.run_dir / "eval" / "strata.json").read_text())
    assert run.data.metrics["bound/oracle/test/mAP"] == bounds["test"]["oracle"]["mAP"]
    assert run.data.metrics["bound/language_blind/test/P_at_0.5"] == bounds["test"]["language_blind"]["P@0.5"]
    attribute = next(k for k in strata["test"] if k.startswith("attribute="))
    metric = f"strata/test/{attribute.replace('=', '_')}/mean_iou"
    assert run.data.metrics[metric] == strata["test"][attribute]["mean_iou"]
    assert "config/params.resolved.yaml" in {a.path for a in client.list_artifacts(result.run_id, "config")}


def test_per_sample_ious_reproduce_the_metrics(tiny_store):
    p = tiny_store.replace(**{"train.seed": 13})
    result = train(p, name="CCL+RHIC+LCF", tags={"suite": "test"})
    metrics = evaluate_run(p, result.run_dir, result.run_id)
    rows = read_per_sample(result.run_dir / "eval" / "per_sample.csv")
    for split in ("test", "jhmdb", "test_shuffled"):
        mine = [r for r in rows if r["split"] == split]
        expected = summarize([r["inter"] for r in mine], [r["union"] for r in mine])
        expected |= grounding([r["iou"] for r in mine], [r["other_iou"] for r in mine])
        assert expected == metrics[split]
    assert "grounding" in metrics["test"] and "grounding" not in metrics["jhmdb"]  # J-HMDB: one actor a frame
    assert {"val", "test", "jhmdb", "test_shuffled"} <= set(metrics)
    # the strata columns arrive typed, and strata.json summarises exactly those rows
    strata = json.loads((result.run_dir / "eval" / "strata.json").read_text())
    mine = [r for r in rows if r["split"] == "test"]
    assert {r["distractor"] for r in mine} <= {0, 1} and all(r["attribute"] for r in mine)
    assert strata["test"] == strata_metrics(mine)
    assert all(r["distractor"] is None for r in rows if r["split"] == "jhmdb")  # its layout masks one actor


def test_nan_loss_stops_the_run_and_marks_it_failed(tiny_store, monkeypatch):
    p = tiny_store.replace(**{"train.seed": 14})
    real_loss = train_mod.cvls_loss

    def nan_loss(*args, **kwargs):
        loss, parts = real_loss(*args, **kwargs)
        return loss * float("nan"), parts

    monkeypatch.setattr(train_mod, "cvls_loss", nan_loss)
    with pytest.raises(Diverged, match="NaN/inf in epoch 1"):
        train(p, name="nan")
    client = MlflowClient(tracking.tracking_uri(p))
    runs = client.search_runs([tracking.init_tracking(p)], "tags.variant = 'nan'")
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "NaN/inf" in runs[0].data.tags["error"]


def test_a_config_trained_in_two_processes_gives_the_same_weights_bitwise(tiny_store, tmp_path):
    """The default (train.deterministic false) on CPU: one environment, one config and seed give
    the same weights bit for bit, whatever the process's hash seed (set and dict order): what
    makes a row reproducible where it was trained (the report states each run's environment)."""
    import os

    from .conftest import TINY

    weights = []
    for hash_seed in ("1", "2"):
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONHASHSEED": hash_seed}
        out = tmp_path / f"out{hash_seed}"
        args = ["--set", TINY, "--set", f"paths.outputs={tiny_store.outputs}", "--set", "train.seed=17"]
        args += ["--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow{hash_seed}.db", "--force", "--out", str(out)]
        r = subprocess.run(
            [sys.executable, "-m", "core.train", *args], capture_output=True, text=True, cwd=ROOT, env=env
        )
        assert r.returncode == 0, r.stderr[-2000:]
        weights.append(_weights(tiny_store.outputs / "runs" / json.loads((out / "run.json").read_text())["run_hash"]))
        weights[-1] = {k: v.clone() for k, v in weights[-1].items()}  # the second run rewrites the same folder
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


@pytest.mark.skipif(not native_cpu_bf16(), reason="this CPU has no native bf16")
def test_cpu_bf16_trains_evaluates_and_is_its_own_config(tiny_store):
    """train.cpu_bf16: the same loop and evaluation under CPU bf16 autocast and channels_last;
    it changes the numbers, so it is a different run (config hash), never a reuse of the fp32 one."""
    p = tiny_store.replace(**{"train.seed": 18, "train.cpu_bf16": False})
    fp32 = train(p, tracking_enabled=False)
    bf16 = train(p.replace(**{"train.cpu_bf16": True}), tracking_enabled=False)
    assert bf16.run_hash != fp32.run_hash and not bf16.reused
    a, b = _weights(fp32.run_dir), _weights(bf16.run_dir)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the bf16 path ran: other numbers
    metrics = evaluate_run(p.replace(**{"train.cpu_bf16": True}), bf16.run_dir, None, tracking_enabled=False)
    rows = read_per_sample(bf16.run_dir / "eval" / "per_sample.csv")
    test = [r for r in rows if r["split"] == "test"]
    assert metrics["test"]["mAP"] == pytest.approx(
        summarize([r["inter"] for r in test], [r["union"] for r in test])["mAP"]
    )
    assert all(math.isfinite(h["train_loss"]) for h in bf16.history)


def test_missing_store_is_a_one_line_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "core.train", "--set", f"paths.outputs={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "processed store not found" in r.stderr and "Traceback" not in r.stderr


def test_torchrun_ddp_on_cpu(tiny_store, tmp_path):
    """The DDP path (gloo on CPU): two ranks train one run; rank 0 alone writes and logs it."""
    import os

    from .conftest import TINY

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "core.train",
            "--set",
            TINY,
            "--set",
            f"paths.outputs={tiny_store.outputs}",
            "--set",
            "train.seed=15",
            "--set",
            "train.epochs=1",
            "--name",
            "ddp",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    p = tiny_store.replace(**{"train.seed": 15, "train.epochs": 1})
    client = MlflowClient(tracking.tracking_uri(p))
    runs = client.search_runs([tracking.init_tracking(p)], "tags.variant = 'ddp'")
    assert [r.info.status for r in runs] == ["FINISHED"]  # one run, logged once (rank 0)
    run_dir = p.outputs / "runs" / runs[0].data.tags["cvls.config_hash"]
    assert (run_dir / "model.pt").is_file() and len(load_checkpoint(run_dir / "checkpoint.pt")["history"]) == 1


def _other_machine(p, folder):
    """Another machine: its own outputs with a copy of the store and the backbone, the same tracking."""
    import shutil

    for part in ("processed", "pretrain"):
        shutil.copytree(p.outputs / part, folder / part)
    return p.replace(**{"paths.outputs": str(folder)})


def test_a_run_trained_on_another_machine_is_reused_through_the_tracking_store(tiny_store, tmp_path):
    from core.runs import run_variant

    quick = {"train.epochs": 1, "train.max_steps_per_epoch": 2, "train.seed": 21}
    a = tiny_store.replace(**{**quick, "tracking.uri": f"sqlite:///{tmp_path / 'shared.db'}"})
    first = run_variant(a, name="A")
    b = _other_machine(a, tmp_path / "b")
    again = run_variant(b, name="B")
    assert again.reused and again.run_id == first.run_id and again.run_hash == first.run_hash
    assert again.run_dir != first.run_dir and not (again.run_dir / "model.pt").exists()  # weights stay on A
    assert again.metrics == first.metrics and again.history == first.history
    assert again.per_sample() == first.per_sample()
    for name in EVAL_FILES:
        assert (again.run_dir / "eval" / name).read_bytes() == (first.run_dir / "eval" / name).read_bytes()
    client = MlflowClient(tracking.tracking_uri(a))
    runs = client.search_runs([tracking.init_tracking(a)], f"tags.`cvls.config_hash` = '{first.run_hash}'")
    assert [r.info.run_id for r in runs] == [first.run_id]  # trained once for both machines


def test_a_run_not_yet_evaluated_elsewhere_is_trained_here(tiny_store, tmp_path):
    quick = {"train.epochs": 1, "train.max_steps_per_epoch": 2, "train.seed": 22}
    a = tiny_store.replace(**{**quick, "tracking.uri": f"sqlite:///{tmp_path / 'shared.db'}"})
    first = train(a, name="A")  # FINISHED, but its evaluation has not run (no eval/ artifacts)
    b = _other_machine(a, tmp_path / "b")
    here = train(b, name="B")
    assert not here.reused and here.run_id != first.run_id and (here.run_dir / "model.pt").is_file()
