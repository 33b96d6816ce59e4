"""The CVLS network (paper Fig. 3), readable top to bottom.

    tokens ──one-hot──► bi-LSTM ──self-guided attention (Eq. 8)──► Linear ──► s   [B, W]
    frames ──ResNet──► Res2..Res5 ──SEM (Eq. 9)──► top-down ──► concat (──► conv) ──► F  [B, T, W, h, w]
    [F ; tile(s)] or F ⊙ tile(s) ──conv to C (fusion)──► mask decoder ──► logits (upsampled to the input size)
    s ──LCF (Eq. 5)──► gate c   (the losses use F' = c ⊙ F for instance features)
    g(·): projection head shared by sentence and instance features (contrastive loss only)

Equation numbers are the paper's, written out in docs/method.md. `h, w` = Res2 resolution = input / 4. W, the
width of F, s, the LCF gate and g(·)'s input, is C (model.merge: conv) or 4C (model.merge: concat).
The forward pass is free of host-device syncs (no `.item()`, no CPU copies of device tensors),
works with channels_last inputs/weights and under bf16 autocast.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.backbone import Backbone, build_backbone
from core.sections import LossParams, ModelParams

log = logging.getLogger("cvls")


@dataclass
class Output:
    logits: Tensor  # [B, T, S, S] decoder logit, upsampled to the input size
    features: Tensor  # [B, T, W, h, w] visual map F (Res2 resolution), before LCF
    sentence: Tensor  # [B, W] sentence feature s
    gate: Tensor | None  # [B, W] LCF gate c (Eq. 5); None when the model has no LCF

    def filtered_features(self) -> Tensor:
        """F' = c ⊙ F (Eq. 5), the map the contrastive loss pools; F itself without LCF."""
        if self.gate is None:
            return self.features
        return self.features * self.gate[:, None, :, None, None]


# ----------------------------------------------------------------------------- text encoder


