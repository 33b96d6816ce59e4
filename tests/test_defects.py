"""One rule per defect (core.data.defects): the same defect, fed to every reader it applies to
(A2D, J-HMDB, Ref-YouTube-VOS train and valid, MeViS train and valid), gives the same class and
the same outcome: a one-line error always, or a problem (an error naming its class, skipped and
counted once that class is in data.allow_skip), or kept and noted."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from core.data import a2d, a2d_write, jhmdb, mevis, ytvos
from core.data import mevis_write as mw
from core.data import ytvos_write as yw
from core.data.types import SkipLedger
from core.data.video import write_mp4
from core.errors import DataError

H, W, T = 8, 12, 3


def _frames(shift: int = 0, h: int = H) -> np.ndarray:
    return np.stack([np.full((h, W, 3), 30 * k + 20 + shift, np.uint8) for k in range(T)])


def _masks(h: int = H) -> np.ndarray:
    """bool [T, h, W]: one object, a block moving right."""
    m = np.zeros((T, h, W), bool)
    for k in range(T):
        m[k, 2:5, 2 + k : 6 + k] = True
    return m


def _edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


@dataclass(frozen=True)
class Reader:
    """One reader on a clean two-video dataset; the defects hit the video `victim`."""

    name: str
    build: Callable[[Path], None]
    read: Callable[[Path, SkipLedger], list]
    required: Callable[[Path], Path]  # a file it cannot do without
    video: Callable[[Path], Path]  # the victim's frames on disk: a folder, or an mp4
    first_frame: Callable[[Path], Path] | None  # None: the reader does not open frames
    sentence: Callable[[Path, str], None]  # set the victim's one sentence
    mask_size: Callable[[Path], None] | None  # give the victim a mask of another size (None: no masks)
    masked: bool  # a split with masks (train/test) or without (valid)
    masks_per_frame: bool = False  # one mask file per frame (A2D's h5, Ref-YouTube-VOS's PNG)
    victim: str = "v2"
    other: str = "v1"

    def ids(self, root: Path, ledger: SkipLedger) -> list[str]:
        return [v.video_id for v in self.read(root, ledger)]


# ---------------------------------------------------------------- A2D Sentences
def _a2d_build(root: Path) -> None:
    rows = [a2d.VideosetRow(v, 11, 0.0, 1.0, H, W, T, 2, s) for v, s in (("v1", 0), ("v2", 1))]
    a2d_write.write_videoset(root, rows)
    for k, vid in enumerate(("v1", "v2")):
        write_mp4(a2d.video_path(root, vid), _frames(k))
        for number in (1, 2):
            a2d_write.write_frame_h5(root, vid, number, [1], _masks()[number - 1 : number])
    a2d_write.write_annotations(root, [("v1", "1", "a man running"), ("v2", "1", "a dog jumping")])


def _a2d_sentence(root: Path, text: str) -> None:
    a2d_write.write_annotations(root, [("v1", "1", "a man running"), ("v2", "1", text)])


def _a2d_mask_size(root: Path) -> None:
    a2d_write.write_frame_h5(root, "v2", 2, [1], _masks(H + 2)[:1])


# ---------------------------------------------------------------- J-HMDB Sentences
def _jhmdb_build(root: Path) -> None:
    for k, (action, vid) in enumerate((("walk", "v1"), ("run", "v2"))):
        jhmdb.write_video_frames(root, action, vid, _frames(k))
        jhmdb.write_puppet_mask(root, action, vid, _masks())
    jhmdb.write_annotations(root, [("v1", "a man walking"), ("v2", "a woman running")])


def _jhmdb_sentence(root: Path, text: str) -> None:
    jhmdb.write_annotations(root, [("v1", "a man walking"), ("v2", text)])


# ---------------------------------------------------------------- Ref-YouTube-VOS
def _ytvos_build(split: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        videos = []
        for k, vid in enumerate(("v1", "v2")):
            if split == "train":
                ids = _masks().astype(np.uint8)
                videos.append(yw.TwinVideo(vid, _frames(k), [(f"the cat {k}", 1)], ids, {1: "cat"}))
            else:
                videos.append(yw.TwinVideo(vid, _frames(k), [(f"the cat {k}", None)]))
        yw.write_split(root, split, videos)

    return build


def _ytvos_sentence(split: str) -> Callable[[Path, str], None]:
    def edit(root: Path, text: str) -> None:
        _edit_json(
            ytvos.meta_expressions_path(root, split), lambda d: d["videos"]["v2"]["expressions"]["0"].update(exp=text)
        )

    return edit


def _ytvos_mask_size(root: Path) -> None:
    yw.write_id_map(root, "v2", "00000", np.zeros((H + 2, W), np.uint8))


# ---------------------------------------------------------------- MeViS
def _mevis_build(split: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        specs = [
            mw.MevisVideoSpec(vid, _frames(k), {10 + k: _masks()}, [mw.MetaExpression(f"the box {k}", (10 + k,))])
            for k, vid in enumerate(("v1", "v2"))
        ]
        mw.write_split(root, split, specs)

    return build


def _mevis_sentence(split: str) -> Callable[[Path, str], None]:
    def edit(root: Path, text: str) -> None:
        _edit_json(mevis.meta_path(root, split), lambda d: d["videos"]["v2"]["expressions"]["0"].update(exp=text))

    return edit


def _mevis_mask_size(root: Path) -> None:
    def grow(doc: dict) -> None:
        doc["11"][0]["size"] = [H + 2, W]  # anno_id 11 is v2's box

    _edit_json(mevis.mask_dict_path(root, "train"), grow)


READERS = {
    r.name: r
    for r in (
        Reader(
            "a2d",
            _a2d_build,
            a2d.read_a2d,
            lambda root: root / a2d.VIDEOSET,
            lambda root: a2d.video_path(root, "v2"),
            None,  # the mp4 is decoded by extraction (corrupt_video there: tests/test_extract.py)
            _a2d_sentence,
            _a2d_mask_size,
            True,
            masks_per_frame=True,
        ),
        Reader(
            "jhmdb",
            _jhmdb_build,
            jhmdb.read_jhmdb,
            lambda root: root / jhmdb.ANNOTATIONS,
            lambda root: jhmdb.frames_dir(root, "run", "v2"),
            lambda root: jhmdb.frames_dir(root, "run", "v2") / "00001.png",
            _jhmdb_sentence,
            lambda root: jhmdb.write_puppet_mask(root, "run", "v2", _masks(H + 2)),
            True,
        ),
        Reader(
            "ytvos",
            _ytvos_build("train"),
            ytvos.read_ytvos,
            lambda root: ytvos.meta_path(root, "train"),
            lambda root: ytvos.frames_dir(root, "train", "v2"),
            lambda root: ytvos.frame_path(root, "train", "v2", "00000"),
            _ytvos_sentence("train"),
            _ytvos_mask_size,
            True,
            masks_per_frame=True,
        ),
        Reader(
            "ytvos_valid",
            _ytvos_build("valid"),
            ytvos.read_ytvos_valid,
            lambda root: ytvos.meta_expressions_path(root, "valid"),
            lambda root: ytvos.frames_dir(root, "valid", "v2"),
            lambda root: ytvos.frame_path(root, "valid", "v2", "00000"),
            _ytvos_sentence("valid"),
            None,
            False,
        ),
        Reader(
            "mevis",
            _mevis_build("train"),
            mevis.read_mevis,
            lambda root: mevis.mask_dict_path(root, "train"),
            lambda root: mevis.frames_dir(root, "train", "v2"),
            lambda root: mevis.frames_dir(root, "train", "v2") / "00000.jpg",
            _mevis_sentence("train"),
            _mevis_mask_size,
            True,
        ),
        Reader(
            "mevis_valid",
            _mevis_build("valid"),
            mevis.read_mevis_valid,
            lambda root: mevis.meta_path(root, "valid"),
            lambda root: mevis.frames_dir(root, "valid", "v2"),
            lambda root: mevis.frames_dir(root, "valid", "v2") / "00000.jpg",
            _mevis_sentence("valid"),
            None,
            False,
        ),
    )
}


# ---------------------------------------------------------------- the defects
def _required_absent(r: Reader, root: Path) -> None:
    r.required(root).unlink()


def _required_loop(r: Reader, root: Path) -> None:
    path = r.required(root)
    path.unlink()
    path.symlink_to(path.name)  # a link to itself: ELOOP


def _required_folder(r: Reader, root: Path) -> None:
    path = r.required(root)
    path.unlink()
    path.mkdir()


def _video_not_on_disk(r: Reader, root: Path) -> None:
    video = r.video(root)
    shutil.rmtree(video) if video.is_dir() else video.unlink()


def _no_frames(r: Reader, root: Path) -> None:
    for p in r.video(root).iterdir():
        p.unlink()


def _first_frame_truncated(r: Reader, root: Path) -> None:
    assert r.first_frame is not None
    path = r.first_frame(root)
    path.write_bytes(path.read_bytes()[:10])  # not even a whole header


def _empty_sentence(r: Reader, root: Path) -> None:
    r.sentence(root, "   ")


def _mask_size(r: Reader, root: Path) -> None:
    assert r.mask_size is not None
    r.mask_size(root)


@dataclass(frozen=True)
class Defect:
    apply: Callable[[Reader, Path], None]
    problem: str | None  # the class; None: always a one-line error
    message: str  # part of the one line
    applies: Callable[[Reader], bool] = lambda r: True


DEFECTS = {
    "required file absent": Defect(_required_absent, None, "file not found"),
    "required file is a symlink loop": Defect(_required_loop, None, "file is a symbolic link loop"),
    "required file is a folder": Defect(_required_folder, None, "file is a folder, not a file"),
    "video not on disk": Defect(_video_not_on_disk, "missing_video", " not found (video listed in "),
    "frame folder without frames": Defect(
        _no_frames, "missing_video", "frames (video listed in", lambda r: r.first_frame is not None
    ),
    "first frame truncated": Defect(
        _first_frame_truncated, "corrupt_video", "unreadable image", lambda r: r.first_frame is not None
    ),
    "empty sentence": Defect(_empty_sentence, "empty_sentence", ": empty sentence"),
    "mask of another size": Defect(_mask_size, "mask_size", "mask_size", lambda r: r.mask_size is not None),
}
CASES = [(d, r) for d, defect in DEFECTS.items() for r, reader in READERS.items() if defect.applies(reader)]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_each_clean_dataset_reads_whole(tmp_path: Path, reader: str) -> None:
    r = READERS[reader]
    r.build(tmp_path)
    ledger = SkipLedger()
    assert r.ids(tmp_path, ledger) == ["v1", "v2"] and not ledger.counts and not ledger.notes


@pytest.mark.parametrize("defect, reader", CASES, ids=[f"{d}-{r}" for d, r in CASES])
def test_the_same_defect_has_the_same_class_and_outcome_in_every_reader(tmp_path: Path, defect: str, reader: str):
    r, d = READERS[reader], DEFECTS[defect]
    r.build(tmp_path)
    d.apply(r, tmp_path)
    if defect == "empty sentence" and not r.masked:  # a split to submit: kept (its mask is needed), noted
        ledger = SkipLedger()
        videos = list(r.read(tmp_path, ledger))
        assert [v.video_id for v in videos] == ["v1", "v2"] and videos[1].expressions[0].text == ""
        assert dict(ledger.notes) == {"empty_sentence": 1} and not ledger.counts
        return
    with pytest.raises(DataError) as err:
        r.ids(tmp_path, SkipLedger())
    msg = str(err.value)
    assert "\n" not in msg and err.value.problem_class == d.problem
    if d.problem is None:  # always an error, naming the file and what it is
        assert msg.startswith(f"{r.required(tmp_path)}: ") and d.message in msg, msg
        return
    assert d.message in msg and msg.endswith(f"(to skip such cases instead, add '{d.problem}' to data.allow_skip)")
    assert "v2" in msg  # names the victim's file
    ledger = SkipLedger(allowed=frozenset({d.problem}))
    videos = {v.video_id: v for v in r.read(tmp_path, ledger)}
    assert dict(ledger.counts) == {d.problem: 1} and ledger.examples[d.problem] == [err.value.detail]
    if defect == "mask of another size" and r.masks_per_frame:  # the defective mask file skipped: one frame
        r.build(tmp_path / "clean")
        clean = {v.video_id: v for v in r.read(tmp_path / "clean", SkipLedger())}
        assert sorted(videos) == ["v1", "v2"] and len(videos["v2"].frames) == len(clean["v2"].frames) - 1
        return
    assert list(videos) == ["v1"]  # the victim skipped, the other read


def test_a_dangling_link_and_a_missing_optional_file(tmp_path: Path) -> None:
    """An optional file (A2D's missed-videos list) may be absent, but a broken link is an error."""
    READERS["a2d"].build(tmp_path)
    missed = tmp_path / a2d.MISSED
    assert not os.path.lexists(missed) and len(a2d.read_a2d(tmp_path, SkipLedger()).__next__().frames) == 2
    missed.symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(DataError, match=rf"^{missed}: A2D Sentences file is a dangling symbolic link \(to "):
        list(a2d.read_a2d(tmp_path, SkipLedger()))
