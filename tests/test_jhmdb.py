"""J-HMDB Sentences reader (test protocol) and writers, on tiny fixtures in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from core.data import jhmdb
from core.data.frames import chosen_indices, load_frames
from core.data.ground_truth import write_ground_truth
from core.data.jhmdb import read_jhmdb
from core.data.types import SkipLedger
from core.errors import DataError
from core.sections import SKIP_CLASSES

H, W = 6, 10
ALL = frozenset(SKIP_CLASSES)


def _frames(t: int) -> np.ndarray:
    return np.stack([np.full((H, W, 3), 10 * k + 5, np.uint8) for k in range(t)])


def _actor(t: int) -> np.ndarray:
    """Frame k: the actor is the single pixel y = k % H, x = W - 1 - k."""
    m = np.zeros((t, H, W), bool)
    for k in range(t):
        m[k, k % H, W - 1 - k] = True
    return m


def build(root: Path) -> Path:
    # jump/j1: 7 images but only 5 masks (2 trailing unmasked frames)
    jhmdb.write_video_frames(root, "jump", "j1", _frames(7))
    jhmdb.write_puppet_mask(root, "jump", "j1", _actor(5))
    # run/r2: 3 images, mask written by hand as H x W x T
    jhmdb.write_video_frames(root, "run", "r2", _frames(3))
    pm = np.zeros((H, W, 3), np.uint8)
    pm[1, 8, 0] = pm[2, 7, 1] = pm[0, 0, 2] = 1
    (root / "puppet_mask" / "run" / "r2").mkdir(parents=True)
    scipy.io.savemat(root / "puppet_mask" / "run" / "r2" / "puppet_mask.mat", {"part_mask": pm})
    jhmdb.write_annotations(
        root,
        [
            ("j1", "man jumping high"),  # line 2
            ("r2", "  a person running "),  # 3
            ("r2", "someone runs"),  # 4
        ],
    )
    return root


def ann(root: Path) -> Path:
    return root / "jhmdb_annotation.txt"


def test_reads_three_frames_per_video(tmp_path):
    root = build(tmp_path)
    ledger = SkipLedger()
    j1, r2 = read_jhmdb(root, ledger)
    assert (j1.video_id, j1.split, j1.source) == ("j1", "test", root / "Rename_Images" / "jump" / "j1")
    assert (j1.height, j1.width) == (H, W)
    # 5 masked frames -> indices round(linspace(0, 4, 3)) = 0, 2, 4
    assert [f.index for f in j1.frames] == [0, 2, 4]
    for f in j1.frames:
        assert f.instance_ids == (1,) and f.masks.shape == (1, H, W) and f.masks.sum() == 1
    assert j1.frames[1].masks[0, 2, 7] and j1.frames[2].masks[0, 4, 5]
    assert j1.frames[0].source.endswith("puppet_mask/jump/j1/puppet_mask.mat")
    assert [(e.text, e.referent, e.source) for e in j1.expressions] == [("man jumping high", 1, f"{ann(root)}:2")]
    # the hand-written .mat: part_mask[y, x, t]
    assert [f.index for f in r2.frames] == [0, 1, 2]
    assert r2.frames[0].masks[0, 1, 8] and r2.frames[1].masks[0, 2, 7] and r2.frames[2].masks[0, 0, 0]
    assert [e.text for e in r2.expressions] == ["a person running", "someone runs"]
    assert [e.source for e in r2.expressions] == [f"{ann(root)}:3", f"{ann(root)}:4"]
    assert dict(ledger.counts) == {"jhmdb_unmasked_trailing_frames": 1}
    assert "j1: 2 trailing frames" in ledger.examples["jhmdb_unmasked_trailing_frames"][0]


def test_frames_per_video_and_index_choice(tmp_path):
    root = build(tmp_path)
    j1, r2 = read_jhmdb(root, SkipLedger(), frames_per_video=2)
    assert [f.index for f in j1.frames] == [0, 4]
    j1, r2 = read_jhmdb(root, SkipLedger(), frames_per_video=10)
    assert [f.index for f in r2.frames] == [0, 1, 2]  # never more than the masked frames
    assert chosen_indices(40, 3) == [0, 20, 39]  # round(19.5) -> 20 (round half to even)
    assert chosen_indices(1, 3) == [0]
    assert chosen_indices(0, 3) == []


def test_mat_v73_hdf5_is_read_in_image_orientation(tmp_path):
    root = build(tmp_path)
    import h5py

    with h5py.File(root / "puppet_mask" / "run" / "r2" / "puppet_mask.mat", "w") as f:
        stored = np.zeros((3, W, H), np.uint8)  # MATLAB v7.3 = HDF5, axes reversed: T x W x H
        stored[0, 8, 1] = stored[1, 7, 2] = stored[2, 0, 0] = 1
        f.create_dataset("part_mask", data=stored)
    r2 = list(read_jhmdb(root, SkipLedger()))[1]
    assert r2.frames[0].masks[0, 1, 8] and r2.frames[1].masks[0, 2, 7] and r2.frames[2].masks[0, 0, 0]


def test_writers_layout(tmp_path):
    jhmdb.write_video_frames(tmp_path, "a", "v", _frames(2))
    assert sorted(p.name for p in (tmp_path / "Rename_Images" / "a" / "v").iterdir()) == ["00001.png", "00002.png"]
    jhmdb.write_puppet_mask(tmp_path, "a", "v", _actor(2))
    pm = scipy.io.loadmat(tmp_path / "puppet_mask" / "a" / "v" / "puppet_mask.mat")["part_mask"]
    assert pm.shape == (H, W, 2) and pm.dtype == np.uint8 and pm[1, 8, 1] == 1 and pm.sum() == 2
    jhmdb.write_annotations(tmp_path, [("v", "a, b")])
    assert ann(tmp_path).read_text() == 'video_id,query\nv,"a, b"\n'


def test_load_frames_from_png_folder(tmp_path):
    j1 = next(read_jhmdb(build(tmp_path), SkipLedger()))
    frames = load_frames(j1, [4, 0, 6])  # index 6 is an unmasked trailing frame: still loadable
    assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8
    assert frames[:, 0, 0, 0].tolist() == [45, 5, 65]  # png is lossless
    with pytest.raises(DataError, match="00008.png"):
        load_frames(j1, [7])


# ---- bad input ---------------------------------------------------------------------------


def test_missing_root_and_annotation_file_always_raise(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        list(read_jhmdb(tmp_path / "nowhere", SkipLedger(allowed=ALL)))
    root = build(tmp_path / "r")
    ann(root).unlink()
    with pytest.raises(DataError, match="jhmdb_annotation.txt"):
        list(read_jhmdb(root, SkipLedger(allowed=ALL)))


def _raises_then_counts(root: Path, cls: str, match: str) -> list:
    with pytest.raises(DataError, match=match) as err:
        list(read_jhmdb(root, SkipLedger()))
    assert cls in str(err.value)
    assert err.value.problem_class == cls and "to skip" not in err.value.detail  # structured fields
    ledger = SkipLedger(allowed=frozenset({cls}))
    videos = list(read_jhmdb(root, ledger))
    assert ledger.counts[cls] == 1
    assert ledger.examples[cls] == [err.value.detail]  # the same detail, counted instead of raised
    return videos


def test_video_folder_missing(tmp_path):
    root = build(tmp_path)
    with open(ann(root), "a") as f:
        f.write("ghost,a ghost\n")
    videos = _raises_then_counts(root, "missing_video", r"Rename_Images/\*/ghost: frame folder not found \(video")
    assert [v.video_id for v in videos] == ["j1", "r2"]


def test_mat_without_key(tmp_path):
    root = build(tmp_path)
    scipy.io.savemat(root / "puppet_mask" / "run" / "r2" / "puppet_mask.mat", {"other": np.zeros((2, 2))})
    videos = _raises_then_counts(root, "bad_h5", "r2/puppet_mask.mat: no key 'part_mask'")
    assert [v.video_id for v in videos] == ["j1"]


def test_unreadable_mat(tmp_path):
    root = build(tmp_path)
    (root / "puppet_mask" / "jump" / "j1" / "puppet_mask.mat").write_bytes(b"garbage")
    _raises_then_counts(root, "bad_h5", "j1/puppet_mask.mat: unreadable")


def test_mask_size_mismatch(tmp_path):
    root = build(tmp_path)
    jhmdb.write_puppet_mask(root, "run", "r2", np.ones((3, W, H), bool))  # transposed by mistake
    _raises_then_counts(root, "mask_size", r"r2/puppet_mask.mat: mask is 10x6 .* 6x10")


def test_malformed_line(tmp_path):
    root = build(tmp_path)
    with open(ann(root), "a") as f:
        f.write("j1,a man,extra\n")
    _raises_then_counts(root, "bad_annotation", f"{ann(root)}:5: malformed")


def test_empty_sentence(tmp_path):
    root = build(tmp_path)
    with open(ann(root), "a") as f:
        f.write('r2,"  "\n')
    _raises_then_counts(root, "empty_sentence", f"{ann(root)}:5: empty sentence")


def test_sidecar_gives_attributes_and_null_classes(tmp_path):
    root = build(tmp_path)
    write_ground_truth(
        root / jhmdb.GROUND_TRUTH,
        {"j1": None, "r2": {1: "adult"}},
        [("j1", 1, "man jumping high", "motion"), ("r2", 1, "someone runs", "size")],
    )
    j1, r2 = read_jhmdb(root, SkipLedger())
    assert j1.classes is None and r2.classes == {1: "adult"}
    assert [e.attribute for e in j1.expressions] == ["motion"]
    assert [e.attribute for e in r2.expressions] == [None, "size"]


def test_malformed_sidecar_names_the_file(tmp_path):
    root = build(tmp_path)
    (root / jhmdb.GROUND_TRUTH).write_text('{"classes": {}, "sentences": {}}')
    with pytest.raises(DataError, match=r"synthetic_ground_truth\.json: 'sentences' must be a list"):
        list(read_jhmdb(root, SkipLedger()))
