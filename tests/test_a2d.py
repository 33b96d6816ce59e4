"""A2D Sentences reader and writers, on tiny fixtures in the real on-disk layout."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.data import a2d, a2d_write
from core.data.a2d import VideosetRow, read_a2d, video_path
from core.data.frames import load_frames
from core.data.ground_truth import write_ground_truth
from core.data.types import SkipLedger
from core.data.video import write_mp4
from core.errors import DataError
from core.sections import SKIP_CLASSES

H, W = 6, 10  # non-square on purpose: a transposition bug cannot hide
ALL = frozenset(SKIP_CLASSES)


def _mp4(root: Path, vid: str, t: int = 8) -> None:
    # frame k is uniformly grey 20*k, so decoded frames can be told apart
    frames = np.stack([np.full((H, W, 3), 20 * k, np.uint8) for k in range(t)])
    write_mp4(video_path(root, vid), frames)


def _row(vid: str, subset: int) -> VideosetRow:
    return VideosetRow(vid, 11, 0.0, 1.0, H, W, 8, 2, subset)


def _masks_a() -> np.ndarray:
    """Two instances of vidA/00002: an 'L' (id 1) and a 2x2 block (id 2)."""
    m = np.zeros((2, H, W), bool)
    m[0, 0:3, 1] = True  # vertical bar at x=1, y=0..2
    m[0, 2, 1:5] = True  # foot at y=2, x=1..4
    m[1, 4:6, 7:9] = True
    return m


def _hand_h5(path: Path, **datasets: np.ndarray) -> None:
    """An h5 written without our writer, in the transposed MATLAB layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)


def build(root: Path) -> Path:
    """vidA (train, ours), vidB (test, hand-made h5), vidM (missed), vidC (no sentences)."""
    a2d_write.write_videoset(root, [_row("vidA", 0), _row("vidB", 1), _row("vidM", 0), _row("vidC", 1)])
    a2d_write.write_missed_videos(root, ["vidM"])
    for vid in ("vidA", "vidB", "vidC"):
        _mp4(root, vid)
    a2d_write.write_frame_h5(root, "vidA", 2, [1, 2], _masks_a())
    single = np.zeros((1, H, W), bool)
    single[0, 5, 0] = single[0, 5, 1] = True  # id 1 only; id 2 is absent from frame 5
    a2d_write.write_frame_h5(root, "vidA", 5, [1], single)
    # vidB by hand: reMask is (W, H) for one instance, (N, W, H) for several
    one = np.zeros((W, H), np.float64)
    one[7, 1] = 1.0  # x=7, y=1
    _hand_h5(
        root / a2d.INSTANCES / "vidB" / "00001.h5",
        instance=np.array([[3.0]]),
        reMask=one,
        reBBox=np.array([7.0, 1, 7, 1]),
    )
    two = np.zeros((2, W, H), np.uint8)
    two[0, 9, 5] = 1  # id 3 at x=9, y=5
    two[1, 0, 0] = 1  # id 4 at x=0, y=0
    _hand_h5(root / a2d.INSTANCES / "vidB" / "00004.h5", instance=np.array([3.0, 4.0]), reMask=two)
    a2d_write.write_frame_h5(root, "vidC", 1, [1], single)
    a2d_write.write_annotations(
        root,
        [
            ("vidA", "1", "the man, on the left"),  # line 2
            ("vidA", "2", "a dog running"),  # 3
            ("vidA", "1 (copy)", "the man on the left"),  # 4
            ("vidM", "1", "a bird flying"),  # 5
            ("vidB", "3", "  a ball rolling "),  # 6
            ("vidA", "7", "a ghost"),  # 7: id 7 is in no frame
            ("vidB", "4", "a cat"),  # 8
            ("vidM", "2", "another bird"),  # 9
        ],
    )
    return root


def ann(root: Path) -> Path:
    return root / "text_annotations" / "a2d_annotation.txt"


def _append_line(root: Path, line: str) -> int:
    """Append a raw annotation line; returns its 1-based line number."""
    path = ann(root)
    text = path.read_text()
    path.write_text(text + line + "\n")
    return text.count("\n") + 1


