"""MeViS readers and writers, on tiny fixtures in the real layout (multi-object expressions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.data import mevis
from core.data.images import read_image_frames
from core.data.mevis import (
    is_virtual,
    read_mevis,
    read_mevis_valid,
    virtual_id,
)
from core.data.mevis_write import (
    MetaExpression,
    MevisVideoSpec,
    write_split,
)
from core.data.rle import decode_rle, encode_mask
from core.data.types import SkipLedger
from core.errors import DataError
from core.sections import SKIP_CLASSES

H, W = 6, 8
ALL = frozenset(SKIP_CLASSES)


def _frames(t: int) -> np.ndarray:
    return np.stack([np.full((H, W, 3), 20 * k + 10, np.uint8) for k in range(t)])


def _box(t: int, frames: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """bool [t, H, W]: in frame k the box y0:y1, x0:x1 of frames[k], empty elsewhere."""
    m = np.zeros((t, H, W), bool)
    for k, (y0, y1, x0, x1) in frames.items():
        m[k, y0:y1, x0:x1] = True
    return m


# v1: two balls (11, 12; overlapping in frame 2) and a late ball (13, frames 3-4 only)
BALL_L = _box(5, {k: (1, 4, 0, 3 + (k == 2)) for k in range(5)})
BALL_R = _box(5, {k: (2, 5, 3, 6) for k in range(5)})
LATE = _box(5, {3: (0, 2, 6, 8), 4: (0, 2, 6, 8)})
# v2: a cat (21), a ghost that is never there (22), a dog seen only in frame 1 (23)
CAT = _box(6, {k: (0, 3, 0, 2) for k in range(6)})
GHOST = np.zeros((6, H, W), bool)
DOG = _box(6, {1: (3, 6, 4, 8)})


def specs() -> list[MevisVideoSpec]:
    return [
        MevisVideoSpec(
            "v1",
            _frames(5),
            {11: BALL_L, 12: BALL_R, 13: LATE},
            [
                MetaExpression("the two red balls", (12, 11)),  # exp 0: multi-object
                MetaExpression("the left ball", (11,)),  # 1
                MetaExpression(" the right ball ", (12,)),  # 2
                MetaExpression("the ball arriving late", (13,)),  # 3
            ],
        ),
        MevisVideoSpec(
            "v2",
            _frames(6),
            {21: CAT, 22: GHOST, 23: DOG},
            [
                MetaExpression("  ", (21,)),  # 0: empty text
                MetaExpression("the cat", (21,)),  # 1
                MetaExpression("the ghost", (22,)),  # 2: null in every frame
                MetaExpression("the missing one", (99,)),  # 3: anno_id 99 not in mask_dict
                MetaExpression("nothing at all", ()),  # 4: no target
                MetaExpression("the dog", (23,)),  # 5: only in frame 1, whose JPEG goes
                MetaExpression("the cat and the dog", (21, 23)),  # 6: union, visible (cat)
            ],
        ),
        MevisVideoSpec("v3", _frames(2), {31: CAT[:2]}, []),  # no expressions
    ]


def meta_file(root: Path, split: str = "train") -> Path:
    return root / split / "meta_expressions.json"


def masks_file(root: Path, split: str = "train") -> Path:
    return root / split / "mask_dict.json"


def patch_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def build(root: Path, split: str = "train") -> Path:
    """specs() with every quirk (a listed frame without a JPEG, ...), no bad input: v2's empty
    expression 0 is taken out (an empty_sentence problem where masks are read)."""
    write_split(root, split, specs())
    (root / split / "JPEGImages" / "v2" / "00001.jpg").unlink()  # a listed frame without a JPEG
    patch_json(meta_file(root, split), lambda d: d["videos"]["v2"]["expressions"].pop("0"))
    return root


def test_virtual_ids():
    v = virtual_id([12, 11])
    assert v == virtual_id([11, 12]) == virtual_id([11, 12, 11])
    assert is_virtual(v) and not is_virtual(11) and not is_virtual(mevis.VIRTUAL_ID_BASE - 1)
    assert mevis.VIRTUAL_ID_BASE <= v < 2 * mevis.VIRTUAL_ID_BASE
    assert virtual_id([11, 13]) != v
    assert v == virtual_id((11, 12))  # a plain function of the set: stable across runs


# ---- round trips ---------------------------------------------------------------------


def test_multi_object_union_null_frames_and_single_ids(tmp_path):
    root = build(tmp_path)
    ledger, unions = SkipLedger(), {}
    v1, v2 = read_mevis(root, ledger, unions=unions)
    union = virtual_id([11, 12])
    assert (v1.video_id, v1.split, v1.source, v1.classes) == ("v1", "train", root / "train/JPEGImages/v1", None)
    assert (v1.height, v1.width) == (H, W)
    assert [f.index for f in v1.frames] == [0, 2, 4]  # round(linspace(0, 4, 3))
    assert [(e.text, e.referent) for e in v1.expressions] == [
        ("the two red balls", union),
        ("the left ball", 11),
        ("the right ball", 12),
        ("the ball arriving late", 13),
    ]
    assert [e.source for e in v1.expressions] == [f"{meta_file(root)}:v1/{k}" for k in range(4)]
    assert unions["v1"] == {union: (11, 12)}
    # 13 is null in frames 0 and 2: listed only in frame 4; the union comes after the real ids
    assert [f.instance_ids for f in v1.frames] == [(11, 12, union), (11, 12, union), (11, 12, 13, union)]
    for f in v1.frames:
        t = f.index
        m = dict(zip(f.instance_ids, f.masks))
        assert f.masks.dtype == bool and f.masks.shape[1:] == (H, W)
        assert (m[11] == BALL_L[t]).all() and (m[12] == BALL_R[t]).all()
        assert (m[union] == (BALL_L[t] | BALL_R[t])).all()
        assert f.source == f"{masks_file(root)}:v1/{t:05d}"
    assert (dict(zip(v1.frames[2].instance_ids, v1.frames[2].masks))[13] == LATE[4]).all()
    assert v1.frames[1].masks[0, 1:4, 3].all()  # frame 2: the left ball grows into the right one
    assert v1.frames[1].masks[2].sum() == (BALL_L[2] | BALL_R[2]).sum() < BALL_L[2].sum() + BALL_R[2].sum()

    # v2: listed frames 0, 2..5 have JPEGs (5 of them) -> listed 0, 3, 5 -> JPEG positions 0, 2, 4
    cat_dog = virtual_id([21, 23])
    assert [f.index for f in v2.frames] == [0, 2, 4]
    assert [f.source.rsplit("/", 1)[1] for f in v2.frames] == ["00000", "00003", "00005"]
    assert [(e.text, e.referent) for e in v2.expressions] == [("the cat", 21), ("the cat and the dog", cat_dog)]
    assert [e.source for e in v2.expressions] == [f"{meta_file(root)}:v2/1", f"{meta_file(root)}:v2/6"]
    # 22 and 23 are instances of the video but empty in every chosen frame: never listed
    assert [f.instance_ids for f in v2.frames] == [(21, cat_dog)] * 3
    assert all((f.masks[1] == CAT[0]).all() for f in v2.frames)
    assert unions["v2"] == {cat_dog: (21, 23)}
    assert set(unions) == {"v1", "v2"}


def test_every_quirk_counted(tmp_path):
    root = build(tmp_path)
    ledger = SkipLedger()
    assert [v.video_id for v in read_mevis(root, ledger)] == ["v1", "v2"]
    assert dict(ledger.counts) == {
        "frame_without_image": 1,  # v2/00001
        mevis.ANNO_ID_NOT_IN_MASK_DICT: 1,  # v2/3
        mevis.EXPRESSION_WITHOUT_TARGET: 1,  # v2/4
        mevis.TARGET_ALWAYS_NULL: 1,  # v2/2
        "referent_never_visible": 1,  # v2/5
        "video_without_sentences": 1,  # v3
    }
    assert set(ledger.counts) == set(mevis.QUIRKS) and not ledger.notes
    ex = {k: v[0] for k, v in ledger.examples.items()}
    assert ex["frame_without_image"].startswith(f"{root / 'train/JPEGImages/v2/00001.jpg'}:")
    assert ex[mevis.ANNO_ID_NOT_IN_MASK_DICT].startswith(f"{meta_file(root)}:v2/3: anno_id 99 not in")
    assert ex[mevis.EXPRESSION_WITHOUT_TARGET].startswith(f"{meta_file(root)}:v2/4:")
    assert ex[mevis.TARGET_ALWAYS_NULL].startswith(f"{meta_file(root)}:v2/2: anno_id [22] null in all 6 frames")
    assert ex["referent_never_visible"].startswith(f"{meta_file(root)}:v2/5: anno_id [23]")
    assert ex["video_without_sentences"] == f"{meta_file(root)}:v3: no expressions"


def test_empty_expression_and_video_not_on_disk_are_problems(tmp_path):
    """The rules every reader shares (core.data.defects): empty_sentence, missing_video."""
    root = build(tmp_path)
    patch_json(meta_file(root), lambda d: d["videos"]["v2"]["expressions"].update({"0": {"exp": "  ", **_CAT}}))
    with pytest.raises(DataError, match=rf"{meta_file(root)}:v2/0: empty sentence \(to skip") as err:
        list(read_mevis(root, SkipLedger()))
    assert err.value.problem_class == "empty_sentence"
    ledger = SkipLedger(allowed=frozenset({"empty_sentence"}))
    v1, v2 = read_mevis(root, ledger)
    assert ledger.counts["empty_sentence"] == 1 and "v2/0" not in {e.source.rsplit(":", 1)[1] for e in v2.expressions}
    root = build(tmp_path / "b")
    ghost = {"frames": ["00000"], "expressions": {"0": {"exp": "a", "obj_id": [0], "anno_id": [11]}}}
    patch_json(meta_file(root), lambda d: d["videos"].update(ghost=ghost))
    with pytest.raises(DataError, match=r"JPEGImages/ghost: frame folder not found \(video listed in") as err:
        list(read_mevis(root, SkipLedger()))
    assert err.value.problem_class == "missing_video"
    ledger = SkipLedger(allowed=frozenset({"missing_video"}))
    assert [v.video_id for v in read_mevis(root, ledger)] == ["v1", "v2"] and ledger.counts["missing_video"] == 1


_CAT = {"obj_id": [0], "anno_id": [21]}


def test_frames_per_video_and_decoding(tmp_path):
    root = build(tmp_path)
    v1, v2 = read_mevis(root, SkipLedger(), frames_per_video=2)
    assert [f.index for f in v1.frames] == [0, 4]
    v1, v2 = read_mevis(root, SkipLedger(), frames_per_video=10)
    assert [f.index for f in v1.frames] == [0, 1, 2, 3, 4]  # never more than the frames with a JPEG
    assert [f.index for f in v2.frames] == [0, 1, 2, 3, 4]
    assert [e.text for e in v2.expressions] == ["the cat", "the cat and the dog"]  # frame 1 (the dog) has no JPEG
    frames = read_image_frames(v2.source, [f.index for f in v2.frames])
    assert frames.shape == (5, H, W, 3) and frames.dtype == np.uint8
    # JPEG is lossy, flat frames nearly exact; JPEG position 1 is listed frame 2 (value 50)
    assert np.abs(frames[:, 0, 0, 0].astype(int) - [10, 50, 70, 90, 110]).max() <= 2
    with pytest.raises(DataError, match="frame index 5 out of range"):
        read_image_frames(v2.source, [5])
    with pytest.raises(ValueError, match="frames_per_video"):
        next(read_mevis(root, SkipLedger(), frames_per_video=0))


def test_valid_u_has_masks_and_is_the_test_split(tmp_path):
    root = build(tmp_path, "valid_u")
    ledger = SkipLedger()
    v1, v2 = read_mevis(root, ledger, split="valid_u")
    assert (v1.split, v1.source) == ("test", root / "valid_u/JPEGImages/v1")
    assert v1.expressions[0].source == f"{meta_file(root, 'valid_u')}:v1/0"
    assert v1.frames[0].instance_ids == (11, 12, virtual_id([11, 12]))
    assert sum(ledger.counts.values()) == 6


def test_valid_split_without_masks(tmp_path):
    write_split(tmp_path, "valid", specs())
    assert not masks_file(tmp_path, "valid").exists()
    meta = json.loads(meta_file(tmp_path, "valid").read_text())
    assert meta["videos"]["v1"]["expressions"]["0"] == {"exp": "the two red balls"}  # text only, as released
    (tmp_path / "valid" / "JPEGImages" / "v2" / "00001.jpg").unlink()
    ledger = SkipLedger()
    v1, v2 = read_mevis_valid(tmp_path, ledger)
    assert (v1.video_id, v1.source, v1.height, v1.width) == ("v1", tmp_path / "valid/JPEGImages/v1", H, W)
    assert v1.frame_names == ("00000", "00001", "00002", "00003", "00004")
    assert v1.frame_indices == (0, 1, 2, 3, 4)
    assert [(q.exp_id, q.text) for q in v1.expressions] == [
        ("0", "the two red balls"),
        ("1", "the left ball"),
        ("2", "the right ball"),
        ("3", "the ball arriving late"),
    ]
    assert v1.expressions[0].source == f"{meta_file(tmp_path, 'valid')}:v1/0"
    # every frame with a JPEG, all kept (no masks, no choice): listed 00002 is JPEG position 1
    assert v2.frame_names == ("00000", "00002", "00003", "00004", "00005")
    assert v2.frame_indices == (0, 1, 2, 3, 4)
    # targets unknown: all kept, the empty one too (text "", counted): a submission needs every exp_id
    assert [q.exp_id for q in v2.expressions] == ["0", "1", "2", "3", "4", "5", "6"]
    assert v2.expressions[0].text == ""
    assert read_image_frames(v2.source, v2.frame_indices).shape == (5, H, W, 3)
    assert dict(ledger.counts) == {"frame_without_image": 1, "video_without_sentences": 1}  # skipped
    assert dict(ledger.notes) == {"empty_sentence": 1}  # kept, predicted
    with pytest.raises(DataError, match=r"valid/mask_dict.json: required MeViS file not found; .*read_mevis_valid"):
        list(read_mevis(tmp_path, SkipLedger(), split="valid"))


def test_writer_layout(tmp_path):
    write_split(tmp_path, "train", specs()[:1])
    folder = tmp_path / "train" / "JPEGImages" / "v1"
    assert sorted(p.name for p in folder.iterdir()) == [f"{k:05d}.jpg" for k in range(5)]
    meta = json.loads(meta_file(tmp_path).read_text())
    v1 = meta["videos"]["v1"]
    assert v1["frames"] == ["00000", "00001", "00002", "00003", "00004"]
    assert v1["expressions"]["0"] == {"exp": "the two red balls", "anno_id": [12, 11], "obj_id": [1, 0]}
    assert v1["expressions"]["3"] == {"exp": "the ball arriving late", "anno_id": [13], "obj_id": [2]}
    masks = json.loads(masks_file(tmp_path).read_text())
    assert sorted(masks) == ["11", "12", "13"]
    assert [e is None for e in masks["13"]] == [True, True, True, False, False]
    assert masks["13"][3]["size"] == [H, W] and isinstance(masks["13"][3]["counts"], str)
    assert (decode_rle(masks["11"][2]) == BALL_L[2]).all()
    with pytest.raises(ValueError, match="anno_id 11 .* another video"):
        write_split(tmp_path / "x", "train", [specs()[0], MevisVideoSpec("w", _frames(5), {11: BALL_L})])


# ---- bad input ---------------------------------------------------------------------------


def _one_line_error(root: Path, match: str, split: str = "train") -> DataError:
    with pytest.raises(DataError, match=match) as err:
        list(read_mevis(root, SkipLedger(allowed=ALL), split=split))
    assert "\n" not in str(err.value)
    return err.value


def test_missing_or_unreadable_files_always_raise(tmp_path):
    _one_line_error(tmp_path / "nowhere", "nowhere: MeViS root not found")
    root = build(tmp_path / "r")
    _one_line_error(root, "valid_u: MeViS split folder not found", split="valid_u")
    masks_file(root).write_text('{"11": [null')
    _one_line_error(root, r"train/mask_dict.json: not readable JSON \(JSONDecodeError")
    masks_file(root).write_text('{"eleven": []}')
    _one_line_error(root, "train/mask_dict.json: key 'eleven' is not an anno_id")
    masks_file(root).write_text("[]")
    _one_line_error(root, "train/mask_dict.json: expected")
    masks_file(root).unlink()
    _one_line_error(root, "train/mask_dict.json: required MeViS file not found$")
    meta_file(root).write_text("{not json")
    _one_line_error(root, "train/meta_expressions.json: not readable JSON")
    meta_file(root).write_text('{"video": {}}')
    _one_line_error(root, r"train/meta_expressions.json: expected an object \{\"videos\"")
    meta_file(root).unlink()
    _one_line_error(root, "train/meta_expressions.json: required MeViS file not found")
    with pytest.raises(DataError, match="meta_expressions.json: not readable JSON"):
        meta_file(root).write_text("\x00")
        list(read_mevis_valid(root, SkipLedger(), split="train"))
    with pytest.raises(ValueError, match="unknown MeViS split"):
        list(read_mevis(root, SkipLedger(), split="test"))


def _raises_then_counts(root: Path, cls: str, match: str) -> list:
    with pytest.raises(DataError, match=match) as err:
        list(read_mevis(root, SkipLedger()))
    assert "\n" not in str(err.value)
    assert err.value.problem_class == cls and "to skip" not in err.value.detail
    ledger = SkipLedger(allowed=frozenset({cls}))
    videos = list(read_mevis(root, ledger))
    assert ledger.counts[cls] == 1
    assert ledger.examples[cls] == [err.value.detail]
    return videos


def test_mask_list_of_wrong_length(tmp_path):
    root = build(tmp_path)
    patch_json(masks_file(root), lambda d: d["12"].pop())
    videos = _raises_then_counts(
        root, "bad_h5", r"mask_dict.json: anno_id 12 \(video 'v1'\): expected a list of 5 RLEs or nulls .* got 4"
    )
    assert [v.video_id for v in videos] == ["v2"]


def test_rle_size_not_the_frames(tmp_path):
    root = build(tmp_path)
    patch_json(masks_file(root), lambda d: d["21"].__setitem__(4, encode_mask(np.ones((W, H), bool))))
    videos = _raises_then_counts(
        root, "mask_size", r"mask_dict.json: anno_id 21 \(video 'v2'\) frame 00004: RLE size 8x6 \(HxW\) .* 6x8"
    )
    assert [v.video_id for v in videos] == ["v1"]


def test_malformed_rle(tmp_path):
    root = build(tmp_path)
    patch_json(masks_file(root), lambda d: d["11"].__setitem__(1, {"size": [H, W]}))
    _raises_then_counts(root, "bad_h5", r"anno_id 11 \(video 'v1'\) frame 00001: expected \{\"size\"")


def test_rle_that_does_not_decode(tmp_path):
    root = build(tmp_path)
    patch_json(masks_file(root), lambda d: d["11"].__setitem__(2, {"size": [H, W], "counts": "9"}))
    _raises_then_counts(root, "bad_h5", r"anno_id 11 \(video 'v1'\) frame 00002: bad RLE \(runs cover 9 pixels")


def test_malformed_expression(tmp_path):
    root = build(tmp_path)
    patch_json(meta_file(root), lambda d: d["videos"]["v1"]["expressions"]["1"].update(anno_id=11))
    videos = _raises_then_counts(root, "bad_annotation", r"meta_expressions.json:v1/1: 'anno_id' must be a list")
    assert [e.text for e in videos[0].expressions] == ["the two red balls", "the right ball", "the ball arriving late"]


def test_obj_ids_not_parallel(tmp_path):
    root = build(tmp_path)
    patch_json(meta_file(root), lambda d: d["videos"]["v1"]["expressions"]["0"].update(obj_id=[0]))
    _raises_then_counts(root, "bad_annotation", r"v1/0: 'obj_id' must be a list of integers parallel")


def test_malformed_video_entry(tmp_path):
    root = build(tmp_path)
    patch_json(meta_file(root), lambda d: d["videos"]["v2"].update(frames="00000"))
    videos = _raises_then_counts(root, "bad_annotation", r"meta_expressions.json:v2: video entry must be")
    assert [v.video_id for v in videos] == ["v1"]
