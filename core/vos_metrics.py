"""DAVIS J&F for referring video object segmentation (Ref-YouTube-VOS, MeViS), in numpy.

Per frame, on boolean masks (nonzero = foreground), as the DAVIS 2017 evaluation code:
J = IoU of prediction and ground truth (both empty -> 1); F = boundary F-measure, the 1-pixel
boundaries of both masks (seg2bmap) matched within ceil(0.008 · image diagonal) pixels.
Per expression: mean J and mean F over all its annotated frames (none skipped, as MeViS).
Over the set: mean over expressions, J&F = (J + F) / 2, in percent.

Evaluation (`core.evaluate`, on a dataset of the DAVIS metric family: core.data.spec) scores
the protocol's predicted masks this way: J of a (frame, expression) pair is its IoU, F comes
from `batch_boundary_f`, and a split's J / F / J&F is `summarize_pairs` of its scored pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from core.errors import DataError, UserError
from core.metrics import predict_mask

JF_KEYS = ("J", "F", "J&F")  # the keys `summarize_jf` adds to a split's metrics


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 2 or gt.ndim != 2:
        raise DataError(f"masks must be 2-D (H, W), got prediction {pred.shape} and ground truth {gt.shape}")
    if pred.shape != gt.shape:
        raise DataError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if gt.size == 0:
        raise DataError(f"masks of size {gt.shape} have no pixels")
    return pred.astype(bool), gt.astype(bool)


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS J of one frame: |pred ∧ gt| / |pred ∨ gt|; 1 when both masks are empty."""
    pred, gt = _check_pair(pred, gt)
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def _seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS's seg2bmap (D. Martin, 2003): 1-pixel boundary map, offset half a pixel towards the
    origin. A pixel is boundary where it differs from its east, south or south-east neighbour
    (neighbours past the edge read as background, except that the last row compares only east,
    the last column only south, and the bottom-right pixel is never boundary). Quirk kept: an
    all-foreground mask has no boundary."""
    seg = np.asarray(seg, dtype=bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _dilate_disk(b: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of b by DAVIS's disk(radius) = {(dy, dx): dy² + dx² <= radius²} (skimage's
    disk; pixels past the edge add nothing, as cv2.dilate). Done as "Euclidean distance to the
    nearest pixel of b <= radius", the same set (exactly, radius being an integer)."""
    if not b.any():
        return np.zeros_like(b)
    return ndimage.distance_transform_edt(~b) <= radius


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS F of one frame (db_eval_boundary): F-measure of the seg2bmap boundaries, a boundary
    pixel matching when the other boundary lies within bound_pix = ceil(bound_th · diagonal)
    pixels, the diagonal as np.linalg.norm(shape). Both boundaries empty -> 1, exactly one empty
    -> 0."""
    pred, gt = _check_pair(pred, gt)
    bound_pix = math.ceil(bound_th * float(np.linalg.norm(gt.shape)))
    pred_b, gt_b = _seg2bmap(pred), _seg2bmap(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    precision = int((pred_b & _dilate_disk(gt_b, bound_pix)).sum()) / n_pred
    recall = int((gt_b & _dilate_disk(pred_b, bound_pix)).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def expression_jf(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> tuple[float, float]:
    """(mean J, mean F) of one expression over all its annotated frames, as fractions in [0, 1]."""
    if len(preds) != len(gts):
        raise DataError(f"{len(preds)} predicted masks but {len(gts)} ground-truth masks")
    if len(gts) == 0:
        raise DataError("an expression has no annotated frames")
    j = [region_similarity(p, g) for p, g in zip(preds, gts)]
    f = [boundary_f(p, g) for p, g in zip(preds, gts)]
    return float(np.mean(j)), float(np.mean(f))


def summarize_jf(per_expression: Sequence[tuple[float, float]]) -> dict[str, float]:
    """Mean J and mean F over expressions (each an `expression_jf` pair) and J&F = (J + F) / 2,
    in percent, unrounded."""
    if len(per_expression) == 0:
        raise UserError("no expressions to summarize J&F over")
    j = 100 * float(np.mean([jf[0] for jf in per_expression]))
    f = 100 * float(np.mean([jf[1] for jf in per_expression]))
    return {"J": j, "F": f, "J&F": (j + f) / 2}


def batch_boundary_f(probs: torch.Tensor, gts: Sequence[torch.Tensor], theta: float) -> list[float]:
    """DAVIS F of every sample of a batch, on the protocol's prediction: sigmoid maps probs
    [B, h, w] -> each ground truth's original size -> θ·max rule (core.metrics.predict_mask,
    resized once per group of samples that share a size, as core.metrics.batch_scores)."""
    if len(probs) != len(gts):
        raise ValueError(f"{len(probs)} maps but {len(gts)} ground truths")
    out = [0.0] * len(gts)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, gt in enumerate(gts):
        groups.setdefault(tuple(gt.shape[-2:]), []).append(i)
    for size, idx in groups.items():
        pred = predict_mask(probs[idx], size, theta).numpy()
        for k, i in enumerate(idx):
            out[i] = boundary_f(pred[k], gts[i].numpy())
    return out


def summarize_pairs(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """J, F and J&F (`summarize_jf`) of scored (frame, expression) pairs, each row with its
    expression id 'sample', its J as 'iou' (I / U, both empty -> 1: `region_similarity`) and its
    F as 'f': per expression the mean over its pairs, then the mean over expressions; plus
    n_expressions."""
    per_expression: dict[Any, list[tuple[float, float]]] = {}
    for r in rows:
        per_expression.setdefault(r["sample"], []).append((float(r["iou"]), float(r["f"])))
    jf = [(float(np.mean([p[0] for p in v])), float(np.mean([p[1] for p in v]))) for v in per_expression.values()]
    return {**summarize_jf(jf), "n_expressions": len(jf)}