def test_reads_videos_frames_masks_and_sentences(tmp_path):
    root = build(tmp_path)
    ledger = SkipLedger()
    videos = list(read_a2d(root, ledger))
    assert [v.video_id for v in videos] == ["vidA", "vidB"]  # videoset order; vidM missed, vidC no sentences
    va, vb = videos
    assert (va.split, vb.split) == ("train", "test")
    assert (va.height, va.width) == (H, W)
    assert va.source == root / "Release" / "clips320H" / "vidA.mp4"
    # 1-indexed file names -> 0-based frame indices
    assert [f.index for f in va.frames] == [1, 4]
    assert [f.index for f in vb.frames] == [0, 3]
    f2, f5 = va.frames
    assert f2.instance_ids == (1, 2) and f5.instance_ids == (1,)
    assert f2.masks.dtype == bool and f2.masks.shape == (2, H, W)
    assert f2.masks[0, 0, 1] and f2.masks[0, 2, 4] and not f2.masks[0, 0, 4]  # the 'L'
    assert f2.masks[0].sum() == 6 and f2.masks[1].sum() == 4 and f2.masks[1, 5, 8]
    assert f5.masks.shape == (1, H, W) and f5.masks[0, 5, 0] and f5.masks[0].sum() == 2
    assert f5.source.endswith("vidA/00005.h5")
    # the hand-made transposed files
    b1, b4 = vb.frames
    assert b1.instance_ids == (3,) and b1.masks.shape == (1, H, W)
    assert b1.masks[0, 1, 7] and b1.masks[0].sum() == 1
    assert b4.instance_ids == (3, 4) and b4.masks[0, 5, 9] and b4.masks[1, 0, 0] and b4.masks.sum() == 2
    # sentences: stripped, not lower-cased, with file:line sources
    assert [(e.text, e.referent) for e in va.expressions] == [("the man, on the left", 1), ("a dog running", 2)]
    assert [e.source for e in va.expressions] == [f"{ann(root)}:2", f"{ann(root)}:3"]
    assert [(e.text, e.referent, e.source) for e in vb.expressions] == [
        ("a ball rolling", 3, f"{ann(root)}:6"),
        ("a cat", 4, f"{ann(root)}:8"),
    ]
    # quirks: missed video counted once (two sentences), the copy row, the invisible referent
    assert dict(ledger.counts) == {
        "missed_video": 1,
        "copy_instance_row": 1,
        "referent_never_visible": 1,
        "video_without_sentences": 1,
    }
    assert ledger.examples["video_without_sentences"] == ["vidC"]
    assert ledger.examples["missed_video"] == ["vidM"]
    assert ledger.examples["copy_instance_row"][0].startswith(f"{ann(root)}:4")
    assert ledger.examples["referent_never_visible"][0].startswith(f"{ann(root)}:7")


def _add_excluded_video(root: Path, vid: str = "e7Kjy13woXg") -> None:
    """The real release's e7Kjy13woXg: in videoset.csv, with an mp4, h5 masks and two
    annotation rows (a2d_annotation.txt lines 4444-4445 there), all otherwise valid."""
    videoset = root / "Release" / "videoset.csv"
    videoset.write_text(videoset.read_text() + f"{vid},11,0.0,1.0,{H},{W},8,2,0\n")  # as _row(vid, 0)
    _mp4(root, vid)
    a2d_write.write_frame_h5(root, vid, 2, [1, 2], _masks_a())
    _append_line(root, f"{vid},1,the man on the left")
    _append_line(root, f"{vid},2,a dog running")


def test_excluded_video_is_dropped_by_id_and_counted(tmp_path):
    """e7Kjy13woXg is excluded wherever it appears, as public A2D loaders do; others unchanged."""
    before_ledger = SkipLedger()
    before = list(read_a2d(build(tmp_path / "a"), before_ledger))
    root = build(tmp_path / "b")
    _add_excluded_video(root)
    ledger = SkipLedger()  # nothing allowed: the excluded video raises nothing
    videos = list(read_a2d(root, ledger))
    assert [v.video_id for v in videos] == ["vidA", "vidB"]
    assert [(e.text, e.referent) for v in videos for e in v.expressions] == [
        (e.text, e.referent) for v in before for e in v.expressions
    ]
    assert dict(ledger.counts) == {**before_ledger.counts, "excluded_video": 1}
    (example,) = ledger.examples["excluded_video"]
    assert example.startswith("e7Kjy13woXg: public A2D loaders exclude it by id")
    assert "videoset.csv" in example and "2 rows of a2d_annotation.txt" in example
    assert "a2d_annotation_with_instances/e7Kjy13woXg" in example


