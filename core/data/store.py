"""The processed store: what extraction writes and training/evaluation read.

Training never decodes mp4 or parses h5: every needed frame is stored once, resized to the
model's input size, as uint8, next to the masks of every instance in it. Per split folder:

    frames.npy      uint8 [F, S, S, 3]   stored frames (annotated ones, plus a window if asked)
    masks.npy       uint8 [M, S, S]      every instance mask of every annotated frame, at S x S
    masks_orig.npy  uint8 [...]          the same masks at the frame's ORIGINAL size, bit-packed
                                         (evaluation scores at original size, docs/method.md)
    index.json      videos (with `classes`: instance id -> class, or null when unknown),
                    frames (with their mask rows), samples (sentence + referent + `attribute`,
                    the disambiguating attribute type or null; see core.data.ground_truth)

Arrays are opened with mmap, so a DataLoader worker touches only the pages it reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from core.errors import DataError

SPLITS = ("train", "val", "test", "jhmdb")


@dataclass(frozen=True)
class SampleRef:
    """One sentence: the frames (rows in the split's frame table) where its referent is visible."""

    video: int
    text: str
    referent: int
    frames: tuple[int, ...]
    source: str
    attribute: str | None = None  # the attribute type that tells the referent apart; None = unknown
    # the video's other annotated frames, where the referent is not in view: scored (empty target)
    # on the J&F datasets, whose DAVIS protocol counts every annotated frame; never trained on
    absent: tuple[int, ...] = ()


class SplitStore:
    """Read side of one split of the processed store."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise DataError(f"{index_path}: processed split not found; run extraction first (dvc repro extract)")
        self.index = json.loads(index_path.read_text())
        self.videos: list[dict] = self.index["videos"]
        self.frames: list[dict] = self.index["frames"]
        self.samples = [
            SampleRef(
                s["video"],
                s["text"],
                s["referent"],
                tuple(s["frames"]),
                s["source"],
                s.get("attribute"),
                tuple(s.get("absent", ())),
            )
            for s in self.index["samples"]
        ]
        self.size: int = self.index["input_size"]
        self._orig_offsets = np.asarray(self.index["masks_orig_offsets"], dtype=np.int64)

    # Arrays open lazily so that forked DataLoader workers each map their own view.
    @cached_property
    def frame_array(self) -> np.ndarray:
        return np.load(self.folder / "frames.npy", mmap_mode="r")

    @cached_property
    def mask_array(self) -> np.ndarray:
        return np.load(self.folder / "masks.npy", mmap_mode="r")

    @cached_property
    def orig_array(self) -> np.ndarray:
        return np.load(self.folder / "masks_orig.npy", mmap_mode="r")

    def instance_rows(self, frame_row: int) -> dict[int, int]:
        """instance id -> row in masks.npy, for one stored frame."""
        f = self.frames[frame_row]
        return dict(zip(f["ids"], range(f["masks"][0], f["masks"][1])))

    def orig_mask(self, frame_row: int, instance_id: int) -> np.ndarray:
        """bool [H, W] mask of `instance_id` at the frame's original size (all False where the
        instance is not in the frame: an absent pair's target)."""
        video = self.videos[self.frames[frame_row]["video"]]
        h, w = video["height"], video["width"]
        rows = self.instance_rows(frame_row)
        if instance_id not in rows:
            return np.zeros((h, w), bool)
        row = rows[instance_id]
        return _unpack(self.orig_array[self._orig_offsets[row] : self._orig_offsets[row + 1]], h, w)

    def frame_masks(self, frame_row: int) -> tuple[list[int], np.ndarray]:
        """The instance ids of one frame and their masks at the original size, bool [K, H, W]
        (`orig_mask` of each), from one read of the frame's packed bits."""
        f = self.frames[frame_row]
        video = self.videos[f["video"]]
        h, w = video["height"], video["width"]
        ids = list(f["ids"])
        offsets = self._orig_offsets[f["masks"][0] : f["masks"][1] + 1].tolist()
        if not ids:
            return ids, np.zeros((0, h, w), bool)
        packed = np.asarray(self.orig_array[offsets[0] : offsets[-1]])
        if (h * w) % 8 == 0:  # no padding bits between masks: one unpack for the whole frame
            return ids, np.unpackbits(packed).reshape(len(ids), h, w).view(bool)
        spans = zip(offsets[:-1], offsets[1:])
        return ids, np.stack([_unpack(packed[a - offsets[0] : b - offsets[0]], h, w) for a, b in spans])

    @cached_property
    def video_classes(self) -> list[dict[int, str] | None]:
        """Per video row: instance id -> class; None where the source does not say (real data)."""
        return [None if v.get("classes") is None else {int(i): c for i, c in v["classes"].items()} for v in self.videos]

    def objects_of(self, video_row: int, instance_id: int) -> frozenset[int]:
        """The objects an instance stands for: itself, or the members of a MeViS union instance
        (index.json videos[i]["unions"]: the target of a multi-object expression)."""
        members = self.videos[video_row].get("unions", {}).get(str(instance_id))
        return frozenset(members) if members else frozenset((instance_id,))

    def instance_class(self, video_row: int, instance_id: int) -> str | None:
        """The class of one instance of a video; None when the video's classes are unknown."""
        classes = self.video_classes[video_row]
        if classes is None:
            return None
        if instance_id not in classes:
            raise DataError(
                f"{self.folder / 'index.json'}: video {self.videos[video_row]['id']!r} has no class for "
                f"instance {instance_id}"
            )
        return classes[instance_id]

    @cached_property
    def annotated_instances(self) -> dict[int, set[int]]:
        """video row -> the instance ids in any of its annotated frames."""
        out: dict[int, set[int]] = {}
        for f in self.frames:
            if f["annotated"]:
                out.setdefault(f["video"], set()).update(f["ids"])
        return out

    def has_distractor(self, sample: int) -> bool | None:
        """Whether another instance of the referent's class is in any annotated frame of its video
        (the evaluation's distractor stratum); None when the classes are unknown."""
        s = self.samples[sample]
        cls = self.instance_class(s.video, s.referent)
        if cls is None:
            return None
        others = self.annotated_instances.get(s.video, set()) - {s.referent}
        return any(self.instance_class(s.video, i) == cls for i in others)

    def eval_pairs(self) -> list[tuple[int, int]]:
        """(sample, frame_row) for every (annotated frame, sentence) pair scored by the protocol:
        the frames where the referent is visible, then its absent ones (J&F datasets only)."""
        return [(i, fr) for i, s in enumerate(self.samples) for fr in (*s.frames, *s.absent)]


def _unpack(packed: np.ndarray, h: int, w: int) -> np.ndarray:
    """One mask of masks_orig.npy: its packed bits -> bool [H, W] (a new array)."""
    return np.unpackbits(packed, count=h * w).reshape(h, w).view(bool)


def open_split(processed: Path, split: str) -> SplitStore:
    return SplitStore(Path(processed) / split)
