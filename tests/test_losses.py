"""Eqs. 1-4 and 6-7 (core/losses.py) against hand computations and explicit loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from core.losses import (
    contrastive_loss,
    cvls_loss,
    cvls_terms,
    info_nce,
    instance_features,
    referent_masks,
    region_weights,
    rhic_select,
    segmentation_loss,
)
from core.model import CVLS

from .conftest import params_section

torch.set_num_threads(1)

# params.yaml's model section, shrunk; resnet18 from random init (the weights tests save resnet18 files)
TINY = params_section(
    "model", backbone="resnet18", init="scratch", freeze_at=0, channels=16, lstm_hidden=16, proj_hidden=32, proj_dim=8
)


def make_batch(b: int = 2, t: int = 3, k: int = 3, s: int = 32, vocab: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(b, t, k, s, s)
    masks[:, :, 0, 2:12, 3:14] = 1
    masks[:, :, 1, 16:28, 4:12] = 1
    masks[:, :, 2, 18:30, 18:30] = 1
    masks[0, 1, 1] = 0  # object 1 leaves clip 0 in frame 1
    masks[1, 2] = 0  # clip 1 has only two frames: frame 2 is padding
    return {
        "frames": torch.randn(b, t, 3, s, s, generator=g),
        "tokens": torch.tensor([[2, 5, 7, 0, 0], [3, 4, 9, 11, 6]][:b]),
        "lengths": torch.tensor([3, 5][:b]),
        "masks": masks,
        "present": masks.flatten(3).any(-1),
        "referent": torch.tensor([1, 2][:b]),
        "frame_valid": torch.tensor([[True, True, True], [True, True, False]])[:b, :t],
    }


# ----------------------------------------------------------------------------- Eq. 2


def test_info_nce_matches_hand_computation():
    tau = 0.5
    anchor = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    positives = torch.tensor(
        [[[0.8, 0.6, 0.0], [0.0, 0.6, 0.8], [5.0, 5.0, 5.0]], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    )
    pos_valid = torch.tensor([[True, True, False], [False, False, False]])  # clip 1 has no positive
    negatives = torch.tensor(
        [[[0.6, 0.8, 0.0], [-1.0, 0.0, 0.0], [9.0, 9.0, 9.0]], [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]
    )
    neg_valid = torch.tensor([[True, True, False], [True, True, True]])
    # clip 0: s·z_p = 0.8, 0.0 ; s·z_n = 0.6, -1.0
    negsum = math.exp(0.6 / tau) + math.exp(-1.0 / tau)
    l1 = -math.log(math.exp(0.8 / tau) / (math.exp(0.8 / tau) + negsum))
    l2 = -math.log(math.exp(0.0 / tau) / (math.exp(0.0 / tau) + negsum))
    expected = (l1 + l2) / 2  # the positive-less clip contributes nothing
    got = info_nce(anchor, positives, pos_valid, negatives, neg_valid, tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)

    # both clips with positives: mean over clips of their mean over positives
    pos_valid2 = torch.tensor([[True, True, False], [True, False, False]])
    l3 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 3 * math.exp(1 / tau)))
    got2 = info_nce(anchor, positives, pos_valid2, negatives, neg_valid, tau)
    assert got2.item() == pytest.approx((expected + l3) / 2, rel=1e-6)


def test_info_nce_is_stable_and_finite_at_the_edges():
    anchor = F.normalize(torch.randn(2, 4), dim=-1).requires_grad_(True)
    pos = F.normalize(torch.randn(2, 2, 4), dim=-1).requires_grad_(True)
    neg = F.normalize(torch.randn(2, 3, 4), dim=-1).requires_grad_(True)
    # tiny temperature: exp(1/1e-3) overflows float32, the logsumexp form must not
    loss = info_nce(anchor, pos, torch.ones(2, 2, dtype=torch.bool), neg, torch.ones(2, 3, dtype=torch.bool), 1e-3)
    assert torch.isfinite(loss)
    # no negatives at all: log(e/e) = 0, gradients finite (not NaN)
    loss = info_nce(anchor, pos, torch.ones(2, 2, dtype=torch.bool), neg, torch.zeros(2, 3, dtype=torch.bool), 0.07)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert all(torch.isfinite(x.grad).all() for x in (anchor, pos, neg))
    # no positives anywhere: 0, not NaN
    loss = info_nce(anchor, pos, torch.zeros(2, 2, dtype=torch.bool), neg, torch.ones(2, 3, dtype=torch.bool), 0.07)
    assert loss.item() == 0.0


# ----------------------------------------------------------------------------- Eq. 1


def test_instance_features_match_a_per_instance_loop():
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 3, 4, 5, 6, generator=g)
    masks = (torch.rand(2, 3, 4, 5, 6, generator=g) > 0.5).float() * torch.rand(2, 3, 4, 5, 6, generator=g)
    masks[0, 1, 2] = 0  # an empty region
    weights = torch.rand(2, 3, 4, 5, 6, generator=g) > 0.3
    for w in (None, weights):
        got = instance_features(feat, masks, w)
        assert got.shape == (2, 3, 4, 4)
        for b in range(2):
            for t in range(3):
                for k in range(4):
                    m = masks[b, t, k] * (1.0 if w is None else w[b, t, k].float())
                    want = (feat[b, t] * m).sum((-2, -1)) / m.sum() if m.sum() > 0 else torch.zeros(4)
                    assert torch.allclose(got[b, t, k], want, atol=1e-5), (b, t, k)


def test_region_weights_are_area_fractions_with_background_last():
    masks = torch.zeros(1, 1, 2, 8, 8)
    masks[0, 0, 0, :3, :3] = 1  # object 0: 3x3 in the corner
    masks[0, 0, 1, 4:, 4:] = 1  # object 1: 4x4 block
    w = region_weights(masks, (4, 4))
    assert w.shape == (1, 1, 3, 4, 4)
    obj0 = torch.tensor([[1.0, 0.5, 0, 0], [0.5, 0.25, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(w[0, 0, 0], obj0)
    assert torch.equal(w[0, 0, 1, 2:, 2:], torch.ones(2, 2)) and w[0, 0, 1].sum() == 4
    assert torch.allclose(w[0, 0].sum(0), torch.ones(4, 4))  # disjoint objects + background tile the frame


# ----------------------------------------------------------------------------- Eqs. 6-7


@pytest.mark.parametrize("ratio,expected", [((1, 5), 2), ((1, 3), 3), ((1, 1), 6), ((4, 1), 10), ((1, 2), 4)])
def test_rhic_selects_the_hardest_pixels_in_the_expected_number(ratio, expected):
    g = torch.Generator().manual_seed(2)
    b, t, h, w = 2, 2, 5, 5
    region = torch.zeros(b, t, 3, h, w)
    region[..., 0, :3, :4] = 1  # 12 px (referent)
    region[..., 1, 4, 4] = 1  # 1 px
    # slot 2: empty
    y = region[:, :, 0]
    prob = torch.rand(b, t, h, w, generator=g).requires_grad_(True)
    sel = rhic_select(prob, region, y, ratio)
    assert sel.shape == region.shape and sel.dtype == torch.bool
    assert not sel.requires_grad  # the selection is not back-propagated
    assert torch.equal(sel.sum((-2, -1))[..., 0], torch.full((b, t), expected))
    assert torch.equal(sel.sum((-2, -1))[..., 1], torch.ones(b, t, dtype=torch.long))
    assert not sel[..., 2, :, :].any()
    d = (prob.detach() - y).abs()  # Eq. 6
    for i in range(b):
        for j in range(t):
            inside = d[i, j][region[i, j, 0] > 0]
            chosen = d[i, j][sel[i, j, 0]]
            assert chosen.min() >= inside.sort(descending=True).values[expected - 1]  # the top-`expected` by d
            assert not (sel[i, j, 0] & (region[i, j, 0] == 0)).any()


# ----------------------------------------------------------------------------- Eqs. 3-4


def _padded_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, targets and frame_valid of 2 clips x 3 frames (the second has 2 padded frames),
    and the logits with garbage in the padded frames."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = (torch.rand(2, 3, 8, 8, generator=g) > 0.5).float()
    valid = torch.tensor([[True, True, True], [True, False, False]])
    garbage = logits.clone()
    garbage[1, 1:] = 1e4
    return logits, target, valid, garbage


def test_segmentation_loss_ignores_padded_frames():
    logits, target, valid, garbage = _padded_case()
    want = F.binary_cross_entropy_with_logits(logits[valid], target[valid])
    assert torch.allclose(segmentation_loss(garbage, target, valid, "mean"), want, rtol=1e-6)


def test_all_switches_off_is_exactly_bce_whatever_lambda():
    torch.manual_seed(0)
    lp = params_section("loss", ccl=False, rhic=False, lcf=False, lambda_seg=0.3, seg_reduction="mean")
    model = CVLS(TINY, lp, vocab_size=12)
    batch = make_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    total, parts = cvls_loss(model, out, batch, lp)
    target = referent_masks(batch["masks"], batch["referent"])
    valid = batch["frame_valid"]
    assert torch.equal(total, segmentation_loss(out.logits, target, valid, "mean"))
    want = F.binary_cross_entropy_with_logits(out.logits[valid], target[valid])
    assert torch.allclose(total, want, rtol=1e-6, atol=0)
    assert set(parts) == {"seg", "ccl"} and parts["ccl"].item() == 0.0
    assert not parts["seg"].requires_grad


def test_total_is_lambda_weighted_and_parts_detached():
    torch.manual_seed(0)
    lp = params_section("loss", lambda_seg=0.8)
    model = CVLS(TINY, lp, vocab_size=12)
    batch = make_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    total, parts = cvls_loss(model, out, batch, lp)
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in parts.values())
    assert torch.allclose(total, 0.8 * parts["seg"] + 0.2 * parts["ccl"], rtol=1e-6)
    assert parts["ccl"] > 0


def test_referent_masks_pick_the_referent_slot():
    batch = make_batch()
    ref = referent_masks(batch["masks"], batch["referent"])
    assert torch.equal(ref[0], batch["masks"][0, :, 1]) and torch.equal(ref[1], batch["masks"][1, :, 2])


@pytest.mark.parametrize("rhic", [True, False])
def test_contrastive_gradient_reaches_both_encoders_not_the_decoder(rhic):
    torch.manual_seed(0)
    lp = params_section("loss", rhic=rhic, lcf=True)
    model = CVLS(TINY, lp, vocab_size=12)
    batch = make_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    contrastive_loss(model, out, batch, lp).backward()
    for name, p in [
        ("text forward LSTM", model.text.fwd.weight_ih_l0),
        ("text backward LSTM", model.text.bwd.weight_hh_l0),
        ("backbone conv1", model.visual.backbone.body.conv1.weight),
        ("backbone layer4", model.visual.backbone.body.layer4[0].conv1.weight),
        ("LCF", model.lcf.linear.weight),
        ("projection head", model.head.net[0].weight),
    ]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the decoder only feeds RHIC's selection, which is not back-propagated
    assert all(p.grad is None for p in model.decoder.parameters())


def test_lcf_switch_of_the_loss_must_match_the_model():
    model = CVLS(TINY, params_section("loss", lcf=False), vocab_size=12)
    batch = make_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    with pytest.raises(ValueError, match="without LCF"):
        contrastive_loss(model, out, batch, params_section("loss", lcf=True))


# ----------------------------------------------------------------------------- Eq. 3's two readings


def _segmentation_loss_before(logits, target, frame_valid):
    """segmentation_loss as it was before loss.seg_reduction (the per-pixel mean), verbatim."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    valid = frame_valid.to(bce.dtype)
    per_frame = bce.flatten(2).mean(-1)
    return (per_frame * valid).sum() / valid.sum().clamp_min(1.0)


