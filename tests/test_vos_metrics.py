"""DAVIS J&F (core/vos_metrics.py) on hand-built masks, and against the DAVIS-derived reference
implementation (vos-benchmark) on random blobs."""

import numpy as np
import pytest
from scipy import ndimage

from core.errors import UserError
from core.vos_metrics import boundary_f, expression_jf, region_similarity, summarize_jf


def box(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Foreground on rows[0]:rows[1] x cols[0]:cols[1]."""
    m = np.zeros(shape, dtype=bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


def band(top: int, bottom: int, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    """Full-width band of rows top:bottom; its seg2bmap boundary is rows top-1 and bottom-1, all columns."""
    return box(shape, (top, bottom), (0, shape[1]))


EMPTY = np.zeros((100, 100), dtype=bool)


# --- J -----------------------------------------------------------------------------------------


def test_j_of_two_overlapping_squares():
    a = box((10, 10), (2, 6), (2, 6))  # 4x4
    b = box((10, 10), (3, 7), (3, 7))  # 4x4 moved by (1, 1): overlap 3x3 = 9, union 16 + 16 - 9 = 23
    assert region_similarity(a, b) == pytest.approx(9 / 23, abs=1e-15)
    assert region_similarity(a, a) == 1.0


def test_j_empty_cases():
    gt = box((10, 10), (2, 6), (2, 6))
    assert region_similarity(np.zeros((10, 10)), np.zeros((10, 10))) == 1.0
    assert region_similarity(np.zeros((10, 10)), gt) == 0.0
    assert region_similarity(gt, np.zeros((10, 10))) == 0.0


def test_j_treats_nonzero_labels_as_foreground():
    gt = box((10, 10), (2, 6), (2, 6)).astype(np.uint8) * 255
    assert region_similarity(gt, gt > 0) == 1.0


# --- F -----------------------------------------------------------------------------------------
# 100x100 image: diagonal 141.42..., 0.008 * 141.42 = 1.131 -> tolerance ceil(1.131) = 2 pixels.


def test_f_identical_masks_is_one():
    m = box((100, 100), (20, 50), (30, 70))
    assert boundary_f(m, m) == 1.0


def test_f_shift_within_tolerance_is_one_beyond_is_zero():
    gt = band(40, 60)  # boundary rows 39 and 59
    assert boundary_f(band(41, 61), gt) == 1.0  # boundary 1 row away
    assert boundary_f(band(42, 62), gt) == 1.0  # 2 rows away: exactly at the tolerance, still a match
    assert boundary_f(band(43, 63), gt) == 0.0  # 3 rows away: no boundary pixel matches
    assert region_similarity(band(43, 63), gt) == pytest.approx(17 / 23, abs=1e-15)  # J still high


def test_f_tolerance_grows_with_image_size():
    # 200x200: 0.008 * 282.84 = 2.26 -> 3 pixels, so the 3-row shift now matches
    assert boundary_f(band(43, 63, (200, 200)), band(40, 60, (200, 200))) == 1.0
    assert boundary_f(band(44, 64, (200, 200)), band(40, 60, (200, 200))) == 0.0


def test_f_partial_match():
    gt = band(40, 60)  # 200 boundary pixels (rows 39, 59)
    pred = band(40, 60) | band(80, 90)  # 400 boundary pixels (rows 39, 59, 79, 89), half of them matched
    # precision 200/400, recall 200/200 -> F = 2 * 0.5 * 1 / 1.5 = 2/3
    assert boundary_f(pred, gt) == pytest.approx(2 / 3, abs=1e-15)
    assert boundary_f(gt, pred) == pytest.approx(2 / 3, abs=1e-15)  # symmetric: precision <-> recall


def test_f_empty_cases():
    m = box((100, 100), (20, 50), (30, 70))
    assert boundary_f(EMPTY, EMPTY) == 1.0
    assert boundary_f(EMPTY, m) == 0.0
    assert boundary_f(m, EMPTY) == 0.0


def test_f_full_mask_has_no_boundary_as_in_davis():
    full = np.ones((100, 100), dtype=bool)
    assert boundary_f(full, full) == 1.0
    assert boundary_f(full, EMPTY) == 1.0  # seg2bmap quirk: both boundaries empty
    assert region_similarity(full, EMPTY) == 0.0


def test_bad_input_raises_user_error():
    with pytest.raises(UserError, match="differ in size"):
        region_similarity(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(UserError, match="differ in size"):
        boundary_f(np.zeros((4, 5)), np.zeros((4, 6)))
    with pytest.raises(UserError, match="2-D"):
        boundary_f(np.zeros((1, 4, 5)), np.zeros((1, 4, 5)))
    with pytest.raises(UserError, match="2-D"):
        region_similarity(np.zeros(5), np.zeros(5))
    with pytest.raises(UserError, match="no pixels"):
        boundary_f(np.zeros((0, 5)), np.zeros((0, 5)))


# --- aggregation -------------------------------------------------------------------------------


def test_expression_mean_over_all_frames():
    gt = band(40, 60)
    frames = [
        (gt, gt),  # J 1, F 1
        (band(40, 60) | band(80, 90), gt),  # J 20/30, F 2/3
        (EMPTY, gt),  # J 0, F 0
        (EMPTY, EMPTY),  # J 1, F 1: counts like any other frame (first and last not skipped)
    ]
    j, f = expression_jf([p for p, _ in frames], [g for _, g in frames])
    assert j == pytest.approx((1 + 2 / 3 + 0 + 1) / 4, abs=1e-15)
    assert f == pytest.approx((1 + 2 / 3 + 0 + 1) / 4, abs=1e-15)
    with pytest.raises(UserError, match="2 predicted masks but 1"):
        expression_jf([gt, gt], [gt])
    with pytest.raises(UserError, match="no annotated frames"):
        expression_jf([], [])


def test_summary_means_over_expressions_in_percent():
    r = summarize_jf([(0.5, 0.7), (1.0, 0.9), (0.3, 0.2)])
    assert r.keys() == {"J", "F", "J&F"}
    assert r["J"] == pytest.approx(60.0, abs=1e-12)  # (50 + 100 + 30) / 3
    assert r["F"] == pytest.approx(60.0, abs=1e-12)  # (70 + 90 + 20) / 3
    assert r["J&F"] == pytest.approx(60.0, abs=1e-12)
    r = summarize_jf([(0.5, 0.7), (1.0, 0.9)])
    assert (r["J"], r["F"], r["J&F"]) == pytest.approx((75.0, 80.0, 77.5), abs=1e-12)
    with pytest.raises(UserError, match="no expressions"):
        summarize_jf([])


# --- against the reference (vos-benchmark, derived from the DAVIS 2017 evaluation code) ---------


def blob(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth random blobs: thresholded Gaussian-filtered noise, a few holes and islands."""
    sigma = rng.uniform(2, 0.08 * min(shape))
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, rng.uniform(0.4, 0.95))


