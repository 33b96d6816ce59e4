"""The CVLS network (core/model.py): shapes, text encoder, SEM, LCF, backbone loading, overfitting."""

import logging
import time

import pytest
import torch
import torchvision

import core.backbone as backbone_mod
import core.model as model_mod
from core.backbone import build_backbone
from core.data.dataset import frames_channels_last
from core.errors import UserError
from core.losses import cvls_loss
from core.metrics import binarize
from core.model import CVLS, Fusion, GroupNorm, TextEncoder, coord_map
from core.runtime import native_cpu_bf16

from .conftest import params_section

torch.set_num_threads(1)

# params.yaml's model section, shrunk; resnet18 from random init, torchvision's widths (the weights tests
# save torchvision resnet18 files)
TINY = params_section(
    "model",
    backbone="resnet18",
    backbone_widths=None,
    init="scratch",
    freeze_at=0,
    channels=16,
    lstm_hidden=16,
    proj_hidden=32,
    proj_dim=8,
)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def padded_batch(s: int = 32) -> dict[str, torch.Tensor]:
    """B=2, T=3, K=3: clip 1 has a padded frame; clip 0's referent is absent in every frame."""
    b, t, k = 2, 3, 3
    masks = torch.zeros(b, t, k, s, s)
    masks[:, :, 0, 2:12, 3:14] = 1
    masks[:, :, 1, 16:28, 4:12] = 1
    masks[:, :, 2, 18:30, 18:30] = 1
    masks[0, :, 2] = 0  # clip 0 refers to slot 2, which is never visible
    masks[1, 0, 1] = 0  # clip 1's referent (slot 1) is missing in frame 0
    masks[1, 2] = 0  # clip 1: frame 2 is padding
    frames = torch.randn(b, t, 3, s, s)
    frames[1, 2] = 0
    return {
        "frames": frames,
        "tokens": torch.tensor([[2, 5, 7, 0, 0], [3, 4, 9, 11, 6]]),
        "lengths": torch.tensor([3, 5]),
        "masks": masks,
        "present": masks.flatten(3).any(-1),
        "referent": torch.tensor([2, 1]),
        "frame_valid": torch.tensor([[True, True, True], [True, True, False]]),
    }


def test_shapes_padded_frames_backward_and_no_nan_with_empty_referent():
    torch.manual_seed(0)
    lp = params_section("loss")
    model = CVLS(TINY, lp, vocab_size=12)
    batch = padded_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    assert out.logits.shape == (2, 3, 32, 32)
    assert out.features.shape == (2, 3, 64, 8, 8)  # Res2 = input / 4; model.merge concat: 4 levels of C = 16
    assert out.sentence.shape == (2, 64) and out.gate.shape == (2, 64)
    total, parts = cvls_loss(model, out, batch, lp)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # nothing positive in clip 0: the contrast comes from clip 1 alone and is still > 0
    assert parts["ccl"] > 0


def test_model_without_lcf_has_no_gate():
    model = CVLS(TINY, params_section("loss", lcf=False), vocab_size=12)
    batch = padded_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    assert model.lcf is None and out.gate is None
    assert out.filtered_features() is out.features


def test_lcf_with_zero_weights_and_bias_halves_every_channel():
    model = CVLS(TINY, params_section("loss", lcf=True), vocab_size=12)
    with torch.no_grad():
        model.lcf.linear.weight.zero_()
        model.lcf.linear.bias.zero_()
    batch = padded_batch()
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    assert torch.equal(out.gate, torch.full((2, 64), 0.5))  # sigmoid(0), Eq. 5; F's width 4C
    assert torch.equal(out.filtered_features(), out.features * 0.5)


