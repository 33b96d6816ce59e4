"""The classic A2D protocol (core/metrics.py) against hand-computed masks and scores."""

import random
from fractions import Fraction

import pytest
import torch

from core.metrics import (
    THRESHOLDS_MAP,
    THRESHOLDS_P,
    batch_counts,
    batch_scores,
    binarize,
    count_true,
    grounding,
    intersection_union,
    iou,
    resize_to,
    sample_scores,
    summarize,
)

torch.set_num_threads(1)


def mask(rows: list[str]) -> torch.Tensor:
    """'#' = foreground, '.' = background."""
    return torch.tensor([[c == "#" for c in r] for r in rows])


def test_threshold_lists_are_exact():
    assert THRESHOLDS_P == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert THRESHOLDS_MAP == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_intersection_union_on_hand_masks():
    pred = mask(["##..", "##..", "...."])
    gt = mask([".##.", ".##.", "...."])
    assert intersection_union(pred, gt) == (2, 6)
    assert intersection_union(torch.zeros(3, 4, dtype=torch.bool), gt) == (0, 4)  # empty prediction
    assert intersection_union(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool)) == (0, 0)
    with pytest.raises(ValueError, match="differ in size"):
        intersection_union(pred, gt[:2])


def test_empty_prediction_and_empty_ground_truth_scores_one():
    r = summarize([0], [0])
    assert r["mean_iou"] == 100.0 and r["overall_iou"] == 100.0 and r["mAP"] == 100.0
    assert all(r[f"P@{k}"] == 100.0 for k in THRESHOLDS_P)


def test_empty_prediction_against_nonempty_ground_truth_scores_zero():
    i, u = intersection_union(torch.zeros(3, 3, dtype=torch.bool), mask(["#..", "...", "..."]))
    r = summarize([i], [u])
    assert (i, u) == (0, 1)
    assert r["mean_iou"] == 0.0 and r["P@0.5"] == 0.0 and r["mAP"] == 0.0


def test_iou_exactly_at_thresholds_counts():
    # 7 of 10 pixels: IoU = 0.7 exactly -> counts for P@0.7 (and below), not P@0.8
    gt = mask(["##########"])
    pred = mask(["#######..."])
    assert intersection_union(pred, gt) == (7, 10)
    r = summarize([7], [10])
    assert (r["P@0.5"], r["P@0.6"], r["P@0.7"], r["P@0.8"]) == (100.0, 100.0, 100.0, 0.0)
    r = summarize([1], [2])  # IoU 0.5 exactly
    assert (r["P@0.5"], r["P@0.6"]) == (100.0, 0.0)
    # 0.65 is 0.6500000000000001 when built as 0.5 + 3 * 0.05; 13/20 must still count for it
    r = summarize([13], [20])
    assert r["mAP"] == 40.0  # passes 0.5, 0.55, 0.6, 0.65 -> 4 of 10 thresholds


def test_summary_on_hand_example():
    # per-sample IoU: 1/2, 7/10, 0/5, empty/empty = 1, 9/10
    inters, unions = [1, 7, 0, 0, 9], [2, 10, 5, 0, 10]
    r = summarize(inters, unions)
    assert r["n"] == 5
    assert (r["P@0.5"], r["P@0.6"], r["P@0.7"], r["P@0.8"], r["P@0.9"]) == (80.0, 60.0, 60.0, 40.0, 40.0)
    # P@K over 0.50:0.05:0.95 -> 4,3,3,3,3,2,2,2,2,1 samples of 5
    per_k = [80.0, 60.0, 60.0, 60.0, 60.0, 40.0, 40.0, 40.0, 40.0, 20.0]
    assert r["mAP"] == pytest.approx(sum(per_k) / 10) == 50.0
    assert r["overall_iou"] == 63.0  # 17 / 27 = 62.96..
    assert r["mean_iou"] == 62.0  # (0.5 + 0.7 + 0 + 1 + 0.9) / 5
    assert r["overall_iou"] != r["mean_iou"]