def prediction_for(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    kind = rng.integers(5)
    if kind == 0:  # shifted
        return np.roll(gt, tuple(rng.integers(-6, 7, size=2)), axis=(0, 1))
    if kind == 1:  # eroded / dilated
        op = ndimage.binary_erosion if rng.random() < 0.5 else ndimage.binary_dilation
        return op(gt, iterations=int(rng.integers(1, 4)))
    if kind == 2:  # a different blob
        return blob(rng, gt.shape)
    if kind == 3:  # gt with boundary noise
        return gt ^ (ndimage.binary_dilation(gt) & ~gt & (rng.random(gt.shape) < 0.3))
    return np.zeros_like(gt) if rng.random() < 0.5 else np.ones_like(gt)


def reference_jf(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Per-frame J, F from vos_benchmark's Evaluator (object id 1 in uint8 label maps)."""
    from vos_benchmark.evaluator import Evaluator

    ev = Evaluator()
    ev.feed_frame(pred.astype(np.uint8), gt.astype(np.uint8))
    return float(ev.object_iou[1][0]), float(ev.boundary_f[1][0])


# (75, 100) and (375, 500): 0.008 * diagonal is an integer (1, 5) -> the ceil is taken as is
SHAPES = [(37, 53), (64, 64), (75, 100), (90, 160), (120, 97), (375, 500)]


def test_agrees_with_reference_on_random_blobs():
    pytest.importorskip("vos_benchmark")
    rng = np.random.default_rng(0)
    cases = []
    for i in range(60):
        gt = blob(rng, SHAPES[i % len(SHAPES)])
        cases.append((prediction_for(rng, gt), gt))
    full, empty = np.ones((64, 64), bool), np.zeros((64, 64), bool)
    cases += [(full, empty), (empty, full), (empty, blob(rng, (64, 64))), (box((64, 64), (63, 64), (63, 64)), empty)]
    diff, fs = 0.0, []
    for pred, gt in cases:
        if not (pred.any() or gt.any()):
            continue  # the reference scores no object then
        j_ref, f_ref = reference_jf(pred, gt)
        j, f = region_similarity(pred, gt), boundary_f(pred, gt)
        diff = max(diff, abs(j - j_ref), abs(f - f_ref))
        fs.append(f)
    assert diff <= 1e-6
    assert len(fs) >= 50 and 0.05 < np.mean([0 < f < 1 for f in fs])  # not only trivial 0 / 1 cases


def test_expression_agrees_with_reference():
    pytest.importorskip("vos_benchmark")
    from vos_benchmark.evaluator import Evaluator

    rng = np.random.default_rng(1)
    gts = [blob(rng, (72, 96)) for _ in range(6)]
    gts[3][:] = False  # the object leaves a frame; the reference still counts it (seen in frame 0)
    preds = [prediction_for(rng, g) for g in gts]
    ev = Evaluator()
    for p, g in zip(preds, gts):
        ev.feed_frame(p.astype(np.uint8), g.astype(np.uint8))
    j_ref, f_ref = ev.conclude()
    j, f = expression_jf(preds, gts)
    assert 100 * j == pytest.approx(j_ref[1], abs=1e-6)
    assert 100 * f == pytest.approx(f_ref[1], abs=1e-6)


# --- the evaluation's path: a batch of sigmoid maps, scored pairs -> J&F ------------------------


def test_batch_boundary_f_is_f_of_the_protocols_prediction_per_sample():
    """Maps of two sizes in one batch: each F equals boundary_f of predict_mask of its own map
    (resize to its ground truth's size, θ·max), so grouping by size changes nothing."""
    import torch

    from core.metrics import predict_mask
    from core.vos_metrics import batch_boundary_f

    g = torch.Generator().manual_seed(0)
    probs = torch.rand((5, 12, 12), generator=g)
    gts = [torch.rand((h, w), generator=g) > 0.6 for h, w in ((30, 40), (30, 40), (25, 25), (30, 40), (25, 25))]
    got = batch_boundary_f(probs, gts, 0.5)
    want = [boundary_f(predict_mask(p, tuple(t.shape), 0.5).numpy(), t.numpy()) for p, t in zip(probs, gts)]
    assert got == want
    assert len(set(got)) > 1  # the masks differ, so must the scores


def test_summarize_pairs_means_per_expression_first():
    """Expression 7 has three pairs (J 1, 0, 0.5; F 1, 0, 1), expression 9 one (J 0, F 0.5): J =
    (0.5 + 0) / 2 = 25 %, F = (2/3 + 0.5) / 2 = 58.33 %, not the pairs' means (37.5 %, 62.5 %)."""
    from core.vos_metrics import summarize_pairs

    rows = [
        {"sample": 7, "iou": 1.0, "f": 1.0},
        {"sample": 9, "iou": 0.0, "f": 0.5},
        {"sample": 7, "iou": 0.0, "f": 0.0},
        {"sample": 7, "iou": 0.5, "f": 1.0},
    ]
    out = summarize_pairs(rows)
    assert out["J"] == pytest.approx(25.0) and out["F"] == pytest.approx(175 / 3)
    assert out["J&F"] == pytest.approx((25.0 + 175 / 3) / 2) and out["n_expressions"] == 2
