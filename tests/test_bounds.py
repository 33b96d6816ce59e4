"""The oracle and language-blind bounds and the strata, on hand-built stores with exact values.

Stores are built through extraction's own chunk + assembly code at S = 8 with original frames
of 8 x 8 (so the resize back to the original size is the identity). The decoder's grid is then
2 x 2 and a mask's map is its 4 x 4 block averages, upsampled bilinearly to 8 x 8. Worked by hand:

- R, the top-left 4 x 4 block: pooled [[1, 0], [0, 0]]; upsampled, p(y, x) = a(y) a(x) with
  a = (1, 1, .875, .625, .375, .125, 0, 0); p > 0.5 · max on 4, 4, 4 and 3 pixels of rows
  0-3, all inside R: I = 15, U = 16, IoU 15/16.
- D, rows 0-3 x cols 2-5 (same class as R): pooled [[.5, .5], [0, 0]]; p = .5 a(y), max .5, so
  rows 0-3 in full: 32 pixels, 16 of them in R: I = 16, U = 32, IoU 1/2 exactly.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core import bounds as bounds_mod
from core.bounds import candidates, decoder_maps, decoder_size, share_of_headroom, split_bounds, store_bounds
from core.data.chunks import build_chunk
from core.data.extract import VideoEntry, assemble_split
from core.data.store import SplitStore
from core.data.types import Expression, Frame, SkipLedger, Video
from core.strata import pair_strata, strata_metrics

S = 8
THETA = 0.5


def block(rows: range, cols: range) -> np.ndarray:
    m = np.zeros((S, S), bool)
    m[rows.start : rows.stop, cols.start : cols.stop] = True
    return m


R = block(range(0, 4), range(0, 4))
D = block(range(0, 4), range(2, 6))
B = block(range(5, 8), range(5, 8))  # another class, never a candidate


def video(
    vid: str,
    frames: list[dict[int, np.ndarray]],
    sentences: list[tuple[str, int, str | None]],
    classes: dict[int, str] | None,
) -> Video:
    return Video(
        video_id=vid,
        split="test",
        source=Path(f"/nowhere/{vid}.mp4"),
        height=S,
        width=S,
        frames=tuple(
            Frame(index=t, instance_ids=tuple(f), masks=np.stack(list(f.values())), source=f"{vid}/{t}")
            for t, f in enumerate(frames)
        ),
        expressions=tuple(
            Expression(text, ref, f"ann:{k}", attribute) for k, (text, ref, attribute) in enumerate(sentences)
        ),
        classes=classes,
    )


def make_store(tmp_path: Path, videos: list[Video], keep_absent: bool = False) -> SplitStore:
    """The videos as one split, through extraction's chunking and assembly (`keep_absent`: as
    for the J&F datasets)."""
    ledger = SkipLedger()
    entries = []
    for v in videos:
        indices = [f.index for f in v.frames]
        decoded = np.zeros((len(indices), v.height, v.width, 3), np.uint8)
        chunk = build_chunk(v, decoded, indices, set(indices), S, ledger)
        assert chunk is not None
        path = tmp_path / "chunks" / f"{v.video_id}.npz"
        chunk.save(path)
        entries.append(VideoEntry(v, path, "test"))
    assemble_split(tmp_path / "test", entries, S, ledger, keep_absent)
    return SplitStore(tmp_path / "test")


ORACLE_15_16 = {  # one pair scoring I = 15, U = 16
    "P@0.5": 100.0,
    "P@0.6": 100.0,
    "P@0.7": 100.0,
    "P@0.8": 100.0,
    "P@0.9": 100.0,
    "mAP": 90.0,  # 0.9375 passes 0.50..0.90, not 0.95
    "overall_iou": 93.8,  # 93.75 rounds half up
    "mean_iou": 93.8,
    "n": 1,
}


def test_decoder_grid_is_input_over_four_rounded_up():
    assert [decoder_size(s) for s in (8, 32, 48, 50, 320)] == [2, 8, 12, 13, 80]


def test_decoder_map_of_a_block_is_pooled_then_upsampled_bilinearly():
    m = decoder_maps(torch.from_numpy(np.stack([R, D])).to(torch.uint8))
    a = torch.tensor([1, 1, 0.875, 0.625, 0.375, 0.125, 0, 0])
    assert torch.equal(m[0], a[:, None] * a[None, :])
    assert torch.equal(m[1], 0.5 * a[:, None].expand(S, S))


def test_oracle_scores_the_pooled_referent_through_the_protocol(tmp_path):
    st = make_store(tmp_path, [video("v1", [{1: R, 2: B}], [("the red ball", 1, "colour")], {1: "ball", 2: "box"})])
    b = split_bounds(st, THETA)
    assert b["oracle"] == ORACLE_15_16
    # a single candidate (the box is another class): the blind bound is the oracle, exactly
    assert candidates(st, 0, 0) == [1]
    assert b["language_blind"] == b["oracle"]


def test_language_blind_is_the_expectation_over_the_same_class_instances(tmp_path):
    st = make_store(
        tmp_path,
        [video("v1", [{1: R, 2: D, 3: B}], [("the big ball", 1, "size")], {1: "ball", 2: "ball", 3: "box"})],
    )
    assert candidates(st, 0, 0) == [1, 2]
    b = split_bounds(st, THETA)
    assert b["oracle"] == ORACLE_15_16
    # candidates' IoUs 15/16 and 1/2: P@0.5 both, P@0.55..0.9 one of two, P@0.95 none
    assert b["language_blind"] == {
        "P@0.5": 100.0,
        "P@0.6": 50.0,
        "P@0.7": 50.0,
        "P@0.8": 50.0,
        "P@0.9": 50.0,
        "mAP": 50.0,  # (1 + 8 x 1/2 + 0) / 10
        "overall_iou": 64.6,  # E[I] / E[U] = 15.5 / 24
        "mean_iou": 71.9,  # (15/16 + 1/2) / 2 = 0.71875
        "n": 1,
    }
    assert share_of_headroom(70.0, 50.0, 90.0) == 0.5
    assert np.isnan(share_of_headroom(1.0, 2.0, 2.0))


def test_unknown_classes_leave_the_oracle_and_no_blind_bound(tmp_path):
    st = make_store(tmp_path, [video("v1", [{1: R, 2: D}], [("the ball", 1, None)], None)])
    assert candidates(st, 0, 0) is None
    assert split_bounds(st, THETA) == {"oracle": ORACLE_15_16}


def test_blind_bound_averages_over_pairs(tmp_path):
    """Two pairs: the two-candidate frame above and a one-candidate frame (R alone): P@0.6 =
    (1/2 + 1) / 2, mean IoU = ((15/16 + 1/2) / 2 + 15/16) / 2 = 53/64, overall (15.5 + 15) / (24 + 16)."""
    st = make_store(
        tmp_path,
        [video("v1", [{1: R, 2: D}, {1: R}], [("the left ball", 1, "position")], {1: "ball", 2: "ball"})],
    )
    blind = split_bounds(st, THETA)["language_blind"]
    assert blind["P@0.6"] == 75.0 and blind["mAP"] == 70.0  # (5/10 + 9/10) / 2
    assert blind["mean_iou"] == 82.8 and blind["overall_iou"] == 76.3  # 0.828125, 0.7625
    assert blind["n"] == 2


def test_pair_bounds_are_each_pairs_scores_and_average_to_the_split_bounds(tmp_path):
    """The same two pairs, per pair: the oracle's R (I 15, U 16, IoU 15/16, 9 of 10 thresholds);
    the blind predictor's expectation over R and D (I 16, U 32, IoU 1/2, 1 threshold) in the first
    pair, R alone in the second; each row names the video by its id, as per_sample.csv does."""
    st = make_store(
        tmp_path,
        [video("v1", [{1: R, 2: D}, {1: R}], [("the left ball", 1, "position")], {1: "ball", 2: "ball"})],
    )
    rows = bounds_mod.pair_bounds(st, THETA)
    got = {(r["pair"], r["bound"]): (r["inter"], r["union"], r["iou"], r["map"], r["video"]) for r in rows}
    assert got == {
        (0, "oracle"): (15.0, 16.0, 15 / 16, 0.9, "v1"),
        (0, "language_blind"): (15.5, 24.0, (15 / 16 + 1 / 2) / 2, 0.5, "v1"),
        (1, "oracle"): (15.0, 16.0, 15 / 16, 0.9, "v1"),
        (1, "language_blind"): (15.0, 16.0, 15 / 16, 0.9, "v1"),
    }
    blind = [r for r in rows if r["bound"] == "language_blind"]
    assert np.mean([r["iou"] for r in blind]) == 53 / 64 and np.mean([r["map"] for r in blind]) == pytest.approx(0.7)
    assert sum(r["inter"] for r in blind) / sum(r["union"] for r in blind) == 30.5 / 40  # overall IoU 76.3


def strata_store(tmp_path: Path) -> SplitStore:
    """v1: ball 1 with ball 2 in its other frame only (a distractor); box 3 alone of its class.
    v2: classes unknown."""
    return make_store(
        tmp_path,
        [
            video(
                "v1",
                [{1: R, 3: B}, {1: R, 2: D, 3: B}],
                [("the red ball", 1, "colour"), ("the box", 3, "size")],
                {1: "ball", 2: "ball", 3: "box"},
            ),
            video("v2", [{1: R}], [("a ball", 1, "motion")], None),
        ],
    )


def test_strata_follow_the_referent_and_the_sentence(tmp_path):
    st = strata_store(tmp_path)
    # the distractor counts from any annotated frame of the video, candidates from the frame
    assert [pair_strata(st, i) for i in range(3)] == [
        {"distractor": 1, "attribute": "colour"},
        {"distractor": 0, "attribute": "size"},
        {"distractor": None, "attribute": "motion"},
    ]
    assert candidates(st, 0, 0) == [1] and candidates(st, 0, 1) == [1, 2]


def test_strata_metrics_summarise_each_stratum_with_its_n():
    rows = [
        {"inter": 1, "union": 2, "distractor": 1, "attribute": "colour"},  # IoU 1/2
        {"inter": 3, "union": 4, "distractor": 1, "attribute": "size"},  # 3/4
        {"inter": 0, "union": 4, "distractor": 0, "attribute": "colour"},  # 0
        {"inter": 9, "union": 10, "distractor": None, "attribute": None},  # in no stratum
    ]
    out = strata_metrics(rows)
    assert list(out) == ["distractor", "no_distractor", "attribute=colour", "attribute=size"]
    assert {k: (v["n"], v["mean_iou"], v["overall_iou"], v["P@0.5"]) for k, v in out.items()} == {
        "distractor": (2, 62.5, 66.7, 100.0),  # (1/2 + 3/4) / 2; 4 / 6
        "no_distractor": (1, 0.0, 0.0, 0.0),
        "attribute=colour": (2, 25.0, 16.7, 50.0),  # (1/2 + 0) / 2; 1 / 6
        "attribute=size": (1, 75.0, 75.0, 100.0),
    }
    assert strata_metrics([rows[3]]) == {}


def test_store_bounds_are_cached_per_fingerprint_and_threshold(tiny_store, monkeypatch):
    p = tiny_store
    first = store_bounds(p)
    path = bounds_mod.cache_path(p)
    fingerprint = json.loads((p.processed / "summary.json").read_text())["fingerprint"]
    assert path == p.outputs / "bounds" / f"{fingerprint}-0.5.json"
    assert json.loads(path.read_text()) == {"fingerprint": fingerprint, "threshold": 0.5, "bounds": first}
    # the synthetic benchmark: A2D splits have both bounds, J-HMDB (one masked actor) the oracle only
    assert set(first) == {"val", "test", "jhmdb"} and set(first["jhmdb"]) == {"oracle"}
    assert set(first["test"]) == {"oracle", "language_blind"}
    assert first["test"]["language_blind"]["mAP"] < first["test"]["oracle"]["mAP"]  # same-class distractors
    monkeypatch.setattr(bounds_mod, "split_bounds", lambda *a: pytest.fail("recomputed a cached bound"))
    assert store_bounds(p) == first
    monkeypatch.undo()
    other = p.replace(**{"eval.threshold": 0.3})
    assert bounds_mod.cache_path(other).name == f"{fingerprint}-0.3.json"
    assert set(store_bounds(other)) == set(first)


def test_jf_bounds_score_the_pooled_referent_and_average_the_candidates(tmp_path):
    """With jf (ytvos / mevis), the oracle's J and F are those of the protocol's prediction from
    the referent's decoder map, and the blind bound's are the mean over the two same-class
    candidates (one expression, one frame); the A2D keys are unchanged."""
    from core.metrics import predict_mask
    from core.vos_metrics import boundary_f, region_similarity

    st = make_store(
        tmp_path,
        [video("v1", [{1: R, 2: D, 3: B}], [("the big ball", 1, "size")], {1: "ball", 2: "ball", 3: "box"})],
    )
    b = split_bounds(st, THETA, jf=True)
    plain = split_bounds(st, THETA)
    assert {k: v for k, v in b["oracle"].items() if k in plain["oracle"]} == plain["oracle"]
    maps = decoder_maps(torch.from_numpy(np.stack([R, D])).to(torch.uint8))
    j, f = [], []
    for m in maps:
        pred = predict_mask(m, (S, S), THETA).numpy()
        j.append(100 * region_similarity(pred, R))
        f.append(100 * boundary_f(pred, R))
    assert b["oracle"]["J"] == pytest.approx(j[0]) and b["oracle"]["F"] == pytest.approx(f[0])
    assert b["oracle"]["J"] == pytest.approx(100 * 15 / 16)  # the A2D oracle's IoU, as J
    blind = b["language_blind"]
    assert blind["J"] == pytest.approx(np.mean(j)) and blind["F"] == pytest.approx(np.mean(f))
    assert blind["J&F"] == pytest.approx((np.mean(j) + np.mean(f)) / 2) and blind["n_expressions"] == 1
    assert "J&F" not in plain["oracle"]


def test_an_absent_referent_is_a_jf_pair_with_an_empty_target(tmp_path):
    """Ball 1 is in frame 0 only, ball 2 in both. A2D drops the pair of frame 1 (counted); the J&F
    datasets score it with an empty target: the oracle predicts nothing there (J = F = 1), the
    blind predictor picks ball 2, the only ball in view (J = F = 0)."""
    v = video("v1", [{1: R, 2: D}, {2: D}], [("the big ball", 1, "size")], {1: "ball", 2: "ball"})
    a2d = make_store(tmp_path / "a2d", [v])
    assert a2d.eval_pairs() == [(0, 0)] and a2d.samples[0].absent == ()
    st = make_store(tmp_path / "jf", [v], keep_absent=True)
    assert st.samples[0].frames == (0,) and st.samples[0].absent == (1,)
    assert st.eval_pairs() == [(0, 0), (0, 1)]
    assert not st.orig_mask(1, 1).any() and st.orig_mask(1, 1).shape == (S, S)
    assert candidates(st, 0, 1) == [2]
    b = split_bounds(st, THETA, jf=True)
    oracle_j = [15 / 16, 1.0]
    assert b["oracle"]["J"] == pytest.approx(100 * np.mean(oracle_j)) and b["oracle"]["n"] == 2
    assert b["oracle"]["mean_iou"] == 96.9  # (15/16 + 1) / 2 = 0.96875, half-up
    blind = b["language_blind"]
    assert blind["J"] == pytest.approx(100 * ((15 / 16 + 1 / 2) / 2 + 0.0) / 2)
    f0 = split_bounds(
        make_store(tmp_path / "one", [video("v1", [{1: R, 2: D}], [("b", 1, "size")], {1: "ball", 2: "ball"})]),
        THETA,
        jf=True,
    )["language_blind"]["F"]
    assert blind["F"] == pytest.approx((f0 + 0.0) / 2)  # frame 1: a ball predicted, none in the target


@pytest.mark.parametrize("hw", [(S, S), (5, 7)])  # 64 bits a mask (one unpack per frame) and 35 (padded bytes)
def test_frame_masks_are_each_instances_orig_mask(tmp_path, hw):
    rng = np.random.default_rng(0)
    h, w = hw
    frames = [{k: rng.random((h, w)) > 0.5 for k in ids} for ids in ((1, 2, 3), (2,), (1, 3))]
    v = video("v1", [{1: R, 2: D, 3: B}, {2: D}, {1: R, 3: B}], [("the ball", 1, None)], None)
    v = replace(
        v,
        height=h,
        width=w,
        frames=tuple(replace(f, masks=np.stack(list(m.values()))) for f, m in zip(v.frames, frames)),
    )
    st = make_store(tmp_path, [v])
    for row in range(len(st.frames)):
        ids, masks = st.frame_masks(row)
        assert ids == list(st.instance_rows(row)) and masks.shape == (len(ids), h, w) and masks.dtype == bool
        for k, x in enumerate(ids):
            assert np.array_equal(masks[k], st.orig_mask(row, x))
            assert np.array_equal(masks[k], frames[row][x])  # exactly what extraction was given
