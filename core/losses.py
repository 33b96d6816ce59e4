"""CVLS training objective: segmentation (Eq. 3) + instance-level cross-modal contrast (Eqs. 1-2),
with hard-instance mining (RHIC, Eqs. 6-7; LCF, Eq. 5, lives in the model), combined by Eq. 4.

Resolution of the contrastive term. Instance features are pooled from F at its own resolution
h×w (= input / 4). Masks are brought there as *area weights*: a_i = the fraction of each
feature cell covered by object i (area interpolation, no threshold). Weighted pooling with
a_i is exactly Eq. 1 at full resolution on F upsampled by nearest neighbour, and small or
thin objects never vanish. The background weight is the covered fraction of "no instance"
pixels. A region (for RHIC and for validity) is every cell with a non-zero weight.

RHIC's probability map P is sigmoid(logits) area-downsampled to h×w (the mean probability in
each cell; the decoder predicts at h×w anyway), and Y is the referent's area weight there.

Everything is vectorised over clips, frames and instances and free of host-device syncs: the
parts dict holds detached tensors, the trainer decides when to read them.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from core.model import CVLS, Output
from core.sections import LossParams, parse_ratio


def _full_precision(like: Tensor) -> torch.autocast:
    """Autocast off: the losses run in float32 even inside the trainer's bf16 region."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def segmentation_loss(logits: Tensor, target: Tensor, frame_valid: Tensor, reduction: str) -> Tensor:
    """Eq. 3: pixel-wise BCE between sigmoid(logits) and the referent mask. [B,T,S,S] x2, [B,T].

    Per frame, the BCE of its S×S pixels is reduced by `reduction` (loss.seg_reduction, the
    [open] reading of Eq. 3): 'mean' over them, or 'sum' (BCE written with inner products,
    -(Y·log P + (1-Y)·log(1-P)), sums over pixels: S² times the mean). Then the mean over the
    valid (clip, frame) pairs: padded frames of short clips count for nothing.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss.seg_reduction: unknown reduction {reduction!r} (mean | sum)")
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    valid = frame_valid.to(bce.dtype)
    per_frame = bce.flatten(2).mean(-1) if reduction == "mean" else bce.flatten(2).sum(-1)  # [B, T]
    return (per_frame * valid).sum() / valid.sum().clamp_min(1.0)


def region_weights(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Instance masks [B,T,K,S,S] -> area weights [B,T,K+1,h,w]; slot K is the background
    (pixels of no instance), computed at full resolution before downsampling."""
    b, t = masks.shape[:2]
    masks = masks.float()
    background = 1.0 - masks.amax(dim=2, keepdim=True) if masks.shape[2] else torch.ones_like(masks[:, :, :1])
    full = torch.cat([masks, background], dim=2).flatten(0, 1)  # [B·T, K+1, S, S]
    return F.adaptive_avg_pool2d(full, size).unflatten(0, (b, t))  # = area interpolation


def instance_features(feat: Tensor, masks: Tensor, weights: Tensor | None = None) -> Tensor:
    """Eq. 1: v_i^t = Σ(F^t ⊙ M_i^t) / Σ M_i^t, for every region at once.

    feat [B,T,C,h,w], masks [B,T,K+1,h,w] (binary or area weights; slot K = background),
    weights: optional per-pixel multiplier of the masks (the RHIC selection, Eq. 7).
    Returns [B,T,K+1,C]; an empty region gives a zero vector (callers mark it invalid).
    """
    m = masks.float() if weights is None else masks.float() * weights.float()
    with _full_precision(feat):
        num = torch.einsum("btchw,btkhw->btkc", feat.float(), m)
    return num / m.sum(dim=(-2, -1))[..., None].clamp_min(1e-12)


@torch.no_grad()
def rhic_select(prob: Tensor, region_masks: Tensor, referent_target: Tensor, ratio: tuple[float, float]) -> Tensor:
    """Eqs. 6-7: inside each region keep the hardest h/(h+e) of its pixels by d = |P − Y|.

    prob [B,T,h,w] decoder probability P, region_masks [B,T,R,h,w] (region = weight > 0),
    referent_target [B,T,h,w] label Y. Returns a bool selection [B,T,R,h,w]: per region
    k = ceil(n·h/(h+e)) pixels (so >= 1 for a non-empty region, 0 for an empty one), ties broken
    by pixel order. Not back-propagated (online selection, recomputed every step).
    """
    hard, easy = ratio
    frac = Fraction(hard / (hard + easy)).limit_denominator(10**6)  # exact ceil: 12·1/6 is 2, not 2.0000001
    d = (prob.float() - referent_target.float()).abs().flatten(-2)  # [B,T,P]   (Eq. 6)
    region = (region_masks > 0).flatten(-2)  # [B,T,R,P]
    score = d[:, :, None, :].expand_as(region).masked_fill(~region, float("-inf"))
    order = score.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    n = region.sum(dim=-1, keepdim=True)  # [B,T,R,1]
    k = (n * frac.numerator + frac.denominator - 1) // frac.denominator  # ceil(n·h/(h+e)) in integers
    return ((rank < k) & region).view(region_masks.shape)  # (Eq. 7)


