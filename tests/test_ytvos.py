"""Ref-YouTube-VOS readers and writers, on tiny fixtures in the real on-disk layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import ytvos
from core.data import ytvos_write as yw
from core.data.frames import load_frames
from core.data.ground_truth import write_ground_truth
from core.data.images import frame_files, is_jpeg_folder, read_image_frames
from core.data.meta_expressions import Query
from core.data.types import SkipLedger
from core.data.ytvos import (
    annotation_path,
    meta_expressions_path,
    meta_path,
    offline_split,
    prediction_path,
    read_ytvos,
    read_ytvos_valid,
)
from core.errors import DataError
from core.sections import SKIP_CLASSES

H, W = 12, 20  # non-square on purpose: a transposition bug cannot hide
T = 5
ALL = frozenset(SKIP_CLASSES)
NAMES = ["00000", "00005", "00010", "00015", "00020"]


def _frames(t: int = T) -> np.ndarray:
    """Frame k is uniformly grey 40 * k + 20, so decoded (lossy) frames can be told apart."""
    return np.stack([np.full((H, W, 3), 40 * k + 20, np.uint8) for k in range(t)])


def _ids_cat_dog() -> np.ndarray:
    """cat (id 1) in every frame, moving right; dog (id 3) only in frame 1 (00005)."""
    ids = np.zeros((T, H, W), np.uint8)
    for k in range(T):
        ids[k, 2:5, 2 + 2 * k : 5 + 2 * k] = 1
    ids[1, 8:11, 12:18] = 3
    return ids


def _ids_one() -> np.ndarray:
    ids = np.zeros((3, H, W), np.uint8)
    ids[:, 0:2, 0:3] = 2
    return ids


def build(root: Path) -> Path:
    """v1: cat + dog (dog in one frame), 5 frames; v2: one person (id 2), 3 frames."""
    yw.write_split(
        root,
        "train",
        [
            yw.TwinVideo(
                "v1", _frames(), [("a cat walking ", 1), ("the dog", 3)], _ids_cat_dog(), {1: "cat", 3: "dog"}
            ),
            yw.TwinVideo("v2", _frames(3), [("a person", 2)], _ids_one(), {2: "person"}),
        ],
    )
    return root


def exprs_file(root: Path, split: str = "train") -> Path:
    return meta_expressions_path(root, split)


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


# ---- round trip --------------------------------------------------------------------------


def test_round_trip_writer_reader(tmp_path):
    root = build(tmp_path)
    ledger = SkipLedger()
    v1, v2 = read_ytvos(root, ledger)
    assert dict(ledger.counts) == {}
    assert (v1.video_id, v1.split, v1.source) == ("v1", "train", root / "train" / "JPEGImages" / "v1")
    assert (v1.height, v1.width) == (H, W)
    assert v1.classes == {1: "cat", 3: "dog"} and v2.classes == {2: "person"}
    # 5 annotated frames -> round(linspace(0, 4, 3)) = 0, 2, 4; plus 1 (00005), the dog's only frame
    assert [f.index for f in v1.frames] == [0, 1, 2, 4]
    assert [f.instance_ids for f in v1.frames] == [(1,), (1, 3), (1,), (1,)]
    ids = _ids_cat_dog()
    for f in v1.frames:
        assert f.masks.dtype == bool and f.masks.shape == (len(f.instance_ids), H, W)
        for k, m in zip(f.instance_ids, f.masks):
            assert np.array_equal(m, ids[f.index] == k)
        assert f.source == str(annotation_path(root, "v1", NAMES[f.index]))
    where = exprs_file(root)
    assert [(e.text, e.referent, e.source, e.attribute) for e in v1.expressions] == [
        ("a cat walking", 1, f"{where}:v1/0", None),
        ("the dog", 3, f"{where}:v1/1", None),
    ]
    assert [f.index for f in v2.frames] == [0, 1, 2]
    assert all(np.array_equal(f.masks[0], _ids_one()[f.index] == 2) for f in v2.frames)


def test_frames_per_video(tmp_path):
    root = build(tmp_path)
    v1, v2 = read_ytvos(root, SkipLedger(), frames_per_video=1)
    assert [f.index for f in v1.frames] == [0, 1]  # frame 0, plus the dog's frame
    assert [f.index for f in v2.frames] == [0]
    v1, v2 = read_ytvos(root, SkipLedger(), frames_per_video=10)
    assert [f.index for f in v1.frames] == [0, 1, 2, 3, 4]  # never more than the annotated frames
    with pytest.raises(ValueError, match="frames_per_video"):
        next(read_ytvos(root, SkipLedger(), frames_per_video=0))


def test_writer_layout(tmp_path):
    root = build(tmp_path)
    assert [p.name for p in frame_files(root / "train" / "JPEGImages" / "v1")] == [f"{n}.jpg" for n in NAMES]
    with Image.open(annotation_path(root, "v1", "00005")) as img:
        assert img.mode == "P"
        assert img.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # DAVIS
        assert np.array_equal(np.asarray(img), _ids_cat_dog()[1])
    meta = json.loads(meta_path(root).read_text())
    assert meta["videos"]["v1"]["objects"] == {
        "1": {"category": "cat", "frames": NAMES},
        "3": {"category": "dog", "frames": ["00005"]},
    }
    doc = json.loads(exprs_file(root).read_text())
    assert doc["videos"]["v2"] == {"expressions": {"0": {"exp": "a person", "obj_id": "2"}}, "frames": NAMES[:3]}
    with pytest.raises(ValueError, match="without a category"):
        yw.objects_from_id_maps({1: "cat"}, NAMES, _ids_cat_dog())


# ---- hand-written files: palette ids, non-contiguous names, partial annotation ----------


def _hand_png(path: Path, ids: np.ndarray, palette: list[int] | None = None, mode: str = "L") -> None:
    """An annotation PNG written without our writer; with `palette`, an 'L' image made 'P' by putpalette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(ids.astype(np.uint8)).convert(mode)
    if palette is not None:
        img.putpalette(palette)
    img.save(path)