def test_text_encoder_never_sees_padding():
    torch.manual_seed(0)
    enc = TextEncoder(num_ids=10, hidden=8, out_dim=6)
    short = enc(torch.tensor([[4, 7, 2]]), torch.tensor([3]))
    padded = enc(torch.tensor([[4, 7, 2, 0, 0, 0], [5, 0, 0, 0, 0, 0]]), torch.tensor([3, 1]))
    alone = enc(torch.tensor([[5]]), torch.tensor([1]))
    assert torch.allclose(short[0], padded[0], atol=1e-6) and torch.allclose(alone[0], padded[1], atol=1e-6)
    # pads filled with real words beyond the length do not matter either
    garbage = enc(torch.tensor([[4, 7, 2, 9, 9, 3]]), torch.tensor([3]))
    assert torch.allclose(short, garbage, atol=1e-6)
    # ...but word order does (bi-LSTM, not a bag of words)
    assert not torch.allclose(short, enc(torch.tensor([[2, 7, 4]]), torch.tensor([3])), atol=1e-4)


def test_attention_weights_are_eq8s_softmax_over_the_words_and_give_s():
    torch.manual_seed(0)
    enc = TextEncoder(num_ids=10, hidden=8, out_dim=6)
    tokens, lengths = torch.tensor([[4, 7, 2, 0], [5, 3, 0, 0]]), torch.tensor([3, 2])
    h, a = enc.attend(tokens, lengths)
    assert h.shape == (2, 4, 16) and a.shape == (2, 4)
    assert torch.allclose(a.sum(1), torch.ones(2)) and (a[0, 3:] == 0).all() and (a[1, 2:] == 0).all()
    score = enc.att_score(torch.tanh(enc.att_hidden(h[0, :3]))).squeeze(-1)  # Eq. 8, by hand
    assert torch.allclose(a[0, :3], score.softmax(0), atol=1e-6)
    assert torch.allclose(enc(tokens, lengths), enc.out((a[..., None] * h).sum(1)), atol=1e-6)
    with torch.no_grad():  # a zero scoring vector: equal weights over each sentence's own words
        enc.att_score.weight.zero_()
    assert torch.allclose(enc.attend(tokens, lengths)[1], torch.tensor([[1 / 3] * 3 + [0], [0.5, 0.5, 0, 0]]))


@pytest.mark.parametrize("seed", range(3))
def test_words_are_told_apart_at_init(seed):
    """Sentences must differ at init by more than the output layer's bias; with PyTorch's LSTM
    default for one-hot input, U(±1/√H), they differed by a quarter of it (measured ~0.2-0.3):
    every sentence gave almost the same vector and the model learned to ignore it."""
    torch.manual_seed(seed)
    enc = TextEncoder(51, 128, 32)
    with torch.no_grad():
        s = enc(torch.arange(1, 51).view(50, 1), torch.ones(50, dtype=torch.long))  # 50 one-word sentences
    assert s.std(0).mean() > enc.out.bias.abs().mean()


def test_coord_map_of_a_2x4_grid():
    c = coord_map(2, 4, torch.device("cpu"), torch.float32)
    assert c.shape == (8, 2, 4)
    xmin, ymin, xmax, ymax, xctr, yctr, inv_w, inv_h = c
    assert torch.allclose(xmin[0], torch.tensor([-1.0, -0.5, 0.0, 0.5]))
    assert torch.allclose(xmax[1], torch.tensor([-0.5, 0.0, 0.5, 1.0]))
    assert torch.allclose(xctr[0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(ymin[:, 0], torch.tensor([-1.0, 0.0]))
    assert torch.allclose(ymax[:, 3], torch.tensor([0.0, 1.0]))
    assert torch.allclose(yctr[:, 2], torch.tensor([-0.5, 0.5]))
    assert torch.all(inv_w == 0.25) and torch.all(inv_h == 0.5)
    assert coord_map(2, 4, torch.device("cpu"), torch.float32) is c  # built once per size


def test_coord_map_built_in_inference_mode_still_serves_training():
    with torch.inference_mode():
        c = coord_map(3, 5, torch.device("cpu"), torch.float32)
    assert not c.is_inference()
    w = torch.ones(8, 3, 5, requires_grad=True)
    (w * c).sum().backward()  # an inference tensor could not be saved for backward
    assert torch.equal(w.grad, c)


def test_projection_head_is_shared_and_unit_norm():
    model = CVLS(TINY, params_section("loss"), vocab_size=12)
    z = model.project(torch.randn(2, 3, 4, model.visual.width))
    assert z.shape == (2, 3, 4, 8) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=-1), torch.ones(2, 3, 4), atol=1e-6)


