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
from collections.abc import Sequence
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


def summarize(inters: Sequence[int], unions: Sequence[int]) -> dict[str, float]:
    """P@0.5..P@0.9, mAP (0.5:0.95), overall_iou, mean_iou (percent, one decimal) and n."""
    if len(inters) != len(unions):
        raise ValueError(f"{len(inters)} intersections but {len(unions)} unions")
    if not inters:
        raise ValueError("no samples to summarize")
    n = len(inters)
    ious = [_iou(int(i), int(u)) for i, u in zip(inters, unions)]

    def precision(k: float) -> Fraction:
        kk = Fraction(str(k))  # 0.55 -> 11/20 exactly
        return Fraction(sum(iou >= kk for iou in ious), n)

    out = {f"P@{k}": _pct(precision(k)) for k in THRESHOLDS_P}
    out["mAP"] = _pct(sum((precision(k) for k in THRESHOLDS_MAP), Fraction(0)) / len(THRESHOLDS_MAP))
    total_u = sum(int(u) for u in unions)
    out["overall_iou"] = _pct(Fraction(sum(int(i) for i in inters), total_u) if total_u else Fraction(1))
    out["mean_iou"] = _pct(sum(ious, Fraction(0)) / n)
    out["n"] = n
    return out


def iou(i: int, u: int) -> float:
    """I / U of one sample (both masks empty -> 1)."""
    return float(_iou(i, u))


def predict_mask(prob: Tensor, size: tuple[int, int], theta: float) -> Tensor:
    """The protocol's prediction: sigmoid map [h, w] -> original size (H, W) -> θ·max rule."""
    return binarize(resize_to(prob, tuple(size)), theta)


def batch_scores(probs: Tensor, gts: Sequence[Tensor], theta: float) -> list[tuple[int, int]]:
    """(I, U) of every sample of a batch, as evaluation scores it: sigmoid maps probs [B, h, w]
    against ground truths of their original sizes, `predict_mask` and the counts done as tensor
    ops over each group of samples that share an original size (no per-sample Python loop)."""
    if len(probs) != len(gts):
        raise ValueError(f"{len(probs)} maps but {len(gts)} ground truths")
    out: list[tuple[int, int]] = [(0, 0)] * len(gts)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, gt in enumerate(gts):
        groups.setdefault(tuple(gt.shape[-2:]), []).append(i)
    for size, idx in groups.items():
        pred = predict_mask(probs[idx], size, theta)
        gt = torch.stack([gts[i] for i in idx]).bool()
        inter = (pred & gt).sum(dim=(-2, -1)).tolist()
        union = (pred | gt).sum(dim=(-2, -1)).tolist()
        for i, n_i, n_u in zip(idx, inter, union):
            out[i] = (int(n_i), int(n_u))
    return out


def sample_scores(prob: Tensor, gt: Tensor, theta: float) -> tuple[int, int]:
    """One sample, the same way: `batch_scores` of a batch of one."""
    return batch_scores(prob[None], [gt], theta)[0]