class TextEncoder(nn.Module):
    """One-hot words -> bi-LSTM -> self-guided attention (Eq. 8) -> Linear to C.

    a_t = softmax_t(w^T tanh(W h_t + b)) over the non-padding words, s = Σ_t a_t h_t.
    The two LSTM directions run as two unidirectional LSTMs; the backward one reads each
    sentence reversed *within its own length*. This is exactly what pack_padded_sequence gives
    (no state ever sees a <pad>), without it: packing needs the lengths on the CPU, i.e. a
    device-to-host sync in every forward on CUDA.
    """

    def __init__(self, num_ids: int, hidden: int, out_dim: int):
        super().__init__()
        self.num_ids = num_ids  # vocab_size + 1 (<pad>); one-hot width, as in the paper
        self.fwd = nn.LSTM(num_ids, hidden, batch_first=True)
        self.bwd = nn.LSTM(num_ids, hidden, batch_first=True)
        for lstm in (self.fwd, self.bwd):
            # one-hot times W_ih is a lookup of one column: initialise the columns as word
            # embeddings (nn.Embedding's N(0, 1)). PyTorch's U(±1/√H) is meant for dense
            # inputs; with one-hot words it leaves every sentence almost the same vector.
            nn.init.normal_(lstm.weight_ih_l0)
        self.att_hidden = nn.Linear(2 * hidden, 2 * hidden)  # W, b
        self.att_score = nn.Linear(2 * hidden, 1, bias=False)  # w
        self.out = nn.Linear(2 * hidden, out_dim)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        h, a = self.attend(tokens, lengths)
        return self.out((a[..., None].to(h.dtype) * h).sum(dim=1))

    def attend(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The word states h [B, L, 2H] and their attention weights a [B, L] (Eq. 8; 0 on padding,
        each row sums to 1): s = out(Σ_t a_t h_t). `core.probe` reads a."""
        n = tokens.shape[1]
        t = torch.arange(n, device=tokens.device)
        lengths = lengths.to(tokens.device).clamp(1, n)[:, None]
        real = t[None] < lengths  # [B, L] non-padding words
        # reversal inside each sentence's length (pads stay at the end); it is its own inverse
        rev = torch.where(real, lengths - 1 - t[None], t[None])
        h_f, _ = self.fwd(F.one_hot(tokens, self.num_ids).float())
        h_b, _ = self.bwd(F.one_hot(tokens.gather(1, rev), self.num_ids).float())
        h_b = h_b.gather(1, rev[..., None].expand_as(h_b))
        h = torch.cat([h_f, h_b], dim=-1)  # [B, L, 2H]
        score = self.att_score(torch.tanh(self.att_hidden(h))).squeeze(-1)  # Eq. 8
        a = score.float().masked_fill(~real, float("-inf")).softmax(dim=1)  # lengths >= 1: no all -inf row
        return h, a


# ----------------------------------------------------------------------------- visual encoder


@lru_cache(maxsize=64)
def coord_map(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The 8-channel map [xmin, ymin, xmax, ymax, xctr, yctr, 1/W, 1/H] of an h×w grid (Eq. 9).

    Cell (i, j) spans [xmin, xmax] × [ymin, ymax] in [-1, 1] coordinates. Built once per
    (size, device, dtype), outside inference mode so the cached tensor is usable by autograd later.
    """
    with torch.inference_mode(False), torch.no_grad():
        xs = torch.linspace(-1.0, 1.0, w + 1, device=device)
        ys = torch.linspace(-1.0, 1.0, h + 1, device=device)
        xmin, xmax = xs[:-1].expand(h, w), xs[1:].expand(h, w)
        ymin, ymax = ys[:-1, None].expand(h, w), ys[1:, None].expand(h, w)
        maps = [
            xmin,
            ymin,
            xmax,
            ymax,
            (xmin + xmax) / 2,
            (ymin + ymax) / 2,
            torch.full((h, w), 1.0 / w, device=device),
            torch.full((h, w), 1.0 / h, device=device),
        ]
        return torch.stack(maps).to(dtype)


class SEM(nn.Module):
    """Spatial Encoding Module (Eq. 9): V_l = W_l [R_l ; coord(h_l, w_l)], W_l a 1×1 conv to C."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels + 8, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        coords = coord_map(x.shape[-2], x.shape[-1], x.device, x.dtype)
        return self.proj(torch.cat([x, coords.expand(x.shape[0], -1, -1, -1)], dim=1))


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm run on an NCHW copy of a channels_last input, the result handed back in
    channels_last. PyTorch's CPU kernel for channels_last bf16 is ~17x slower than for NCHW
    (4.2 vs 0.24 ms on [128, 32, 12, 12], 1 thread); the two copies cost far less. Same math;
    in bf16 the two kernels round differently (max |diff| one bf16 ulp of the output)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)


def conv_gn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: clips are few per batch and eval sees one frame at a time
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), GroupNorm(math.gcd(8, c_out), c_out), nn.ReLU(inplace=True)
    )


def feature_width(channels: int, merge: str) -> int:
    """F's channels: C after the merge conv, or the four levels' C each (Res2..Res5), concatenated."""
    return channels if merge == "conv" else 4 * channels


class VisualEncoder(nn.Module):
    """ResNet -> SEM per level -> top-down (upsample + add, panoptic FPN) -> all levels at Res2,
    concatenated = the visual map F, with `merge` 'conv' then a 3×3 conv (+GN, ReLU) to C.

    `merge` (model.merge) is [open]: the paper's F is the concatenation (4C channels), but s, Eq. 1's
    v and g(·) live at "the visual channel width C". `width` is F's channels either way."""

    def __init__(self, backbone: Backbone, channels: int, merge: str):
        super().__init__()
        if merge not in ("conv", "concat"):
            raise ValueError(f"model.merge: unknown merge {merge!r} (conv | concat)")
        self.backbone = backbone
        self.sem = nn.ModuleList(SEM(c, channels) for c in backbone.channels)
        self.width = feature_width(channels, merge)
        self.merge = conv_gn_relu(len(backbone.channels) * channels, channels) if merge == "conv" else None

    def resnet_state_dict(self) -> dict[str, Tensor]:
        """The ResNet's weights as a torchvision state_dict: the file `model.init` loads."""
        return self.backbone.body.state_dict()

    def forward(self, x: Tensor) -> Tensor:
        v = [sem(r) for sem, r in zip(self.sem, self.backbone(x))]  # Res2..Res5, each C channels
        for i in range(len(v) - 2, -1, -1):  # top-down: V_l += up(V_{l+1}), coarsest first
            v[i] = v[i] + F.interpolate(v[i + 1], size=v[i].shape[-2:], mode="nearest")
        size = v[0].shape[-2:]
        up = [v[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in v[1:]]
        stacked = torch.cat(up, dim=1)
        return stacked if self.merge is None else self.merge(stacked)


# ----------------------------------------------------------------------------- heads


class Fusion(nn.Module):
    """The multi-modal tensor the decoder reads: F and the tiled sentence s (W channels each), then
    one conv to C.

    `mode` (model.fusion) is the [open] reading of the prose around Eq. 3:
      concat:  conv([F ; tile(s)])   2W -> C, Table 3's "implicit concatenation-convolution";
      product: conv(F ⊙ tile(s))     W -> C, the "element-wise multiplication" of Eq. 3's text.
    Both give C channels, so the decoder is the same. The coordinate map is not added here in
    either reading: SEM (Eq. 9) already put it into F, so the readings differ in the operator only.
    """

    def __init__(self, width: int, channels: int, mode: str):
        super().__init__()
        if mode not in ("concat", "product"):
            raise ValueError(f"model.fusion: unknown fusion {mode!r} (concat | product)")
        self.mode = mode
        self.conv = conv_gn_relu((2 if mode == "concat" else 1) * width, channels)

    def forward(self, feat: Tensor, s: Tensor) -> Tensor:
        if self.mode == "product":
            return self.conv(feat * s[:, :, None, None].to(feat.dtype))
        tiled = s[:, :, None, None].to(feat.dtype).expand(-1, -1, *feat.shape[-2:])
        return self.conv(torch.cat([feat, tiled], dim=1))


class MaskDecoder(nn.Module):
    """Three stacked 3×3 convs (+ReLU) and a 1×1 conv to one logit map."""

    def __init__(self, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers, nn.Conv2d(channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ChannelFilter(nn.Module):
    """LCF (Eq. 5): c = sigmoid(W · LeakyReLU(s) + b) ∈ (0,1)^C.

    Sigmoid rather than softmax: channels are not mutually exclusive.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, channels)

    def forward(self, s: Tensor) -> Tensor:
        return torch.sigmoid(self.linear(F.leaky_relu(s)))


class ProjectionHead(nn.Module):
    """g(·): MLP with one hidden layer (SimCLR), output on the unit hypersphere."""

    def __init__(self, channels: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x).float(), dim=-1)  # float: the dot products feed exp(·/τ)


# ----------------------------------------------------------------------------- CVLS


class CVLS(nn.Module):
    """The whole network. `forward` mirrors Fig. 3; `project` is g(·) for the contrastive loss.

    `weights`: a torchvision ResNet state_dict file the backbone starts from (ImageNet, or the
    pretext stage's); None = random init. `Params.backbone_weights` resolves it from params.
    """

    def __init__(self, mp: ModelParams, lp: LossParams, vocab_size: int, *, weights: Path | None = None):
        super().__init__()
        c, w = mp.channels, feature_width(mp.channels, mp.merge)  # w: F's channels, and s's, c's, g(·)'s input
        self.text = TextEncoder(vocab_size + 1, mp.lstm_hidden, w)
        self.visual = VisualEncoder(build_backbone(mp.backbone, weights, mp.backbone_widths), c, mp.merge)
        if mp.freeze_at:
            self.visual.backbone.freeze(mp.freeze_at)
        self.fusion = Fusion(w, c, mp.fusion)
        self.decoder = MaskDecoder(c)
        self.lcf = ChannelFilter(w) if lp.lcf else None
        self.head = ProjectionHead(w, mp.proj_hidden, mp.proj_dim)

    @property
    def pretrained(self) -> bool:
        """Whether the backbone started from a weights file (recorded with every run)."""
        return self.visual.backbone.pretrained

    def forward(self, frames: Tensor, tokens: Tensor, lengths: Tensor) -> Output:
        b, t, _, height, width = frames.shape
        s = self.text(tokens, lengths)  # [B, W]                      (Eq. 8)
        feat = self.visual(frames.flatten(0, 1))  # [B·T, W, h, w]    (Eq. 9 + top-down)
        logits = self.segment(feat, s.repeat_interleave(t, dim=0), (height, width))
        gate = self.lcf(s) if self.lcf is not None else None  # (Eq. 5)
        return Output(
            logits=logits.reshape(b, t, height, width), features=feat.unflatten(0, (b, t)), sentence=s, gate=gate
        )

    def segment(self, feat: Tensor, s: Tensor, size: tuple[int, int]) -> Tensor:
        """Mask logits [N, 1, H, W] of visual maps F [N, W, h, w] for sentences s [N, W]. The
        visual map does not depend on the sentence, so evaluation computes it once per frame
        (`core.scoring`) and calls this for each sentence of the frame."""
        logit = self.decoder(self.fusion(feat, s))  # [N, 1, h, w]
        return F.interpolate(logit, size=size, mode="bilinear", align_corners=False)

    def project(self, x: Tensor) -> Tensor:
        """g(·) on the last dim: [..., W] -> [..., proj_dim], L2-normalised, float32."""
        return self.head(x)