def build_hand(root: Path) -> Path:
    """v7 by hand: JPEGs 00000, 00005, 00010; PNGs only for 00005 (palette) and 00010 (grey)."""
    yw.write_frames(root, "train", "v7", _frames(3), names=["00000", "00005", "00010"])
    ids = np.zeros((H, W), np.uint8)
    ids[1, 2] = ids[1, 3] = 1  # id 1: (y=1, x=2..3)
    ids[9, 15] = 2  # id 2: (y=9, x=15)
    # palette colours that no RGB reading could mistake for the ids
    palette = [0, 0, 0, 7, 7, 7, 200, 10, 10] + [0] * (256 * 3 - 9)
    _hand_png(root / "train" / "Annotations" / "v7" / "00005.png", ids, palette)
    grey = np.zeros((H, W), np.uint8)
    grey[11, 19] = 2
    _hand_png(root / "train" / "Annotations" / "v7" / "00010.png", grey)
    meta = {
        "videos": {
            "v7": {
                "objects": {
                    "1": {"category": "bird", "frames": ["00005"]},
                    "2": {"category": "horse", "frames": ["00005", "00010"]},
                }
            }
        }
    }
    meta_path(root).write_text(json.dumps(meta))
    exprs = {
        "videos": {
            "v7": {
                "expressions": {"0": {"exp": "small bird", "obj_id": "1"}, "5": {"exp": "brown horse", "obj_id": "2"}},
                "frames": ["00000", "00005", "00010"],
            }
        }
    }
    exprs_file(root).parent.mkdir(parents=True)
    exprs_file(root).write_text(json.dumps(exprs))
    return root


def test_hand_written_palette_png_ids_and_frame_positions(tmp_path):
    root = build_hand(tmp_path)
    ledger = SkipLedger()
    (v7,) = read_ytvos(root, ledger)
    assert dict(ledger.counts) == {}
    # annotated frames 00005 and 00010 are positions 1 and 2 of the sorted JPEG list
    assert [f.index for f in v7.frames] == [1, 2]
    f5, f10 = v7.frames
    assert f5.instance_ids == (1, 2) and f10.instance_ids == (2,)
    assert np.argwhere(f5.masks[0]).tolist() == [[1, 2], [1, 3]]  # palette index 1, not colour (7, 7, 7)
    assert np.argwhere(f5.masks[1]).tolist() == [[9, 15]]
    assert np.argwhere(f10.masks[0]).tolist() == [[11, 19]]  # grey-level PNG: value = id
    assert v7.classes == {1: "bird", 2: "horse"}
    assert [(e.referent, e.source.rsplit(":", 1)[1]) for e in v7.expressions] == [(1, "v7/0"), (2, "v7/5")]
    frames = load_frames(v7, [f.index for f in v7.frames])
    assert np.abs(frames[:, 0, 0, 0].astype(int) - [60, 100]).max() <= 3  # 00005 and 00010, not 00001/00002