def test_backbone_levels_and_scratch_warning_once(monkeypatch, caplog):
    monkeypatch.setattr(backbone_mod, "_warned_scratch", False)
    with caplog.at_level(logging.WARNING, logger="cvls"):
        net = build_backbone("resnet18", None)
        backbone_mod.note_random_init("resnet18")
        backbone_mod.note_random_init("resnet34")
    assert sum("random init" in r.getMessage() for r in caplog.records) == 1
    assert net.pretrained is False
    levels = net(torch.randn(1, 3, 64, 64))
    assert [tuple(x.shape[1:]) for x in levels] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_backbone_widths_rebuild_the_stages_and_their_weights_round_trip(tmp_path):
    widths = (16, 24, 32, 40)
    net = build_backbone("resnet18", None, widths)
    levels = net(torch.randn(1, 3, 64, 64))
    assert [tuple(x.shape[1:]) for x in levels] == [(16, 16, 16), (24, 8, 8), (32, 4, 4), (40, 2, 2)]
    assert net.channels == widths and [len(net.body[f"layer{i}"]) for i in range(1, 5)] == [2, 2, 2, 2]
    # the pretext stage's file (VisualEncoder.resnet_state_dict) loads back at the same widths, and only there
    path = tmp_path / "narrow.pth"
    torch.save(net.body.state_dict(), path)
    back = build_backbone("resnet18", path, widths)
    assert all(torch.equal(a, b) for a, b in zip(net.body.state_dict().values(), back.body.state_dict().values()))
    with pytest.raises(UserError, match="does not fit resnet18"):
        build_backbone("resnet18", path)
    # torchvision's widths spelled out are the default network, draw for draw
    torch.manual_seed(1)
    default = build_backbone("resnet10", None).body.state_dict()
    torch.manual_seed(1)
    spelled = build_backbone("resnet10", None, (64, 128, 256, 512)).body.state_dict()
    assert all(torch.equal(default[k], spelled[k]) for k in default)
    with pytest.raises(UserError, match="backbone_widths applies to resnet10/18/34"):
        build_backbone("resnet50", None, widths)
    model = CVLS(TINY.model_copy(update={"backbone_widths": widths}), params_section("loss"), vocab_size=12)
    assert model.visual.sem[3].proj.in_channels == 40 + 8  # SEM reads each level's width (+ 8 coordinates)


