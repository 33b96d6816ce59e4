"""The classic A2D Sentences protocol, per (annotated frame, sentence) sample.

Prediction: the sigmoid map resized back to the frame's original size, foreground where
p > θ · max(p) of that map. Scores: IoU = I / U (both empty -> 1), P@K = % of samples with
IoU >= K, mAP = mean of P@K over K = 0.50:0.05:0.95 (the classic protocol's "mAP", not COCO's
ranked AP), Overall IoU = ΣI / ΣU, Mean IoU = mean of per-sample IoU; percentages, one decimal.

Threshold comparisons are exact: IoU >= K is tested as I·den(K) >= num(K)·U in integers, so an
IoU of exactly 0.5 or 0.7 counts for P@0.5 / P@0.7 (no floating-point edge effects), and
rounding to one decimal is half-up on exact fractions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

THRESHOLDS_P = (0.5, 0.6, 0.7, 0.8, 0.9)
THRESHOLDS_MAP = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95


def binarize(prob: Tensor, theta: float) -> Tensor:
    """Foreground where p > θ · max(p), the max taken per map over the last two dims.
    An all-zero map gives an empty mask (0 > 0 is false)."""
    peak = prob.amax(dim=(-2, -1), keepdim=True)
    return prob > theta * peak


def resize_to(prob: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of [..., h, w] maps back to the original frame size (H, W)."""
    lead = prob.shape[:-2]
    x = prob.reshape(-1, 1, *prob.shape[-2:]).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return x.reshape(*lead, *size)


def intersection_union(pred: Tensor, gt: Tensor) -> tuple[int, int]:
    """Pixel counts |pred ∧ gt|, |pred ∨ gt| of two bool masks of the same shape."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size")
    pred, gt = pred.bool(), gt.bool()
    return int((pred & gt).sum()), int((pred | gt).sum())


def _iou(i: int, u: int) -> Fraction:
    return Fraction(1) if u == 0 else Fraction(i, u)  # u == 0: both masks empty


def _pct(x: Fraction) -> float:
    """100·x rounded half-up to one decimal."""
    return math.floor(x * 1000 + Fraction(1, 2)) / 10


def _sum_of_means(parts: Iterable[tuple[int | Fraction, int]]) -> Fraction:
    """Σ total / count over (total, count) parts, exactly; totals of one count are added first,
    so a long list costs a few fraction operations, not one per part."""
    by_count: dict[int, int | Fraction] = {}
    for total, count in parts:
        by_count[count] = by_count.get(count, 0) + total
    return sum((Fraction(t) / c for c, t in by_count.items()), Fraction(0))


def summarize(inters: Sequence[int], unions: Sequence[int]) -> dict[str, float]:
    """P@0.5..P@0.9, mAP (0.5:0.95), overall_iou, mean_iou (percent, one decimal) and n."""
    if len(inters) != len(unions):
        raise ValueError(f"{len(inters)} intersections but {len(unions)} unions")
    return summarize_expected([[(i, u)] for i, u in zip(inters, unions)])


def summarize_expected(candidates: Sequence[Sequence[tuple[int, int]]]) -> dict[str, float]:
    """The same scores, in expectation, of a predictor that outputs one of several predictions
    per sample uniformly at random; `candidates[s]` holds the (I, U) of each of sample s's.

    Exact, over fractions: P@K = mean over samples of the share of candidates with IoU >= K;
    mAP = mean of those over K = 0.50:0.05:0.95; mean IoU = mean over samples of the candidates'
    mean IoU; overall IoU = Σ E[I] / Σ E[U] (the expected counts per sample, summed: the
    aggregate the protocol takes, of the expected prediction). With one candidate per sample
    it is `summarize` exactly (it is how `summarize` is computed).
    """
    if not candidates:
        raise ValueError("no samples to summarize")
    if any(len(c) == 0 for c in candidates):
        raise ValueError("a sample without candidate predictions")
    n = len(candidates)
    ious = [[_iou(int(i), int(u)) for i, u in c] for c in candidates]

    def precision(k: float) -> Fraction:
        kk = Fraction(str(k))  # 0.55 -> 11/20 exactly
        return _sum_of_means((sum(x >= kk for x in c), len(c)) for c in ious) / n

    out = {f"P@{k}": _pct(precision(k)) for k in THRESHOLDS_P}
    out["mAP"] = _pct(sum((precision(k) for k in THRESHOLDS_MAP), Fraction(0)) / len(THRESHOLDS_MAP))
    total_i = _sum_of_means((sum(int(i) for i, _ in c), len(c)) for c in candidates)
    total_u = _sum_of_means((sum(int(u) for _, u in c), len(c)) for c in candidates)
    out["overall_iou"] = _pct(total_i / total_u if total_u else Fraction(1))
    out["mean_iou"] = _pct(_sum_of_means((sum(c, Fraction(0)), len(c)) for c in ious) / n)
    out["n"] = n
    return out


def grounding(ious: Sequence[float], other_ious: Sequence[float | None]) -> dict[str, float]:
    """Over the pairs whose frame has another actor (other_iou not None), their number `n_grounding` and:

    `grounding`  % where the prediction overlaps the referent more than any other actor (IoU strictly
                 above its best IoU with another actor; a tie, e.g. a prediction on nothing, is not
                 grounded). It separates picking the right actor from drawing its mask well; the
                 shuffled control gives its chance level.
    `committed`  % where the prediction overlaps the referent and no other actor at all (other_iou 0):
                 grounded without hedging. A hedged prediction also covers a second actor, because a
                 distractor's probability passed θ × the referent's, and loses IoU for it.
    """
    if len(ious) != len(other_ious):
        raise ValueError(f"{len(ious)} IoUs but {len(other_ious)} other-actor IoUs")
    pairs = [(a, b) for a, b in zip(ious, other_ious) if b is not None]
    if not pairs:
        return {}
    n = len(pairs)
    grounded = sum(a > b for a, b in pairs)
    committed = sum(a > 0 and b == 0 for a, b in pairs)
    return {"grounding": _pct(Fraction(grounded, n)), "committed": _pct(Fraction(committed, n)), "n_grounding": n}


def iou(i: int, u: int) -> float:
    """I / U of one sample (both masks empty -> 1). Python's int / int is correctly rounded, so this
    is float(_iou(i, u)) exactly, without building a Fraction (evaluation calls it for every actor
    of every scored frame)."""
    return 1.0 if u == 0 else i / u


def predict_mask(prob: Tensor, size: tuple[int, int], theta: float) -> Tensor:
    """The protocol's prediction: sigmoid map [h, w] -> original size (H, W) -> θ·max rule."""
    return binarize(resize_to(prob, tuple(size)), theta)


