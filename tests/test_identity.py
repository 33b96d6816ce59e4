"""One identity rule (core.identity): every identity leaves out the same operational keys and
changes with every other key in its scope; two machines that differ only in operational keys
share one queue and each other's runs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from mlflow import MlflowClient

from core import tracking
from core.ablation import run_suite
from core.checkpoint import load_vocab
from core.config import Params, load_params
from core.identity import OPERATIONAL, RUN, config_hash, identity
from core.loop import clip_loader
from core.pretext import PRETEXT
from core.runs import run_variant
from core.runtime import Dist
from core.study import ABLATION, KINDS, base_params, study_name
from core.train import run_fingerprint

from .conftest import ROOT

DEFAULT = load_params(ROOT / "params.yaml")

# a valid other value for the keys whose type alone does not give one
OTHER: dict[str, Any] = {
    "data.source": {"data.source": "real", "data.a2d_root": "/data/a2d_sentences"},
    "data.dataset": "ytvos",
    "data.a2d_root": "/mnt/a2d",
    "data.jhmdb_root": "/mnt/jhmdb",
    "data.ytvos_root": "/mnt/ytvos",
    "data.mevis_root": "/mnt/mevis",
    "data.synthetic.height": 66,  # even: H.264 yuv420p
    "data.synthetic.width": 82,
    "data.allow_skip": ["missing_video"],
    "model.backbone": "resnet18",
    "model.backbone_widths": [32, 64, 128, 512],
    "model.init": "scratch",
    # a path only with init imagenet: the same init on both sides, another file
    "model.pretrained_weights": (
        {"model.init": "imagenet", "model.backbone_widths": None, "model.pretrained_weights": "/w/a.pth"},
        {"model.init": "imagenet", "model.backbone_widths": None, "model.pretrained_weights": "/w/b.pth"},
    ),
    "model.fusion": "product",
    "model.merge": "conv",
    "loss.seg_reduction": "mean",
    "loss.rhic_ratio": "1:2",
    "train.lr_schedule": "plateau",
    "train.grad_clip": 1.0,
    "train.device": "cpu",
    "train.cpu_bf16": True,
    "train.max_steps_per_epoch": 5,
    "tracking.uri": "sqlite:////tmp/elsewhere/mlflow.db",
    "tracking.experiment": "another",
    "ablation.seeds": [0],
    "studies.storage": "sqlite:////tmp/elsewhere/optuna.db",
    "studies.seeds": [1],
    "studies.rhic_ratios": ["1:5", "1:3"],
    "studies.lambdas": [0.5, 0.8],
    "report.confidence": 0.9,
    "report.primary": "vs_baseline",
    "report.primary_metric": "mean_iou",
    "report.power": 0.9,
    "calibration.variant": "CCL",
    "paths.outputs": "elsewhere",
}


def pair(key: str, value: Any) -> tuple[Params, Params]:
    """DEFAULT (or a variant of it) and a copy with `key` changed to another valid value."""
    other = OTHER.get(key)
    if isinstance(other, tuple):
        return DEFAULT.replace(**other[0]), DEFAULT.replace(**other[1])
    if other is None:
        if isinstance(value, bool):
            other = not value
        elif isinstance(value, int):
            other = value + 1
        elif isinstance(value, float):
            other = value / 2 if value else 0.5
    changes = other if isinstance(other, dict) else {key: other}
    return DEFAULT, DEFAULT.replace(**changes)


def operational(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL)


def within(key: str, scope: tuple[str, ...]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in scope)


def queue_varies(kind_name: str) -> tuple[str, ...]:
    """The keys a queue's trials set (never part of its name): the swept key or the variants'
    switches, the seed; the sweeps train the full model whatever the loss switches say."""
    switches = ("loss.ccl", "loss.rhic", "loss.lcf")
    kind = KINDS[kind_name]
    return (*switches, "train.seed") + ((kind.key,) if kind.sweeps_full_model else ())


@pytest.mark.parametrize("key", list(DEFAULT.flat()))
def test_every_key_but_the_operational_ones_changes_the_identities_that_read_it(key):
    before, after = pair(key, DEFAULT.flat()[key])
    assert after.flat()[key] != before.flat()[key]
    changed = not operational(key)
    assert (identity(after) != identity(before)) == changed  # the whole params' identity
    assert (config_hash(after, "fp") != config_hash(before, "fp")) == (changed and within(key, RUN))
    assert (identity(after, PRETEXT) != identity(before, PRETEXT)) == (changed and within(key, PRETEXT))
    for name, kind in KINDS.items():
        scope = RUN if kind.sweeps_full_model else (*RUN, "ablation.variants")
        expected = changed and within(key, scope) and not within(key, queue_varies(name))
        queue = [study_name(kind, base_params(kind, p), "fp") for p in (before, after)]
        assert (queue[0] != queue[1]) == expected, name


def test_the_operational_list_names_params_keys_and_the_hash_is_sha256_of_sorted_json():
    flat = DEFAULT.flat()
    for key in OPERATIONAL:
        assert any(k == key or k.startswith(key + ".") for k in flat), key
    loss = DEFAULT.to_dict()["loss"]
    blob = json.dumps({"params": {"loss": loss}, "fingerprint": "x"}, sort_keys=True).encode()
    assert identity(DEFAULT, ("loss",), extra={"fingerprint": "x"}) == hashlib.sha256(blob).hexdigest()[:16]
    assert DEFAULT.digest(("loss",)) == identity(DEFAULT, ("loss",))
    with pytest.raises(KeyError, match="no params key: loss.nope"):
        identity(DEFAULT, ("loss.nope",))


def test_config_hash_tracks_only_model_determining_sections(tmp_path):
    base = load_params(ROOT / "params.yaml", [f"paths.outputs={tmp_path}"])
    h = config_hash(base, "fp")
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    # the run's identity under the suite's one rule (the tests above test the rule)
    assert h == identity(base, RUN, extra={"data_fingerprint": "fp"})
    assert config_hash(base, "fp") == h
    assert config_hash(base, "other-fp") != h
    changed = [
        ("loss.lcf", not base.loss.lcf),
        ("loss.rhic_ratio", "7:1"),
        ("model.channels", base.model.channels * 2),
        ("train.lr", base.train.lr * 3),
        ("data.clip_frames", base.data.clip_frames + 1),
        ("eval.threshold", 0.37),
    ]
    for key, value in changed:
        assert config_hash(base.replace(**{key: value}), "fp") != h, key
    for key, value in [
        ("tracking.experiment", "x"),
        ("tracking.uri", "sqlite:////tmp/x.db"),
        ("report.simulations", 500),
        ("ablation.seeds", [7]),
        ("studies.n_jobs", 3),
        ("paths.outputs", str(tmp_path / "elsewhere")),
        ("data.extract_workers", 0),
    ]:
        assert config_hash(base.replace(**{key: value}), "fp") == h, key


def test_the_run_and_the_queues_follow_the_start_weights(tiny_store, tmp_path):
    """The run fingerprint (data + start weights) is in the run hash and in every queue name: a
    retrained backbone starts new runs and new queues."""
    p = tiny_store.replace(**{"paths.outputs": str(tmp_path)})
    shutil.copytree(tiny_store.processed, p.processed)
    p.pretext_weights.parent.mkdir(parents=True)
    p.pretext_weights.write_bytes(b"weights one")
    first = (run_fingerprint(p), study_name(ABLATION, p, run_fingerprint(p)))
    p.pretext_weights.write_bytes(b"weights two")
    second = (run_fingerprint(p), study_name(ABLATION, p, run_fingerprint(p)))
    assert first[0] != second[0] and first[1] != second[1]


def test_loader_workers_are_no_operational_key_they_change_the_clips_drawn(tiny_store):
    """train.num_workers decides which augmentation each clip draws (a worker's RNG is its own),
    so it stays in the run's identity, unlike extract_workers."""
    vocab = load_vocab(tiny_store)

    def first_batch(workers: int) -> torch.Tensor:
        torch.manual_seed(0)
        p = tiny_store.replace(**{"train.num_workers": workers})
        return next(iter(clip_loader(p, "train", vocab, True, 0, Dist())))["frames"]

    assert torch.equal(first_batch(0), first_batch(0))  # the same draws for the same setting
    assert not torch.equal(first_batch(0), first_batch(1))
    assert not operational("train.num_workers") and operational("data.extract_workers")


TWO_ROWS = {
    "Baseline": {"ccl": False, "rhic": False, "lcf": False},
    "CCL+RHIC+LCF": {"ccl": True, "rhic": True, "lcf": True},
}


def _machine(tiny_store: Params, folder: Path, shared: Path, **operational_keys: Any) -> Params:
    """A machine's own outputs (a copy of the store and the backbone) on the shared MLflow and
    Optuna databases; the same quick two-row Table 3 on every machine."""
    for part in ("processed", "pretrain"):
        shutil.copytree(tiny_store.outputs / part, folder / part)
    same = {"train.epochs": 1, "train.max_steps_per_epoch": 2, "ablation.seeds": [0], "ablation.variants": TWO_ROWS}
    same |= {"tracking.uri": f"sqlite:///{shared}/mlflow.db", "studies.storage": f"sqlite:///{shared}/optuna.db"}
    return tiny_store.replace(**{**same, "paths.outputs": str(folder), **operational_keys})


def _training_runs(p: Params) -> dict[str, list[str]]:
    """config hash -> the ids of the training runs with it (reference runs carry no hash)."""
    client = MlflowClient(tracking.tracking_uri(p))
    runs = client.search_runs([tracking.init_tracking(p)], "tags.`cvls.config_hash` != ''", max_results=100)
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(r.data.tags["cvls.config_hash"], []).append(r.info.run_id)
    return out


def test_two_machines_differing_in_operational_keys_share_the_queue_and_the_runs(tiny_store, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    a = _machine(tiny_store, tmp_path / "a", shared, **{"data.extract_workers": 1, "eval.batch_size": 8})
    b = _machine(
        tiny_store,
        tmp_path / "b",
        shared,
        **{"data.extract_workers": 0, "eval.batch_size": 3, "ablation.n_jobs": 3, "studies.heartbeat_s": 7},
        **{"report.simulations": 300, "report.confidence": 0.9, "data.a2d_root": "/mnt/b/a2d"},
    )
    assert a.digest(("data", "eval")) == b.digest(("data", "eval"))
    main = run_variant(a, name="main")  # machine a: the main run (the full model, seed 0)
    assert not main.reused
    rows_b = {variant: rec for variant, _, rec in run_suite(b, n_jobs=1)[0]}  # machine b works the queue
    assert rows_b["CCL+RHIC+LCF"].reused and rows_b["CCL+RHIC+LCF"].run_id == main.run_id  # a's run
    assert not rows_b["Baseline"].reused  # trained by b
    trained = _training_runs(a)
    tags = MlflowClient(tracking.tracking_uri(a)).get_run(main.run_id).data.tags
    assert tags["cvls.profiles"] == "profiles/tiny.yaml"  # the layers the params came from
    assert trained == {main.run_hash: [main.run_id], rows_b["Baseline"].run_hash: [rows_b["Baseline"].run_id]}
    rows_a = {variant: rec for variant, _, rec in run_suite(a, n_jobs=1)[0]}  # a joins the same queue: all done
    assert _training_runs(a) == trained  # nothing trained again
    assert {v: (r.run_id, r.run_hash) for v, r in rows_a.items()} == {
        v: (r.run_id, r.run_hash) for v, r in rows_b.items()
    }
    assert (rows_a["Baseline"].run_dir / "eval" / "metrics.json").is_file()  # b's run, fetched to a's outputs
    (queue,) = optuna.get_all_study_summaries(f"sqlite:///{shared}/optuna.db")
    names = {study_name(ABLATION, p, run_fingerprint(p)) for p in (a, b)}
    assert names == {queue.study_name}


def test_a_run_under_torchrun_is_another_run_than_one_process(tiny_store, monkeypatch):
    """Each torchrun process trains train.batch_size clips a step: 2 processes train with twice
    the batch, so their run has its own identity; one process keeps the identity it always had."""
    one = run_fingerprint(tiny_store)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert run_fingerprint(tiny_store) == one
    monkeypatch.setenv("WORLD_SIZE", "2")
    two = run_fingerprint(tiny_store)
    assert two != one and two.startswith(one)
    assert config_hash(tiny_store, two) != config_hash(tiny_store, one)