def test_backbone_loads_a_local_imagenet_state_dict(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    net = build_backbone("resnet18", path)
    assert net.pretrained is True
    assert torch.equal(net.body.conv1.weight, src.conv1.weight)
    assert torch.equal(net.body.layer3[1].bn2.running_mean, src.layer3[1].bn2.running_mean)
    model = CVLS(TINY, params_section("loss"), vocab_size=12, weights=path)
    assert model.pretrained is True and torch.equal(model.visual.backbone.body.conv1.weight, src.conv1.weight)


def test_backbone_weights_problems_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        build_backbone("resnet18", tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        build_backbone("resnet18", junk)
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)  # e.g. another architecture's stem
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save(state, bad_shape)
    with pytest.raises(UserError, match="does not fit resnet18"):
        build_backbone("resnet18", bad_shape)
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(UserError, match="not a resnet18 state_dict"):
        build_backbone("resnet18", other)


def channels_last_model_and_frames(model: CVLS, frames: torch.Tensor) -> tuple[CVLS, torch.Tensor]:
    """The model and a [B, T, 3, H, W] batch of frames in channels_last, as the bf16 path feeds them."""
    return model.to(memory_format=torch.channels_last), frames_channels_last(frames)


def test_channels_last_matches_the_plain_model():
    torch.manual_seed(0)
    model = CVLS(TINY, params_section("loss"), vocab_size=12).eval()
    batch = padded_batch()
    with torch.no_grad():
        ref = model(batch["frames"], batch["tokens"], batch["lengths"])
        model, frames_cl = channels_last_model_and_frames(model, batch["frames"])
        cl = model(frames_cl, batch["tokens"], batch["lengths"])
    assert torch.allclose(cl.logits, ref.logits, atol=1e-4) and torch.allclose(cl.features, ref.features, atol=1e-4)


# a CPU without native bf16 has no oneDNN bf16 LSTM; the suite never autocasts there (train.cpu_bf16)
@pytest.mark.skipif(not native_cpu_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_on_the_cpu_keeps_the_models_dtypes_consistent():
    torch.manual_seed(0)
    lp = params_section("loss")
    batch = padded_batch()
    model, frames_cl = channels_last_model_and_frames(CVLS(TINY, lp, vocab_size=12).train(), batch["frames"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(frames_cl, batch["tokens"], batch["lengths"])
        total, parts = cvls_loss(model, out, batch, lp)
    assert out.logits.dtype == torch.bfloat16
    assert total.dtype == torch.float32 and parts["ccl"].dtype == torch.float32  # losses run in float32
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def two_object_clip(s: int = 64, t: int = 2) -> dict[str, torch.Tensor]:
    """One clip of two same-shape squares (red, green) that move; two sentences, one per square."""
    img = torch.full((t, 3, s, s), 0.5)
    masks = torch.zeros(t, 2, s, s)
    corners = [((8, 8), (36, 30)), ((12, 10), (34, 36))]  # per frame: red, green (y, x)
    colours = [torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.8, 0.1])]
    side = s // 4
    for f in range(t):
        for k in range(2):
            y, x = corners[f][k]
            img[f, :, y : y + side, x : x + side] = colours[k].view(3, 1, 1)
            masks[f, k, y : y + side, x : x + side] = 1
    frames = ((img - MEAN) / STD)[None].repeat(2, 1, 1, 1, 1)
    return {
        "frames": frames,
        "tokens": torch.tensor([[2, 3, 4], [2, 5, 4]]),  # "the red square" / "the green square"
        "lengths": torch.tensor([3, 3]),
        "masks": masks[None].repeat(2, 1, 1, 1, 1),
        "present": torch.ones(2, t, 2, dtype=torch.bool),
        "referent": torch.tensor([0, 1]),
        "frame_valid": torch.ones(2, t, dtype=torch.bool),
    }


@pytest.mark.slow
def test_full_model_overfits_one_clip():
    """Full CVLS (CCL+RHIC+LCF, resnet18, C=32) learns to segment the referred square: the two
    sentences share the frames, so IoU > 0.9 on both needs the language branch."""
    torch.manual_seed(0)
    lp = params_section("loss")
    model = CVLS(params_section("model", backbone="resnet18", init="scratch", channels=32), lp, vocab_size=6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = two_object_clip()
    target = torch.stack([batch["masks"][0, :, 0], batch["masks"][1, :, 1]]).bool()  # [B,T,S,S]
    start, ious = time.monotonic(), [0.0, 0.0]
    for step in range(200):  # typically done after 100-130 steps (seeds 0-4); the cap leaves margin
        out = model(batch["frames"], batch["tokens"], batch["lengths"])
        loss, _ = cvls_loss(model, out, batch, lp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                pred = binarize(torch.sigmoid(model(batch["frames"], batch["tokens"], batch["lengths"]).logits), 0.5)
            model.train()
            ious = [((pred[b] & target[b]).sum() / (pred[b] | target[b]).sum()).item() for b in range(2)]
            if min(ious) > 0.9:
                break
    assert min(ious) > 0.9, f"IoU {ious} after {step + 1} steps ({time.monotonic() - start:.0f} s)"


def test_freeze_at_stops_gradients_and_batch_norm_updates_in_the_frozen_stages():
    """detectron2's FREEZE_AT: 2 freezes the stem and res2 (layer1); later stages still learn."""
    model = CVLS(
        params_section("model", **{**TINY.model_dump(), "freeze_at": 2}), params_section("loss"), vocab_size=12
    )
    body = model.visual.backbone.body
    frozen_bn = body.layer1[0].bn1
    before = frozen_bn.running_mean.clone()
    model.train()
    assert not frozen_bn.training and body.layer2[0].bn1.training  # model.train() keeps frozen BNs in eval
    frames = torch.rand(2, 1, 3, 32, 32)
    out = model(frames, torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1]))
    out.logits.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in body.conv1.parameters())
    assert all(p.grad is None for p in body.layer1.parameters())
    assert all(p.grad is not None for p in body.layer2.parameters())
    assert torch.equal(frozen_bn.running_mean, before)  # no statistics update in a frozen stage
    assert not torch.equal(body.layer2[0].bn1.running_mean, torch.zeros_like(body.layer2[0].bn1.running_mean))
    unfrozen = CVLS(
        params_section("model", **{**TINY.model_dump(), "freeze_at": 0}), params_section("loss"), vocab_size=12
    )
    assert all(p.requires_grad for p in unfrozen.parameters())


# ----------------------------------------------------------------------------- model.fusion


def _conv_input(fusion: Fusion, feat: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """What the fusion's conv receives (the multi-modal tensor), read with a forward hook."""
    seen = []
    handle = fusion.conv[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    fusion(feat, s)
    handle.remove()
    return seen[0]


def test_fusion_readings_on_a_hand_built_case():
    feat = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # [N=1, C=2, h=1, w=2]
    s = torch.tensor([[2.0, -1.0]])  # [N, C]
    product = _conv_input(Fusion(2, 2, "product"), feat, s)
    assert torch.equal(product, torch.tensor([[[[2.0, 4.0]], [[-3.0, -4.0]]]]))  # F ⊙ tile(s)
    concat = _conv_input(Fusion(2, 2, "concat"), feat, s)
    assert torch.equal(concat, torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]], [[2.0, 2.0]], [[-1.0, -1.0]]]]))
    with pytest.raises(ValueError, match="model.fusion"):
        Fusion(2, 2, "sum")