def test_excluded_video_rows_outside_videoset_are_not_an_error(tmp_path):
    # without the id rule, rows of a video missing from videoset.csv are bad_annotation
    root = build(tmp_path)
    _append_line(root, "e7Kjy13woXg,1,a man")
    ledger = SkipLedger()
    assert [v.video_id for v in read_a2d(root, ledger)] == ["vidA", "vidB"]
    assert ledger.counts["excluded_video"] == 1
    assert ledger.examples["excluded_video"][0].endswith("(found in 1 row of a2d_annotation.txt)")


def test_instance_absent_from_a_frame_is_kept(tmp_path):
    # id 2 is only in frame index 1; its sentence survives and frame 4 keeps its own ids
    va = next(read_a2d(build(tmp_path), SkipLedger()))
    assert 2 in [e.referent for e in va.expressions]
    assert [2 in f.instance_ids for f in va.frames] == [True, False]


def test_writer_layout_is_transposed_like_matlab(tmp_path):
    a2d_write.write_frame_h5(tmp_path, "v", 3, [1, 2], _masks_a())
    a2d_write.write_frame_h5(tmp_path, "v", 12, [5], _masks_a()[:1])
    with h5py.File(tmp_path / a2d.INSTANCES / "v" / "00003.h5") as f:
        assert f["instance"].dtype == np.float64 and f["instance"][()].tolist() == [1.0, 2.0]
        assert f["reMask"].shape == (2, W, H) and f["reMask"][0, 4, 2] == 1  # x=4, y=2
        assert f["reBBox"][()].tolist() == [[1, 7], [0, 4], [4, 8], [2, 5]]  # x1, y1, x2, y2 per column
    with h5py.File(tmp_path / a2d.INSTANCES / "v" / "00012.h5") as f:
        assert f["reMask"].shape == (W, H)  # 2-D for a single instance
        assert f["reBBox"].shape == (4, 1)
    a2d_write.write_videoset(tmp_path, [_row("v", 1)])
    assert (tmp_path / "Release" / "videoset.csv").read_text() == "v,11,0.0,1.0,6,10,8,2,1\n"
    a2d_write.write_annotations(tmp_path, [("v", "1", "a, b")])
    assert ann(tmp_path).read_text() == 'video_id,instance_id,query\nv,1,"a, b"\n'
    a2d_write.write_missed_videos(tmp_path, ["x", "y"])
    assert (tmp_path / "text_annotations" / "a2d_missed_videos.txt").read_text() == "x\ny\n"


def test_extra_columns_and_no_missed_file(tmp_path):
    root = build(tmp_path)
    (root / "text_annotations" / "a2d_missed_videos.txt").unlink()
    ann(root).write_text("query,video_id,instance_id,note\na cat,vidB,4,x\n\n")
    videos = list(read_a2d(root, SkipLedger()))
    assert [(v.video_id, [e.text for e in v.expressions]) for v in videos] == [("vidB", ["a cat"])]


def test_real_release_h5_quirks(tmp_path):
    """More masks than ids (trailing ones dropped) and a duplicated id (later one dropped)."""
    root = build(tmp_path)
    three = np.zeros((3, W, H), np.uint8)
    three[0, 2, 3] = three[1, 4, 4] = three[2, 6, 5] = 1
    _hand_h5(root / a2d.INSTANCES / "vidB" / "00006.h5", instance=np.array([3.0, 4.0]), reMask=three)
    _hand_h5(root / a2d.INSTANCES / "vidB" / "00007.h5", instance=np.array([4.0, 3.0, 4.0]), reMask=three)
    ledger = SkipLedger()
    vb = list(read_a2d(root, ledger))[1]
    f6, f7 = vb.frames[2:]
    assert f6.instance_ids == (3, 4) and f6.masks.shape == (2, H, W) and f6.masks[1, 4, 4]
    assert f7.instance_ids == (4, 3) and f7.masks[0, 3, 2] and f7.masks[1, 4, 4]
    assert ledger.counts["h5_extra_masks"] == 1 and ledger.counts["duplicate_instance_id"] == 1


def test_load_frames_decodes_requested_indices(tmp_path):
    va = next(read_a2d(build(tmp_path), SkipLedger()))
    frames = load_frames(va, [4, 1])
    assert frames.shape == (2, H, W, 3) and frames.dtype == np.uint8
    assert abs(float(frames[0].mean()) - 80) < 4 and abs(float(frames[1].mean()) - 20) < 4