def test_load_frames_decodes_jpeg_folder_by_position(tmp_path):
    root = build(tmp_path)
    v1 = next(read_ytvos(root, SkipLedger()))
    assert is_jpeg_folder(v1.source)
    frames = load_frames(v1, [4, 1, 3])  # index 3 (00015) is no chosen frame: still loadable
    assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8
    want = _frames()[[4, 1, 3]].astype(int)
    assert np.abs(frames.astype(int) - want).max() <= 3  # JPEG is lossy
    with pytest.raises(DataError, match=r"v1: frame index 5 out of range \(5 "):
        load_frames(v1, [5])
    assert read_image_frames(v1.source, []).shape == (0, 0, 0, 3)
    (v1.source / "00015.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="00015.jpg: corrupt or unreadable image"):
        load_frames(v1, [3])
    assert not is_jpeg_folder(tmp_path / "nowhere")


# ---- quirks ------------------------------------------------------------------------------


def test_every_quirk_is_counted(tmp_path):
    root = build(tmp_path)

    def edit(doc):
        v1 = doc["videos"]["v1"]
        v1["expressions"]["3"] = {"exp": "a ghost", "obj_id": "9"}  # no such object
        v1["frames"].append("00025")  # no JPEG
        doc["videos"]["v2"]["expressions"]["1"] = {"exp": "a fish", "obj_id": "4"}  # object in no frame
        doc["videos"]["v3"] = {"frames": ["00000"], "expressions": {}}  # a video without a sentence

    _edit_json(exprs_file(root), edit)
    fish = {"4": {"category": "fish", "frames": []}}
    _edit_json(meta_path(root), lambda d: d["videos"]["v2"]["objects"].update(fish))
    ledger = SkipLedger()
    v1, v2 = read_ytvos(root, ledger)
    assert dict(ledger.counts) == {"referent_never_visible": 2, "frame_without_image": 1, "video_without_sentences": 1}
    assert set(ytvos.QUIRKS) == set(ledger.counts) and not ledger.notes
    assert [e.text for e in v1.expressions] == ["a cat walking", "the dog"]
    assert [e.text for e in v2.expressions] == ["a person"]
    assert v2.classes == {2: "person", 4: "fish"}  # every object of meta.json
    ex = ledger.examples
    assert "frame '00025' of video 'v1'" in ex["frame_without_image"][0]
    assert ex["referent_never_visible"] == [
        f"{exprs_file(root)}:v1/3: object 9 of 'v1' is not an object of {meta_path(root)}",
        f"{exprs_file(root)}:v2/1: object 4 of 'v2' is in none of its 3 chosen annotated frames "
        "(meta.json: in 0 annotated frames)",
    ]


def test_empty_expression_and_video_not_on_disk_are_problems(tmp_path):
    """The rules every reader shares (core.data.defects): empty_sentence, missing_video."""
    root = build(tmp_path)
    _edit_json(exprs_file(root), lambda d: d["videos"]["v2"]["expressions"]["0"].update(exp=" "))
    videos = _raises_then_counts(root, "empty_sentence", rf"{exprs_file(root)}:v2/0: empty sentence \(to skip")
    assert [v.video_id for v in videos] == ["v1"]  # v2's only expression dropped
    root = build(tmp_path / "b")
    gone = {"expressions": {"0": {"exp": "a bus", "obj_id": "1"}}, "frames": ["00000"]}
    _edit_json(exprs_file(root), lambda d: d["videos"].update(gone=gone))
    videos = _raises_then_counts(root, "missing_video", r"JPEGImages/gone: frame folder not found \(video listed in")
    assert [v.video_id for v in videos] == ["v1", "v2"]


# ---- bad input ---------------------------------------------------------------------------


def test_missing_root_and_meta_files_always_raise(tmp_path):
    with pytest.raises(DataError, match="nowhere: Ref-YouTube-VOS root not found"):
        list(read_ytvos(tmp_path / "nowhere", SkipLedger(allowed=ALL)))
    root = build(tmp_path / "r")
    meta_path(root).unlink()
    with pytest.raises(DataError, match=r"train/meta\.json: required Ref-YouTube-VOS file not found"):
        list(read_ytvos(root, SkipLedger(allowed=ALL)))
    with pytest.raises(ValueError, match="read_ytvos_valid"):
        next(read_ytvos(root, SkipLedger(), split="valid"))


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"videos": {"v1": ', r"not readable JSON \(JSONDecodeError"),
        ('{"video": {}}', r"expected an object \{\"videos\".* got keys \['video'\]"),
        ("[1, 2]", "got a JSON list"),
    ],
)
def test_malformed_meta_file_is_one_line_naming_it(tmp_path, text, match):
    root = build(tmp_path)
    for path in (exprs_file(root), meta_path(root)):
        original = path.read_text()
        path.write_text(text)
        with pytest.raises(DataError, match=match) as err:
            list(read_ytvos(root, SkipLedger(allowed=ALL)))  # never skippable
        msg = str(err.value)
        assert msg.startswith(f"{path}: ") and "\n" not in msg
        path.write_text(original)


