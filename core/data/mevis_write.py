"""MeViS writers: the exact inverse of the layout `core.data.mevis` reads.

Used by the tests and the synthetic generator (multi-object expressions such as "the two red
balls"); every file is written atomically. Low level: `write_frames`, `write_mask_dict` (masks as
COCO RLE, `core.data.rle`), `write_meta_expressions`; high level: `write_split`, which writes a
whole split from `MevisVideoSpec`s (frames, per-anno_id masks, expressions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from core.data.meta_expressions import JPEG_SUFFIX
from core.data.mevis import IMAGES, mask_dict_path, meta_path
from core.data.rle import encode_masks
from core.io import atomic_path, write_json, write_text

JPEG_QUALITY = 95


@dataclass(frozen=True)
class MetaExpression:
    """One expression of meta_expressions.json.

    `anno_ids` None writes the text only (the valid split's entries); `obj_ids` None (with
    anno_ids given) is filled in by `write_split` from the video's objects.
    """

    text: str
    anno_ids: tuple[int, ...] | None = None
    obj_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MetaVideo:
    frames: Sequence[str]  # frame names, without ".jpg" as in the release
    expressions: Sequence[MetaExpression]  # written with exp_id "0", "1", ... in this order


@dataclass(frozen=True)
class MevisVideoSpec:
    """One video of `write_split`: frames, its objects' masks and its expressions."""

    video_id: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    objects: Mapping[int, np.ndarray] = field(default_factory=dict)  # anno_id -> bool [T, H, W]
    expressions: Sequence[MetaExpression] = ()


def frame_names(n: int) -> list[str]:
    """The release's frame names of an n-frame video: 00000, 00001, ..."""
    return [f"{t:05d}" for t in range(n)]


def write_frames(root: Path, split: str, video_id: str, frames: np.ndarray) -> list[str]:
    """uint8 [T, H, W, 3] -> <split>/JPEGImages/<vid>/00000.jpg ...; returns the frame names."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_frames needs uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    folder = Path(root) / split / IMAGES / video_id
    names = frame_names(len(frames))
    for name, arr in zip(names, frames):
        with atomic_path(folder / f"{name}{JPEG_SUFFIX}", suffix=JPEG_SUFFIX) as tmp:
            Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="JPEG", quality=JPEG_QUALITY)
    return names


def write_mask_dict(root: Path, split: str, masks: Mapping[int, np.ndarray | Sequence[dict | None]]) -> None:
    """<split>/mask_dict.json from anno_id -> bool [T, H, W] (or an already encoded list)."""
    doc = {}
    for aid in sorted(masks):
        value = masks[aid]
        doc[str(int(aid))] = list(value) if isinstance(value, (list, tuple)) else encode_masks(value)
    write_text(mask_dict_path(root, split), json.dumps(doc, separators=(",", ":")) + "\n")


def meta_entry(e: MetaExpression) -> dict:
    out: dict = {"exp": e.text}
    if e.anno_ids is not None:
        out["anno_id"] = [int(a) for a in e.anno_ids]
        out["obj_id"] = [int(o) for o in (e.obj_ids if e.obj_ids is not None else range(len(e.anno_ids)))]
    return out


def write_meta_expressions(root: Path, split: str, videos: Mapping[str, MetaVideo]) -> None:
    """<split>/meta_expressions.json: {"videos": {vid: {"frames": [...], "expressions": {...}}}}."""
    doc = {
        "videos": {
            vid: {
                "frames": list(v.frames),
                "expressions": {str(k): meta_entry(e) for k, e in enumerate(v.expressions)},
            }
            for vid, v in videos.items()
        }
    }
    write_json(meta_path(root, split), doc)


def write_split(root: Path, split: str, videos: Sequence[MevisVideoSpec]) -> None:
    """A whole split: frames, meta_expressions.json and (except for `valid`) mask_dict.json.

    An expression's missing obj_ids are its anno_ids' positions among the video's sorted
    objects (the release numbers a video's objects 0, 1, ...). For `valid` the expressions are
    written as text only and no masks are written, as in the release.
    """
    masks: dict[int, np.ndarray] = {}
    meta: dict[str, MetaVideo] = {}
    for v in videos:
        names = write_frames(root, split, v.video_id, v.frames)
        t, h, w = v.frames.shape[:3]
        obj_of = {aid: k for k, aid in enumerate(sorted(v.objects))}
        for aid, m in v.objects.items():
            if aid in masks:
                raise ValueError(f"anno_id {aid} of video {v.video_id!r} is used by another video of the split")
            if np.shape(m) != (t, h, w):
                raise ValueError(f"anno_id {aid} of video {v.video_id!r}: masks {np.shape(m)}, frames {(t, h, w)}")
            masks[aid] = np.asarray(m, bool)
        exps = []
        for e in v.expressions:
            if split == "valid":
                e = MetaExpression(e.text)
            elif e.anno_ids is not None and e.obj_ids is None:
                e = MetaExpression(e.text, tuple(e.anno_ids), tuple(obj_of.get(a, -1) for a in e.anno_ids))
            exps.append(e)
        meta[v.video_id] = MetaVideo(names, exps)
    write_meta_expressions(root, split, meta)
    if split != "valid":
        write_mask_dict(root, split, masks)