# ---- bad input: DataError naming the file, or counted when allowed ----------------------


def test_missing_root_and_required_files_always_raise(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        list(read_a2d(tmp_path / "nowhere", SkipLedger(allowed=ALL)))
    root = build(tmp_path / "r")
    ann(root).unlink()
    with pytest.raises(DataError, match="a2d_annotation.txt"):
        list(read_a2d(root, SkipLedger(allowed=ALL)))
    (root / "Release" / "videoset.csv").unlink()
    with pytest.raises(DataError, match="videoset.csv"):
        list(read_a2d(root, SkipLedger(allowed=ALL)))


def _raises_then_counts(root: Path, cls: str, match: str) -> SkipLedger:
    with pytest.raises(DataError, match=match) as err:
        list(read_a2d(root, SkipLedger()))
    assert cls in str(err.value)  # the message says how to skip instead
    assert err.value.problem_class == cls and "to skip" not in err.value.detail  # structured fields
    ledger = SkipLedger(allowed=frozenset({cls}))
    list(read_a2d(root, ledger))
    assert ledger.counts[cls] == 1
    assert ledger.examples[cls] == [err.value.detail]  # the same detail, counted instead of raised
    return ledger


def test_problem_error_carries_class_and_detail():
    """Callers read the fields; the one-line message users see is unchanged."""
    with pytest.raises(DataError) as err:
        SkipLedger().problem("bad_h5", "x/00001.h5: unreadable h5")
    e = err.value
    assert (e.problem_class, e.detail) == ("bad_h5", "x/00001.h5: unreadable h5")
    assert str(e) == "x/00001.h5: unreadable h5 (to skip such cases instead, add 'bad_h5' to data.allow_skip)"
    assert pickle.loads(pickle.dumps(e)).__dict__ == e.__dict__  # survives an extraction worker
    plain = DataError("x.mp4: video file not found")  # an error no allow_skip class covers
    assert (plain.problem_class, plain.detail) == (None, "x.mp4: video file not found")


@pytest.mark.parametrize("drop", ["instance", "reMask"])
def test_h5_without_key(tmp_path, drop):
    root = build(tmp_path)
    path = root / a2d.INSTANCES / "vidB" / "00004.h5"
    with h5py.File(path, "a") as f:
        del f[drop]
    _raises_then_counts(root, "bad_h5", f"00004.h5.*{drop}")
    videos = list(read_a2d(root, SkipLedger(allowed=frozenset({"bad_h5"}))))
    assert [f.index for f in videos[1].frames] == [0]  # only that frame was skipped
    assert [e.referent for e in videos[1].expressions] == [3]  # id 4 is now never visible


def test_unreadable_h5(tmp_path):
    root = build(tmp_path)
    (root / a2d.INSTANCES / "vidA" / "00005.h5").write_bytes(b"not an hdf5 file")
    _raises_then_counts(root, "bad_h5", "vidA/00005.h5: unreadable")


def test_mask_size_mismatch(tmp_path):
    root = build(tmp_path)
    a2d_write.write_frame_h5(root, "vidA", 5, [1], np.ones((1, H, W + 2), bool))
    _raises_then_counts(root, "mask_size", r"vidA/00005.h5: mask is 6x12 .* 6x10")


@pytest.mark.parametrize(
    "line, problem, message",
    [
        ("vidA,1", "bad_annotation", "malformed"),
        ("vidA,x1,a man", "bad_annotation", "instance id 'x1'"),
        ("vidZ,1,a man", "bad_annotation", "video 'vidZ' is not in"),
        ("vidA,2,   ", "empty_sentence", "empty sentence"),
    ],
)
def test_bad_annotation_line_names_its_line(tmp_path, line, problem, message):
    root = build(tmp_path)
    lineno = _append_line(root, line)
    _raises_then_counts(root, problem, f"{ann(root)}:{lineno}: {message}")


def test_video_without_mp4(tmp_path):
    root = build(tmp_path)
    video_path(root, "vidB").unlink()
    _raises_then_counts(root, "missing_video", "clips320H/vidB.mp4: video file not found")
    videos = list(read_a2d(root, SkipLedger(allowed=frozenset({"missing_video"}))))
    assert [v.video_id for v in videos] == ["vidA"]


def test_malformed_videoset_row(tmp_path):
    root = build(tmp_path)
    videoset = root / "Release" / "videoset.csv"
    videoset.write_text(videoset.read_text() + "vidX,11,0,1,6\n")
    _raises_then_counts(root, "bad_annotation", f"{videoset}:5: malformed videoset row")


def test_crlf_and_other_copy_rows(tmp_path):
    root = build(tmp_path)
    ann(root).write_text("video_id,instance_id,query\r\nvidB,3,a ball\r\nvidB,2 (copy),a ball\r\nvidB,4,a cat\r\n")
    ledger = SkipLedger()
    (vb,) = read_a2d(root, ledger)
    assert [(e.text, e.source) for e in vb.expressions] == [("a ball", f"{ann(root)}:2"), ("a cat", f"{ann(root)}:4")]
    assert ledger.counts["copy_instance_row"] == 1


# ---------------------------------------------------------------- synthetic ground truth sidecar


def test_without_the_sidecar_classes_and_attributes_are_unknown(tmp_path):
    videos = list(read_a2d(build(tmp_path), SkipLedger()))
    assert all(v.classes is None and all(e.attribute is None for e in v.expressions) for v in videos)


def test_sidecar_gives_instance_classes_and_sentence_attributes(tmp_path):
    root = build(tmp_path)
    write_ground_truth(
        root / a2d.GROUND_TRUTH,
        {"vidA": {1: "adult", 2: "dog", 9: "unused"}, "vidB": None, "vidM": {1: "bird"}},
        [
            ("vidA", 1, "the man, on the left", "position"),
            ("vidB", 3, "  a ball rolling ", "motion"),  # matched with blanks stripped, as the reader strips
            ("vidB", 4, "a dog", "colour"),  # another text than line 8's: not matched
        ],
    )
    va, vb = read_a2d(root, SkipLedger())
    assert va.classes == {1: "adult", 2: "dog", 9: "unused"} and vb.classes is None
    assert [e.attribute for e in va.expressions] == ["position", None]
    assert [e.attribute for e in vb.expressions] == ["motion", None]


def _sidecar(root: Path, text: str) -> Path:
    path = root / a2d.GROUND_TRUTH
    path.write_text(text)
    return path


GOOD_SENTENCE = {"video": "vidA", "instance": 1, "text": "x", "attribute": "colour"}


@pytest.mark.parametrize(
    "doc, message",
    [
        ("{not json", r"not readable JSON \(JSONDecodeError"),
        (json.dumps({"classes": {}}), r"expected an object with keys classes, sentences .*got \['classes'\]"),
        (json.dumps([]), r"expected an object with keys classes, sentences .*got list"),
        (json.dumps({"classes": [], "sentences": []}), r"'classes' must map video ids"),
        (json.dumps({"classes": {"vidA": {"one": "dog"}}, "sentences": []}), r"classes\['vidA'\] must map integer"),
        (json.dumps({"classes": {"vidA": {"1": ""}}, "sentences": []}), r"classes\['vidA'\] must map integer"),
        (json.dumps({"classes": {}, "sentences": [{"video": "vidA"}]}), r"sentences\[0\] must have exactly the keys"),
        (
            json.dumps({"classes": {}, "sentences": [{**GOOD_SENTENCE, "instance": "1"}]}),
            r"sentences\[0\]\.instance must be a non-negative integer, got '1'",
        ),
        (
            json.dumps({"classes": {}, "sentences": [GOOD_SENTENCE, {**GOOD_SENTENCE, "attribute": ""}]}),
            r"sentences\[1\]\.attribute must be a non-empty string",
        ),
        (
            json.dumps({"classes": {}, "sentences": [GOOD_SENTENCE, {**GOOD_SENTENCE, "text": " x"}]}),
            r"sentences\[1\]: sentence 'x' of video 'vidA' instance 1 is listed twice",
        ),
        (
            json.dumps({"classes": {"vidA": {"1": "adult"}}, "sentences": []}),
            r"classes of video 'vidA' miss instance\(s\) 2 of its annotated frames",
        ),
    ],
)
def test_malformed_sidecar_is_one_line_naming_the_file(tmp_path, doc, message):
    root = build(tmp_path)
    path = _sidecar(root, doc)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {message}") as err:
        list(read_a2d(root, SkipLedger()))
    assert "\n" not in str(err.value)
