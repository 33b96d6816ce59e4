"""Training diagnostics (core/diagnostics.py, the loop's probe and val metrics): hand-computed
gradient shares, and a run that ends with the same weights with them on or off."""

from __future__ import annotations

import math

import pytest
import torch

from core.checkpoint import load_checkpoint, load_model, load_vocab
from core.data.dataset import FrameDataset
from core.data.store import open_split
from core.diagnostics import gradient_share_names, gradient_shares, shared_parameters
from core.losses import cvls_loss, cvls_terms
from core.metrics import summarize
from core.model import CVLS
from core.scoring import predict
from core.train import train

from .conftest import params_section
from .test_losses import TINY, make_batch


def two_losses() -> tuple[torch.nn.Parameter, torch.nn.Parameter, torch.Tensor, torch.Tensor]:
    """w = (1, 2), v = 0.5; a = 3·w0 + 4·w1, b = w0·w1 + v².
    ∇w a = (3, 4), |.| = 5; ∇w b = (w1, w0) = (2, 1), |.| = √5; ∇w a · ∇w b = 10.
    ∇v a = 0 (a does not reach v); ∇v b = 2v = 1."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    v = torch.nn.Parameter(torch.tensor([0.5]))
    return w, v, 3 * w[0] + 4 * w[1], w[0] * w[1] + v[0] ** 2


def test_gradient_shares_of_two_hand_differentiated_losses():
    w, v, a, b = two_losses()
    got = gradient_shares({"seg": a, "ccl": b}, {"w": [w], "v": [v]})
    assert set(got) == set(gradient_share_names(["w", "v"]))
    assert got["grad_w_seg"].item() == pytest.approx(5.0)
    assert got["grad_w_ccl"].item() == pytest.approx(math.sqrt(5.0))
    assert got["grad_w_seg_share"].item() == pytest.approx(5.0 / (5.0 + math.sqrt(5.0)))
    assert got["grad_w_cos"].item() == pytest.approx(10.0 / (5.0 * math.sqrt(5.0)))  # 2/√5
    # a group only one term reaches: share 0, cosine 0 (a zero gradient is orthogonal to all)
    assert got["grad_v_seg"].item() == 0.0 and got["grad_v_ccl"].item() == pytest.approx(1.0)
    assert got["grad_v_seg_share"].item() == 0.0 and got["grad_v_cos"].item() == 0.0
    assert all(not t.requires_grad for t in got.values())


def test_gradient_shares_leave_grad_alone_and_the_backward_that_follows_unchanged():
    w, v, a, b = two_losses()
    gradient_shares({"seg": a, "ccl": b}, {"w": [w], "v": [v]})
    assert w.grad is None and v.grad is None  # nothing accumulated
    (a + b).backward()  # the step's backward, on the retained graph
    assert torch.equal(w.grad, torch.tensor([5.0, 5.0])) and torch.equal(v.grad, torch.tensor([1.0]))


def test_gradient_shares_of_the_baseline_without_a_contrastive_term():
    w, _, a, _ = two_losses()
    got = gradient_shares({"seg": a}, {"w": [w]})
    assert got["grad_w_seg"].item() == pytest.approx(5.0) and got["grad_w_ccl"].item() == 0.0
    assert got["grad_w_seg_share"].item() == 1.0 and got["grad_w_cos"].item() == 0.0


def test_the_shared_groups_are_the_two_encoders_and_the_terms_add_up_to_the_step_gradient():
    torch.manual_seed(0)
    lp = params_section("loss")
    model = CVLS(TINY, lp, vocab_size=12)
    groups = shared_parameters(model)
    assert {id(p) for p in groups["visual"]} == {id(p) for p in model.visual.parameters()}
    assert {id(p) for p in groups["text"]} == {id(p) for p in model.text.parameters()}
    batch = make_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    terms, _ = cvls_terms(model, out, batch, lp)
    got = gradient_shares(terms, groups)
    total, _ = cvls_loss(model, out, batch, lp)
    total.backward()
    for name, params in groups.items():
        assert got[f"grad_{name}_seg"] > 0 and got[f"grad_{name}_ccl"] > 0, name  # both terms reach both
        # |g_seg + g_ccl|² = |g_seg|² + |g_ccl|² + 2 cos |g_seg||g_ccl|, with g_seg + g_ccl the step's gradient
        seg, ccl, cos = (got[f"grad_{name}_{k}"].double() for k in ("seg", "ccl", "cos"))
        step = torch.stack([p.grad.double().square().sum() for p in params]).sum()
        assert step.item() == pytest.approx((seg**2 + ccl**2 + 2 * cos * seg * ccl).item(), rel=1e-4), name


def test_diagnostics_on_end_with_the_same_weights_and_log_their_curves(tiny_store):
    """A probe every step and val metrics every epoch leave the run bit-identical to one without:
    same step gradients, no RNG drawn (the val scoring's DataLoader would draw one)."""
    base = {"train.deterministic": True, "train.epochs": 2, "train.seed": 21}
    off = tiny_store.replace(**base, **{"train.grad_share_every": 0, "train.val_metrics_every": 0})
    on = tiny_store.replace(**base, **{"train.grad_share_every": 1, "train.val_metrics_every": 1})
    runs = {name: train(p, force=True, tracking_enabled=False) for name, p in (("off", off), ("on", on))}
    weights = {k: load_checkpoint(r.run_dir / "model.pt")["model"] for k, r in runs.items()}
    assert weights["on"].keys() == weights["off"].keys()
    for k in weights["off"]:
        assert torch.equal(weights["on"][k], weights["off"][k]), k
    for a, b in zip(runs["on"].history, runs["off"].history):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    names = gradient_share_names(("visual", "text"))
    assert not set(names) & set(runs["off"].history[0]) and "val_mAP" not in runs["off"].history[0]
    for row in runs["on"].history:
        assert all(0.0 < row[f"grad_{g}_seg_share"] < 1.0 for g in ("visual", "text"))
        assert all(-1.0 <= row[f"grad_{g}_cos"] <= 1.0 and row[f"grad_{g}_ccl"] > 0 for g in ("visual", "text"))
    # the learning curve's last point is the finished model's val score, by evaluation's protocol
    model = load_model(on, runs["on"].run_dir / "model.pt", torch.device("cpu"))
    ds = FrameDataset(open_split(on.processed, "val"), load_vocab(on), on.data)
    rows = predict(model, ds, on, torch.device("cpu"), desc="val")
    final = summarize([r["inter"] for r in rows], [r["union"] for r in rows])
    assert runs["on"].history[-1]["val_mAP"] == final["mAP"]
    assert runs["on"].history[-1]["val_mean_iou"] == final["mean_iou"]


def test_epochs_without_a_probe_or_a_val_score_log_nan(tiny_store):
    p = tiny_store.replace(
        **{"train.epochs": 2, "train.seed": 22, "train.grad_share_every": 1000, "train.val_metrics_every": 2}
    )
    first, second = train(p, force=True, tracking_enabled=False).history
    assert first["grad_visual_seg"] > 0 and math.isnan(second["grad_visual_seg"])  # step 0 is probed, no other
    assert math.isnan(first["val_mAP"]) and not math.isnan(second["val_mAP"])
