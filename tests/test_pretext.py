import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

import core.pretext as pretext
from core.backbone import build_backbone
from core.checkpoint import load_vocab
from core.errors import UserError
from core.loop import clip_loader
from core.runtime import Dist
from core.train import run_fingerprint

from .conftest import tiny_params


def test_cross_frame_nce_equals_a_hand_computation():
    tau = 0.5
    # two clips, one instance each, the same embedding in both frames; clip 0 along x, clip 1 along y
    z = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]], [[[0.0, 1.0]], [[0.0, 1.0]]]])  # [B=2,T=2,K=1,D=2]
    valid = torch.ones(2, 2, 1, dtype=torch.bool)
    expected = math.log(1 + math.exp(-1 / tau))  # logits [[1/τ, 0], [0, 1/τ]], every row and column alike
    assert pretext.cross_frame_nce(z, valid, tau).item() == pytest.approx(expected, rel=1e-6)

    # an invalid instance (padding, or absent in a frame) is neither anchor nor negative
    pad = F.normalize(torch.tensor([1.0, 0.1]), dim=0)
    z3 = torch.cat([z, pad.expand(2, 2, 1, 2)], dim=2)  # K=2, slot 1 invalid everywhere
    valid3 = torch.cat([valid, torch.zeros(2, 2, 1, dtype=torch.bool)], dim=2)
    assert pretext.cross_frame_nce(z3, valid3, tau).item() == pytest.approx(expected, rel=1e-6)
    # a single frame has no pairs: 0, and still differentiable
    zero = pretext.cross_frame_nce(z[:, :1].requires_grad_(), valid[:, :1], tau)
    assert zero.item() == 0.0 and zero.requires_grad


def epoch_steps(p) -> int:
    """Batches in one pretext epoch: the training loader at the pretext's batch size."""
    loader_params = p.replace(**{"train.batch_size": p.pretrain.batch_size})
    return len(clip_loader(loader_params, "train", load_vocab(p), True, 0, Dist()))


def test_pretext_leaves_a_torchvision_backbone_and_is_reused(tiny_store):
    p = tiny_store  # conftest ran pretrain() once
    summary = json.loads((p.pretext_weights.parent / "summary.json").read_text())
    n, steps = epoch_steps(p), p.pretrain.steps
    # the suite's one loop: a history row (and a checkpoint) per epoch, the last one cut at pretrain.steps
    assert [h["step"] for h in summary["history"]] == [min(k * n, steps) for k in range(1, math.ceil(steps / n) + 1)]
    assert all(math.isfinite(h["train_objectness"]) and math.isfinite(h["train_identity"]) for h in summary["history"])
    net = build_backbone(p.model.backbone, p.pretext_weights, p.model.backbone_widths)  # the ImageNet loading path
    state = torch.load(p.pretext_weights, weights_only=True)
    assert net.pretrained and torch.equal(net.body.conv1.weight, state["conv1.weight"])
    again = pretext.pretrain(p)  # same config and data: reused, nothing trained
    assert again["run_id"] == summary["run_id"]
    # an operational key is not part of the identity; a data key is
    assert pretext.pretext_hash(p.replace(**{"data.extract_workers": 0})) == pretext.pretext_hash(p)
    assert pretext.pretext_hash(p.replace(**{"data.clip_frames": 1})) != pretext.pretext_hash(p)
    assert pretext.pretext_hash(p.replace(**{"train.cpu_bf16": True})) != pretext.pretext_hash(p)  # its numbers
    assert pretext.pretext_hash(p.replace(**{"train.lr": 0.1})) == pretext.pretext_hash(p)  # not its keys
    for widths in ([16, 32, 64, 128], None):  # what it trains
        assert pretext.pretext_hash(p.replace(**{"model.backbone_widths": widths})) != pretext.pretext_hash(p)
    assert pretext.pretext_hash(p.replace(**{"model.merge": "conv"})) != pretext.pretext_hash(p)  # its F


def test_a_killed_pretext_resumes_from_its_checkpoint(tiny_store, tmp_path, monkeypatch):
    n = epoch_steps(tiny_store)
    p = tiny_params(tmp_path / "out", **{"pretrain.steps": 2 * n + 1})  # three epochs, the last of one step
    shutil.copytree(tiny_store.processed, p.processed)
    calls = {"n": 0}
    real = pretext.pretext_loss

    def dies_in_epoch_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n + 1:
            raise KeyboardInterrupt  # a kill after the first epoch's checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(pretext, "pretext_loss", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        pretext.pretrain(p)
    assert not p.pretext_weights.exists()
    calls["n"] = -100  # no more kills
    summary = pretext.pretrain(p)
    assert calls["n"] == -100 + n + 1  # epochs 2 and 3 only: epoch 1 came from the checkpoint
    assert [h["step"] for h in summary["history"]] == [n, 2 * n, 2 * n + 1]
    # and it ends with the weights of an uninterrupted pretext (same loop as every training run)
    monkeypatch.setattr(pretext, "pretext_loss", real)
    whole = tiny_params(tmp_path / "whole", **{"pretrain.steps": 2 * n + 1})
    shutil.copytree(tiny_store.processed, whole.processed)
    pretext.pretrain(whole)
    resumed, uninterrupted = (torch.load(q.pretext_weights, weights_only=True) for q in (p, whole))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert run_fingerprint(p) == run_fingerprint(whole)  # equal weights: the runs after it keep their identity


def test_other_inits_skip_the_pretext_and_missing_weights_are_one_line_errors(tiny_store, tmp_path):
    p = tiny_params(tmp_path / "out", **{"model.init": "scratch"})
    assert "no pretext needed" in pretext.pretrain(p)["skipped"]
    missing = tiny_params(tmp_path / "out2")
    shutil.copytree(tiny_store.processed, missing.processed)
    with pytest.raises(UserError, match="pretext backbone not found; run the pretext stage first") as err:
        run_fingerprint(missing)
    assert "\n" not in str(err.value)


def test_run_identity_follows_the_start_weights(tiny_store, tmp_path):
    p = tiny_params(tmp_path / "out")
    shutil.copytree(tiny_store.processed, p.processed)
    shutil.copytree(tiny_store.pretext_weights.parent, p.pretext_weights.parent)
    before = run_fingerprint(p)
    state = torch.load(p.pretext_weights, weights_only=True)
    state["conv1.weight"] += 1.0  # e.g. the pretext retrained with other params
    torch.save(state, p.pretext_weights)
    assert run_fingerprint(p) != before
    assert run_fingerprint(p.replace(**{"model.init": "scratch"})).split("+")[0] == before.split("+")[0]