def test_both_fusions_feed_the_same_decoder_and_train():
    batch = padded_batch()
    shapes = {}
    for mode in ("concat", "product"):
        torch.manual_seed(0)
        lp = params_section("loss")
        model = CVLS(params_section("model", **{**TINY.model_dump(), "fusion": mode}), lp, vocab_size=12)
        assert model.fusion.conv[0].in_channels == (128 if mode == "concat" else 64)  # [F ; s] or F ⊙ s, W = 4C
        shapes[mode] = {k: v.shape for k, v in model.decoder.state_dict().items()}
        out = model(batch["frames"], batch["tokens"], batch["lengths"])
        assert out.logits.shape == (2, 3, 32, 32)
        total, _ = cvls_loss(model, out, batch, lp)
        total.backward()
        # the sentence reaches the mask through either fusion
        assert model.text.out.weight.grad is not None and model.text.out.weight.grad.abs().sum() > 0
    assert shapes["concat"] == shapes["product"]


def test_default_fusion_is_the_concatenation_as_before():
    """model.fusion: concat computes exactly the fusion before the key: conv([F ; tile(s)])."""
    torch.manual_seed(0)
    fusion = Fusion(16, 16, params_section("model").fusion)
    feat, s = torch.randn(3, 16, 5, 4), torch.randn(3, 16)
    tiled = s[:, :, None, None].expand(-1, -1, 5, 4)
    assert torch.equal(fusion(feat, s), fusion.conv(torch.cat([feat, tiled], dim=1)))