def test_segmentation_sum_and_mean_on_a_hand_computed_case():
    # clip 0, frame 0: logits (0, ln 3, -ln 3, 0) on labels (1, 1, 1, 0):
    #   BCE = ln 2, ln(1 + 1/3), ln(1 + 3), ln 2   -> sum ln(64/3)
    # clip 1, frame 0: logits 0 on any labels: 4 x ln 2 -> sum ln 16
    # frame 1 of both clips is padding, filled with confidently wrong logits that must not count
    ln3 = math.log(3.0)
    logits = torch.zeros(2, 2, 2, 2)
    logits[0, 0] = torch.tensor([[0.0, ln3], [-ln3, 0.0]])
    logits[:, 1] = -1e4
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    target[1, 0] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target[:, 1] = 1.0
    valid = torch.tensor([[True, False], [True, False]])
    frame_sums = [math.log(64 / 3), math.log(16.0)]
    got_sum = segmentation_loss(logits, target, valid, "sum")
    got_mean = segmentation_loss(logits, target, valid, "mean")
    assert got_sum.item() == pytest.approx(sum(frame_sums) / 2, rel=1e-6)  # mean over the 2 valid frames
    assert got_mean.item() == pytest.approx(sum(frame_sums) / 2 / 4, rel=1e-6)  # ... of per-pixel means
    assert torch.allclose(got_sum, got_mean * 4, rtol=1e-6)  # sum = mean x pixels (S x S = 4)