def _raises_then_counts(root: Path, cls: str, match: str) -> list:
    with pytest.raises(DataError, match=match) as err:
        list(read_ytvos(root, SkipLedger()))
    assert err.value.problem_class == cls and "\n" not in str(err.value)
    ledger = SkipLedger(allowed=frozenset({cls}))
    videos = list(read_ytvos(root, ledger))
    assert ledger.counts[cls] == 1
    assert ledger.examples[cls] == [err.value.detail]
    return videos


def test_png_of_wrong_size(tmp_path):
    root = build(tmp_path)
    yw.write_id_map(root, "v2", "00005", np.zeros((W, H), np.uint8))  # transposed by mistake
    videos = _raises_then_counts(root, "mask_size", r"v2/00005\.png: mask is 20x12 \(HxW\) .* 12x20")
    assert [f.index for f in videos[1].frames] == [0, 2]  # only that frame is dropped


def test_rgb_png_is_no_id_map(tmp_path):
    root = build(tmp_path)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(annotation_path(root, "v2", "00000"))
    _raises_then_counts(root, "bad_h5", r"v2/00000\.png: a 'RGB' PNG is no id map")


def test_png_values_that_are_not_ids(tmp_path):
    root = build(tmp_path)
    grey = np.zeros((H, W), np.uint8)
    grey[0, 0] = 2
    grey[5, 5] = 128  # an RGB->grey rendering, say: not an object id
    _hand_png(annotation_path(root, "v2", "00010"), grey)
    _raises_then_counts(root, "bad_h5", r"v2/00010\.png: pixel values \[128\] are no object ids of video 'v2'")


def test_unreadable_png(tmp_path):
    root = build(tmp_path)
    annotation_path(root, "v2", "00000").write_bytes(b"not a png")
    _raises_then_counts(root, "bad_h5", r"v2/00000\.png: unreadable annotation PNG")


def test_missing_annotation_folder(tmp_path):
    root = build(tmp_path)
    for p in (root / "train" / "Annotations" / "v2").iterdir():
        p.unlink()
    (root / "train" / "Annotations" / "v2").rmdir()
    videos = _raises_then_counts(root, "bad_h5", r"Annotations/v2: annotation folder not found")
    assert [v.video_id for v in videos] == ["v1"]


def test_png_without_its_jpeg_and_folder_without_jpegs(tmp_path):
    root = build(tmp_path)
    yw.write_id_map(root, "v2", "00099", _ids_one()[0])
    videos = _raises_then_counts(root, "missing_video", r"v2/00099\.png: annotated frame without its image 00099\.jpg")
    assert [f.index for f in videos[1].frames] == [0, 1, 2]
    root = build(tmp_path / "b")
    for p in (root / "train" / "JPEGImages" / "v2").iterdir():
        p.unlink()
    videos = _raises_then_counts(root, "missing_video", r"JPEGImages/v2: no \.jpg/\.jpeg frames")
    assert [v.video_id for v in videos] == ["v1"]