def info_nce(
    anchor: Tensor, positives: Tensor, pos_valid: Tensor, negatives: Tensor, neg_valid: Tensor, tau: float
) -> Tensor:
    """Eq. 2, batched over clips with validity masks.

    anchor [B,D]; positives [B,P,D] with pos_valid [B,P]; negatives [B,N,D] with neg_valid [B,N].
    L_b = −mean_p log( exp(s·z_p/τ) / (exp(s·z_p/τ) + Σ_n exp(s·z_n/τ)) ), then the mean over the
    clips that have at least one valid positive (the others contribute nothing; 0 if none has).
    """
    anchor, positives, negatives = anchor.float(), positives.float(), negatives.float()
    with _full_precision(anchor):  # logits / τ feed exp: bf16 would cost ~2 significant digits
        pos = torch.einsum("bd,bpd->bp", anchor, positives) / tau
        neg = torch.einsum("bd,bnd->bn", anchor, negatives) / tau
    neg = neg.masked_fill(~neg_valid, float("-inf"))
    neg_lse = torch.logsumexp(neg, dim=1, keepdim=True)  # log Σ_n exp(·); −inf without negatives
    loss = torch.logaddexp(pos, neg_lse) - pos  # −log(e^pos / (e^pos + Σ e^neg)), stable
    pv = pos_valid.to(loss.dtype)
    loss = torch.where(pos_valid, loss, torch.zeros_like(loss))  # invalid slots may hold anything
    per_clip = loss.sum(1) / pv.sum(1).clamp_min(1.0)
    has_pos = pv.amax(1)
    return (per_clip * has_pos).sum() / has_pos.sum().clamp_min(1.0)


def referent_masks(masks: Tensor, referent: Tensor) -> Tensor:
    """[B,T,K,S,S], [B] -> the referent's mask in every frame [B,T,S,S]."""
    idx = referent.view(-1, 1, 1, 1, 1).expand(-1, masks.shape[1], 1, *masks.shape[-2:])
    return masks.gather(2, idx).squeeze(2)


def contrastive_loss(model: CVLS, out: Output, batch: dict[str, Tensor], lp: LossParams) -> Tensor:
    """L_ccl (Eq. 2) on instance features of F' (LCF, Eq. 5) pooled with or without RHIC (Eqs. 6-7).

    Anchor g(s); positives g(v_ref^t) for valid frames where the referent is present; negatives
    g(v_j^t) of every other present object and the background, in every valid frame of the clip.
    """
    masks, present, referent, frame_valid = batch["masks"], batch["present"], batch["referent"], batch["frame_valid"]
    b, t, k = present.shape
    if lp.lcf and out.gate is None:
        raise ValueError("loss.lcf is on but the model was built without LCF (build CVLS with the same LossParams)")
    feat = out.filtered_features() if lp.lcf else out.features  # F' = c ⊙ F (Eq. 5), or F
    regions = region_weights(masks, feat.shape[-2:])  # [B,T,K+1,h,w], background last
    selection = None
    if lp.rhic:
        prob = F.adaptive_avg_pool2d(torch.sigmoid(out.logits.detach().float()), feat.shape[-2:])
        y = regions.gather(2, referent.view(-1, 1, 1, 1, 1).expand(-1, t, 1, *regions.shape[-2:])).squeeze(2)
        selection = rhic_select(prob, regions, y, parse_ratio(lp.rhic_ratio))
    z = model.project(instance_features(feat, regions, selection))  # [B,T,K+1,D]
    anchor = model.project(out.sentence)  # [B,D]

    nonempty = regions.sum(dim=(-2, -1)) > 0  # [B,T,K+1]
    present_all = torch.cat([present, torch.ones_like(present[:, :, :1])], dim=2)  # background: always "present"
    valid = nonempty & present_all & frame_valid[:, :, None]
    is_ref = F.one_hot(referent, k + 1).bool()[:, None, :].expand(-1, t, -1)  # [B,T,K+1]
    positives = z.gather(2, referent.view(-1, 1, 1, 1).expand(-1, t, 1, z.shape[-1])).squeeze(2)  # [B,T,D]
    pos_valid = (valid & is_ref).any(dim=2)
    neg_valid = (valid & ~is_ref).flatten(1)
    return info_nce(anchor, positives, pos_valid, z.flatten(1, 2), neg_valid, lp.tau)


def cvls_terms(
    model: CVLS, out: Output, batch: dict[str, Tensor], lp: LossParams
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The summands of Eq. 4 with their graph, and the detached parts.

    terms: 'seg' = λ·L_seg and 'ccl' = (1−λ)·L_ccl, λ = lp.lambda_seg, so L is their sum. With
    lp.ccl false (the Baseline of Table 3) the one term 'seg' = L_seg, whatever λ: the baseline
    has no contrastive term, so λ has nothing to trade it against.
    parts: detached, unweighted 'seg' and 'ccl' (ccl = 0 for the baseline, so every run logs the
    same keys).
    """
    target = referent_masks(batch["masks"], batch["referent"])
    seg = segmentation_loss(out.logits, target, batch["frame_valid"], lp.seg_reduction)
    if not lp.ccl:
        return {"seg": seg}, {"seg": seg.detach(), "ccl": torch.zeros_like(seg)}
    ccl = contrastive_loss(model, out, batch, lp)
    terms = {"seg": lp.lambda_seg * seg, "ccl": (1.0 - lp.lambda_seg) * ccl}
    return terms, {"seg": seg.detach(), "ccl": ccl.detach()}


def cvls_loss(model: CVLS, out: Output, batch: dict[str, Tensor], lp: LossParams) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 4: L = λ·L_seg + (1−λ)·L_ccl (the Baseline: L = L_seg), and its detached parts
    'seg', 'ccl' (see `cvls_terms`)."""
    terms, parts = cvls_terms(model, out, batch, lp)
    return (terms["seg"] + terms["ccl"] if "ccl" in terms else terms["seg"]), parts