def count_true(masks: Tensor) -> Tensor:
    """The number of True pixels of each bool mask [N, ...] (int64 [N]), exactly, without a bool
    reduction (torch's sum over bools ran ~25x slower on the default's test masks, on a CPU): the
    masks are read 8 pixels at a time as int64 words, and each byte lane of a sum of at most 255
    words holds its own count (<= 255, no carry into the next lane), so words are summed in blocks
    of 255 and the lanes after."""
    n = masks.shape[0]
    if masks.numel() == 0:
        return torch.zeros(n, dtype=torch.int64)
    flat = masks.reshape(n, -1)
    if flat.shape[1] % 8:
        flat = torch.cat([flat, flat.new_zeros(n, 8 - flat.shape[1] % 8)], dim=1)
    words = flat.contiguous().view(torch.int64)
    full = words.shape[1] // 255 * 255
    blocks = [words[:, :full].reshape(n, -1, 255).sum(-1)] if full else []
    if full < words.shape[1]:
        blocks.append(words[:, full:].sum(-1, keepdim=True))
    lanes = torch.cat(blocks, dim=1)
    return lanes.contiguous().view(torch.uint8).reshape(n, -1).sum(-1)


def batch_scores(probs: Tensor, gts: Sequence[Tensor], theta: float) -> list[tuple[int, int]]:
    """(I, U) of every sample of a batch, as evaluation scores it: sigmoid maps probs [B, h, w]
    against ground truths of their original sizes (`batch_counts` with one target each)."""
    if len(probs) != len(gts):
        raise ValueError(f"{len(probs)} maps but {len(gts)} ground truths")
    return [c[0] for c in batch_counts(probs, [gt[None] for gt in gts], theta)]


def batch_counts(probs: Tensor, targets: Sequence[Tensor], theta: float) -> list[list[tuple[int, int]]]:
    """(I, U) of each sample's prediction against each of its targets [K_i, H_i, W_i] (the
    referent first, then other actors of the frame: `core.scoring`'s grounding): `predict_mask`
    once per sample, the counts as tensor ops over each group of samples that share an original
    size (no per-sample Python loop)."""
    if len(probs) != len(targets):
        raise ValueError(f"{len(probs)} maps but {len(targets)} target stacks")
    out: list[list[tuple[int, int]]] = [[] for _ in targets]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(tuple(t.shape[-2:]), []).append(i)
    for size, idx in groups.items():
        ks = [targets[i].shape[0] for i in idx]
        if not sum(ks):
            continue
        pred = predict_mask(probs[idx], size, theta)
        gt = torch.cat([targets[i] for i in idx]).bool()
        per_target = torch.tensor(ks)
        inter = count_true(pred.repeat_interleave(per_target, dim=0) & gt)
        # |P ∪ G| = |P| + |G| − |P ∩ G|: one more pass over the masks saved
        union = (count_true(pred).repeat_interleave(per_target) + count_true(gt) - inter).tolist()
        inter = inter.tolist()
        start = 0
        for i, k in zip(idx, ks):
            out[i] = [(int(n_i), int(n_u)) for n_i, n_u in zip(inter[start : start + k], union[start : start + k])]
            start += k
    return out


def sample_scores(prob: Tensor, gt: Tensor, theta: float) -> tuple[int, int]:
    """One sample, the same way: `batch_scores` of a batch of one."""
    return batch_scores(prob[None], [gt], theta)[0]


_MAP_FRACTIONS = tuple(Fraction(str(k)) for k in THRESHOLDS_MAP)  # the exact K, built once


def sample_map(inter: int, union: int) -> float:
    """One sample's share of mAP: the fraction of K in 0.50:0.05:0.95 with IoU >= K, compared
    exactly as `summarize` does. The mean of it over samples is `summarize`'s mAP / 100 before
    rounding, so paired statistics on mAP can work per sample."""
    v = _iou(int(inter), int(union))
    return sum(v >= k for k in _MAP_FRACTIONS) / len(_MAP_FRACTIONS)