def test_percentages_round_half_up_to_one_decimal():
    r = summarize([1] + [0] * 15, [1] * 16)  # 1 of 16 = 6.25 %
    assert r["P@0.5"] == 6.3 and r["mean_iou"] == 6.3


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError):
        summarize([], [])
    with pytest.raises(ValueError):
        summarize([1], [1, 2])


def test_binarize_theta_times_max_per_map():
    prob = torch.tensor([[[0.2, 0.11], [0.1, 0.05]], [[0.9, 0.5], [0.44, 0.46]]])
    out = binarize(prob, 0.5)
    # map 0: threshold 0.1 (strictly above); map 1: threshold 0.45
    assert out.tolist() == [[[True, True], [False, False]], [[True, True], [False, True]]]
    assert not binarize(torch.zeros(4, 4), 0.5).any()  # all-zero map -> empty mask


def test_resize_back_to_original_non_square_size():
    prob = torch.zeros(2, 4, 4)
    prob[:, :, :2] = 1.0  # left half
    out = resize_to(prob, (6, 10))
    assert out.shape == (2, 6, 10)
    # output column j samples input x = (j + 0.5) * 4 / 10 - 0.5: columns 0-3 fall in the ones,
    # 6-9 in the zeros, 4 and 5 blend (0.7 and 0.3)
    assert torch.allclose(out[:, :, :4], torch.ones(2, 6, 4)) and torch.allclose(out[:, :, 6:], torch.zeros(2, 6, 4))
    assert torch.allclose(out[0, 0, 4:6], torch.tensor([0.7, 0.3]))
    assert torch.allclose(resize_to(torch.full((3, 5), 0.3), (7, 11)), torch.full((7, 11), 0.3))


def test_sample_scores_end_to_end():
    prob = torch.zeros(4, 4)
    prob[:, :2] = 0.8
    prob[:, 2:] = 0.3  # below 0.5 * 0.8 -> background
    gt = torch.zeros(8, 12, dtype=torch.bool)
    gt[:, :6] = True
    # width 4 -> 12: column j samples x = (j + 0.5) / 3 - 0.5; column 6 (x = 1.67) blends to
    # 0.8/3 + 0.3*2/3 = 0.467 > 0.4 -> foreground, column 7 (x = 2) is 0.3 -> background
    assert sample_scores(prob, gt, 0.5) == (48, 56)


def test_batch_scores_equal_the_per_sample_protocol_on_random_maps():
    """Evaluation's batched scoring gives the integers of the protocol written sample by sample
    (resize each map to its frame, θ·max, count), over mixed original sizes and edge cases."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(7, 9), (12, 16), (7, 9), (5, 5), (12, 16), (7, 9)]
    probs = torch.rand(len(sizes), 4, 4, generator=gen)
    probs[3] = 0.0  # an all-zero map: empty prediction
    probs[4] = probs[4].round()  # ties at the maximum
    gts = [torch.rand(*hw, generator=gen) > 0.6 for hw in sizes]
    gts[5] = torch.zeros(7, 9, dtype=torch.bool)  # nothing to find
    theta = 0.5
    reference = [intersection_union(binarize(resize_to(p, hw), theta), gt) for p, hw, gt in zip(probs, sizes, gts)]
    assert batch_scores(probs, gts, theta) == reference
    assert [sample_scores(p, gt, theta) for p, gt in zip(probs, gts)] == reference
    assert all(isinstance(v, int) for pair in batch_scores(probs, gts, theta) for v in pair)
    with pytest.raises(ValueError, match="2 maps but 1 ground truths"):
        batch_scores(probs[:2], gts[:1], theta)


def test_sample_map_counts_thresholds_exactly_and_averages_to_map():
    from core.metrics import sample_map

    assert sample_map(13, 20) == 0.4  # IoU 0.65 exactly: 0.5, 0.55, 0.6, 0.65
    assert sample_map(1, 2) == 0.1  # IoU 0.5 exactly: 0.5 only
    assert sample_map(0, 0) == 1.0 and sample_map(0, 5) == 0.0
    # the hand example above: 4 + 3 + 0 + 10 + 9 thresholds passed, mAP 50.0
    inters, unions = [1, 7, 0, 0, 9], [2, 10, 5, 0, 10]
    assert [sample_map(i, u) for i, u in zip(inters, unions)] == [0.1, 0.5, 0.0, 1.0, 0.9]
    assert 100 * sum(sample_map(i, u) for i, u in zip(inters, unions)) / 5 == summarize(inters, unions)["mAP"]


def test_batch_counts_score_each_target_of_a_sample_on_hand_masks():
    """One prediction against the referent and the frame's other actors: the I, U of each, by hand."""
    prob = torch.tensor([[0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]])  # top-left 2x2
    referent = mask(["##..", "#...", "...."])  # 3 px inside the prediction
    other = mask([".##.", ".##.", "...."])  # overlaps 2 of its 4 px
    far = mask(["....", "....", "####"])  # disjoint
    counts = batch_counts(torch.stack([prob, prob]), [torch.stack([referent, other, far]), referent[None]], 0.5)
    assert counts == [[(3, 4), (2, 6), (0, 8)], [(3, 4)]]
    assert batch_scores(torch.stack([prob, prob]), [referent, other], 0.5) == [(3, 4), (2, 6)]
    with pytest.raises(ValueError, match="2 maps but 1 target stacks"):
        batch_counts(torch.stack([prob, prob]), [referent[None]], 0.5)