def test_segmentation_sum_is_mean_times_pixels_and_ignores_padded_frames():
    logits, target, valid, garbage = _padded_case()
    want = F.binary_cross_entropy_with_logits(logits[valid], target[valid], reduction="sum") / valid.sum()
    got = segmentation_loss(garbage, target, valid, "sum")
    assert torch.allclose(got, want, rtol=1e-6)
    assert torch.allclose(got, segmentation_loss(garbage, target, valid, "mean") * 64, rtol=1e-6)
    with pytest.raises(ValueError, match="seg_reduction"):
        segmentation_loss(logits, target, valid, "median")


def test_the_mean_reading_leaves_the_loss_and_its_gradients_bit_identical():
    """seg_reduction: mean and the cvls_terms refactor give exactly the loss (and gradients) of
    the code before them: λ·BCE-mean + (1−λ)·L_ccl, the Baseline BCE-mean alone."""
    for ccl in (True, False):
        torch.manual_seed(0)
        lp = params_section("loss", ccl=ccl, lcf=ccl, rhic=ccl, seg_reduction="mean")
        model = CVLS(TINY, lp, vocab_size=12)
        batch = make_batch()
        out = model(batch["frames"], batch["tokens"], batch["lengths"])
        total, _ = cvls_loss(model, out, batch, lp)
        seg = _segmentation_loss_before(
            out.logits, referent_masks(batch["masks"], batch["referent"]), batch["frame_valid"]
        )
        before = lp.lambda_seg * seg + (1.0 - lp.lambda_seg) * contrastive_loss(model, out, batch, lp) if ccl else seg
        assert torch.equal(total, before)
        params = [p for p in model.parameters() if p.requires_grad]
        new = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
        old = torch.autograd.grad(before, params, allow_unused=True)
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(new, old))


def test_terms_are_the_weighted_summands_of_eq4():
    torch.manual_seed(0)
    lp = params_section("loss", lambda_seg=0.7, seg_reduction="sum")
    model = CVLS(TINY, lp, vocab_size=12)
    batch = make_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    terms, parts = cvls_terms(model, out, batch, lp)
    total, _ = cvls_loss(model, out, batch, lp)
    assert set(terms) == {"seg", "ccl"} and all(t.requires_grad for t in terms.values())
    assert torch.allclose(terms["seg"], 0.7 * parts["seg"]) and torch.allclose(terms["ccl"], 0.3 * parts["ccl"])
    assert torch.equal(total, terms["seg"] + terms["ccl"])
    target = referent_masks(batch["masks"], batch["referent"])
    assert torch.equal(parts["seg"], segmentation_loss(out.logits, target, batch["frame_valid"], "sum").detach())
    baseline = params_section("loss", ccl=False, rhic=False, lcf=False, seg_reduction="sum")
    terms, parts = cvls_terms(CVLS(TINY, baseline, vocab_size=12), out, batch, baseline)
    assert set(terms) == {"seg"} and torch.equal(terms["seg"].detach(), parts["seg"])  # L = L_seg, no λ