# ----------------------------------------------------------------------------- model.merge


def test_merge_concat_is_the_stacked_levels_and_sets_the_width_of_s_lcf_and_g():
    batch = padded_batch()
    torch.manual_seed(0)
    lp = params_section("loss")
    model = CVLS(params_section("model", **{**TINY.model_dump(), "merge": "concat"}), lp, vocab_size=12)
    assert model.visual.merge is None and model.visual.width == 4 * 16
    frames = batch["frames"].flatten(0, 1)
    with torch.no_grad():  # F is Res2..Res5 after SEM and the top-down sums, at Res2, stacked: by hand
        v = [sem(r) for sem, r in zip(model.visual.sem, model.visual.backbone(frames))]
        for i in (2, 1, 0):
            v[i] = v[i] + torch.nn.functional.interpolate(v[i + 1], size=v[i].shape[-2:], mode="nearest")
        up = [v[0]] + [
            torch.nn.functional.interpolate(x, size=v[0].shape[-2:], mode="bilinear", align_corners=False)
            for x in v[1:]
        ]
        assert torch.equal(model.visual(frames), torch.cat(up, dim=1))
    out = model(batch["frames"], batch["tokens"], batch["lengths"])
    assert out.features.shape == (2, 3, 64, 8, 8) and out.sentence.shape == out.gate.shape == (2, 64)
    assert model.fusion.conv[0].in_channels == 128 and model.fusion.conv[0].out_channels == 16  # [F ; s] -> C
    assert model.head.net[0].in_features == 64 and out.logits.shape == (2, 3, 32, 32)
    total, _ = cvls_loss(model, out, batch, lp)
    total.backward()
    assert model.visual.sem[3].proj.weight.grad.abs().sum() > 0  # Res5 reaches F without a merge conv


def test_merge_conv_keeps_the_modules_their_order_and_the_text_encoders_draws():
    """model.merge: conv builds the modules of before the key, in their order (so the same draws)."""
    torch.manual_seed(0)
    model = CVLS(params_section("model", **{**TINY.model_dump(), "merge": "conv"}), params_section("loss"), 12)
    assert model.visual.width == 16
    assert [n for n, _ in model.named_children()] == ["text", "visual", "fusion", "decoder", "lcf", "head"]
    assert model.visual.merge[0].in_channels == 64 and model.visual.merge[0].out_channels == 16
    torch.manual_seed(0)  # the text encoder draws first, as before: its weights do not depend on the merge
    other = CVLS(params_section("model", **TINY.model_dump()), params_section("loss"), 12)  # concat, the default
    assert params_section("model").merge == "concat" and other.visual.width == 64
    assert torch.equal(model.text.fwd.weight_ih_l0, other.text.fwd.weight_ih_l0)
    with pytest.raises(ValueError, match="model.merge"):
        model_mod.VisualEncoder(model.visual.backbone, 16, "sum")


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_group_norm_matches_torch_and_keeps_the_memory_format(fmt):
    torch.manual_seed(0)
    ours, ref = GroupNorm(4, 16), torch.nn.GroupNorm(4, 16)
    for m in (ours, ref):
        torch.nn.init.normal_(m.weight, generator=torch.Generator().manual_seed(1))
        torch.nn.init.normal_(m.bias, generator=torch.Generator().manual_seed(2))
    x = (3 * torch.randn(5, 16, 6, 7) + 1).contiguous(memory_format=fmt).requires_grad_()
    y, y_ref = ours(x), ref(x)
    assert y.is_contiguous(memory_format=fmt)
    assert torch.allclose(y, y_ref, atol=1e-5)
    (gx,) = torch.autograd.grad((y * y.detach()).sum(), x)
    (gx_ref,) = torch.autograd.grad((y_ref * y_ref.detach()).sum(), x)
    assert torch.allclose(gx, gx_ref, atol=1e-4)