def test_grounding_counts_strict_wins_over_the_pairs_with_another_actor():
    # wins: 0.5 > 0.3 yes; 0.2 > 0.4 no; a tie at 0 (a prediction on nothing) no; no other actor: left out
    # committed: none of the three touches the referent alone (0.5 also covers another actor)
    assert grounding([0.5, 0.2, 0.0, 0.7], [0.3, 0.4, 0.0, None]) == {
        "grounding": 33.3,
        "committed": 0.0,
        "n_grounding": 3,
    }
    assert grounding([0.9, 0.1], [0.2, 0.05]) == {"grounding": 100.0, "committed": 0.0, "n_grounding": 2}
    assert grounding([0.4], [None]) == {}  # no pair has anything to pick from
    with pytest.raises(ValueError, match="2 IoUs but 1 other-actor IoUs"):
        grounding([0.1, 0.2], [0.3])


def test_committed_counts_the_grounded_pairs_that_touch_no_other_actor():
    # 0.6 alone: committed; 0.6 with 0.1 elsewhere: grounded, hedged; 0.0 / 0.0: on nothing, neither;
    # 0.3 alone: committed however poor the mask; no other actor: left out
    out = grounding([0.6, 0.6, 0.0, 0.3, 0.8], [0.0, 0.1, 0.0, 0.0, None])
    assert out == {"grounding": 75.0, "committed": 50.0, "n_grounding": 4}
    assert out["committed"] <= out["grounding"]  # committed pairs are grounded: IoU > 0 = other_iou


def test_count_true_equals_the_plain_sum_on_every_shape():
    """Byte lanes never carry: odd sizes (padding), over 255 words a mask (blocks), all-True masks."""
    gen = torch.Generator().manual_seed(0)
    for shape in ((5, 3, 7), (4, 64, 80), (2, 255 * 8 + 3), (3, 400, 400), (1, 1), (6, 0)):
        x = torch.rand(*shape, generator=gen) > 0.4
        assert torch.equal(count_true(x), x.reshape(shape[0], -1).sum(-1)), shape
    full = torch.ones(2, 333, 517, dtype=torch.bool)
    assert count_true(full).tolist() == [333 * 517] * 2
    assert count_true(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0,)


def test_iou_is_the_exact_fraction_rounded_once():
    """iou(i, u) is float(Fraction(i, u)) to the last bit (the value every metric's Fraction path
    starts from), on hand values, near-ties and large pixel counts; both masks empty -> 1."""
    assert iou(0, 0) == 1.0 and iou(0, 5) == 0.0 and iou(1, 3) == 1 / 3 and iou(7, 7) == 1.0
    rng = random.Random(0)
    for _ in range(20000):
        u = rng.choice([rng.randint(1, 50), rng.randint(1, 10**7), rng.randint(2**40, 2**52)])
        i = rng.randint(0, u)
        assert iou(i, u) == float(Fraction(i, u)), (i, u)