def test_bad_obj_id_and_video_missing_from_meta(tmp_path):
    root = build(tmp_path)
    _edit_json(exprs_file(root), lambda d: d["videos"]["v1"]["expressions"]["1"].update(obj_id="dog"))
    videos = _raises_then_counts(root, "bad_annotation", r"v1/1: obj_id must be an integer id, got 'dog'")
    assert [e.text for e in videos[0].expressions] == ["a cat walking"]
    root = build(tmp_path / "b")
    _edit_json(meta_path(root), lambda d: d["videos"].pop("v2"))
    videos = _raises_then_counts(root, "bad_annotation", r"meta\.json: no entry for video 'v2'")
    assert [v.video_id for v in videos] == ["v1"]


def test_malformed_video_entry(tmp_path):
    root = build(tmp_path)
    _edit_json(exprs_file(root), lambda d: d["videos"]["v2"].pop("frames"))
    _raises_then_counts(
        root, "bad_annotation", r"meta_expressions\.json:v2: video entry must be an object with \"frames\""
    )


# ---- valid split (no masks) --------------------------------------------------------------


def test_valid_split_without_masks(tmp_path):
    yw.write_split(
        tmp_path,
        "valid",
        [
            yw.TwinVideo("q1", _frames(3), [("a red car", None), ("  ", None)]),
            yw.TwinVideo("q2", _frames(2), [("the tree", None)], names=["00000", "00010"]),
        ],
    )
    assert not (tmp_path / "valid" / "Annotations").exists() and not meta_path(tmp_path, "valid").exists()
    _edit_json(exprs_file(tmp_path, "valid"), lambda d: d["videos"]["q2"]["frames"].insert(1, "00005"))
    ledger = SkipLedger()
    q1, q2 = read_ytvos_valid(tmp_path, ledger)
    where = exprs_file(tmp_path, "valid")
    assert (q1.video_id, q1.split, q1.source) == ("q1", "valid", tmp_path / "valid" / "JPEGImages" / "q1")
    assert (q1.height, q1.width) == (H, W)
    assert q1.frame_names == ("00000", "00005", "00010") and q1.frame_indices == (0, 1, 2)
    assert q1.expressions == (Query("0", "a red car", f"{where}:q1/0"), Query("1", "", f"{where}:q1/1"))
    assert q2.frame_names == ("00000", "00010") and q2.frame_indices == (0, 1)  # 00005 has no JPEG
    assert dict(ledger.counts) == {"frame_without_image": 1}  # skipped: the frame
    assert dict(ledger.notes) == {"empty_sentence": 1}  # kept: the submission needs its masks
    frames = read_image_frames(q2.source, q2.frame_indices)
    assert np.abs(frames[:, 0, 0, 0].astype(int) - [20, 60]).max() <= 3
    assert prediction_path(tmp_path / "out", "q1", "1", "00005") == tmp_path / "out/Annotations/q1/1/00005.png"
    with pytest.raises(ValueError, match="valid or test"):
        next(read_ytvos_valid(tmp_path, SkipLedger(), split="train"))


# ---- offline split -----------------------------------------------------------------------


def test_offline_split_is_seeded_order_free_and_sized():
    ids = [f"vid{k:03d}" for k in range(200)]
    a = offline_split(ids, 0.1, seed=0)
    assert len(a) == 20 and a <= set(ids)
    assert offline_split(list(reversed(ids)), 0.1, seed=0) == a  # order independent
    assert offline_split(ids + ids[:50], 0.1, seed=0) == a  # duplicates do not count
    assert offline_split(ids, 0.1, seed=0) == a  # deterministic
    assert offline_split(ids, 0.1, seed=1) != a  # seeded
    assert a < offline_split(ids, 0.25, seed=0)  # nested in the fraction
    assert offline_split(ids, 0.0, seed=0) == set()
    assert len(offline_split(ids[:3], 0.01, seed=0)) == 1  # at least one ...
    assert len(offline_split(ids[:3], 0.9, seed=0)) == 2  # ... and never all
    assert offline_split(ids[:1], 0.5, seed=0) == set()
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="fraction"):
            offline_split(ids, bad, seed=0)


# ---- sidecar -----------------------------------------------------------------------------


def test_sidecar_gives_attributes_and_keeps_meta_classes(tmp_path):
    root = build(tmp_path)
    write_ground_truth(root / ytvos.GROUND_TRUTH, {"v1": None}, [("v1", 3, "the dog", "location")])
    v1, v2 = read_ytvos(root, SkipLedger())
    assert [e.attribute for e in v1.expressions] == [None, "location"]
    assert v1.classes == {1: "cat", 3: "dog"} and v2.classes == {2: "person"}
