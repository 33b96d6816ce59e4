"""Ref-YouTube-VOS writers: the exact inverse of the layout `core.data.ytvos` reads.

Used by the tests and the synthetic twin; every file is written atomically. Low-level writers
(one frame folder, one video's id maps, a whole meta file) let a test build any quirk by hand;
`write_split` writes a complete split from `TwinVideo` records:

    write_split(root, "train", [TwinVideo("v1", frames, [("a red car", 1)], id_maps, {1: "car"})])
    write_split(root, "valid", [TwinVideo("v9", frames, [("the dog", None)])])

Frames are JPEG (quality JPEG_QUALITY, no chroma subsampling: still lossy, compare decoded
frames with a tolerance); id maps are palette PNGs with the DAVIS palette, pixel value =
object id (0 = background), as in the release. Frame names default to every 5th frame number,
00000, 00005, ..., as in the release. JSON keeps insertion order (videos, exp ids "0", "1", ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from core.data.ytvos import TRAIN, annotation_path, frame_path, meta_expressions_path, meta_path
from core.io import atomic_path, write_text

JPEG_QUALITY = 95
FRAME_STEP = 5  # the release keeps every 5th frame


def davis_palette() -> bytes:
    """The DAVIS / PASCAL VOC colour map: 256 RGB triples, index 1 = (128, 0, 0), 2 = (0, 128, 0), ..."""
    out = bytearray()
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        out += bytes((r, g, b))
    return bytes(out)


DAVIS_PALETTE = davis_palette()


def frame_names(n: int, step: int = FRAME_STEP) -> list[str]:
    """['00000', '00005', ...]: the names of `n` frames kept every `step` frames."""
    return [f"{step * t:05d}" for t in range(n)]


def _names(n: int, names: Sequence[str] | None) -> list[str]:
    names = frame_names(n) if names is None else list(names)
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"need {n} distinct frame names, got {names}")
    return names


def write_frames(
    root: Path, split: str, video_id: str, frames: np.ndarray, names: Sequence[str] | None = None
) -> list[str]:
    """uint8 [T, H, W, 3] -> <split>/JPEGImages/<vid>/<name>.jpg; returns the names used."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_frames needs uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    names = _names(len(frames), names)
    for name, arr in zip(names, frames):
        with atomic_path(frame_path(root, split, video_id, name), suffix=".jpg") as tmp:
            Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return names


def write_id_map(root: Path, video_id: str, name: str, ids: np.ndarray, split: str = TRAIN) -> None:
    """uint8 [H, W] object ids (0 = background) -> <split>/Annotations/<vid>/<name>.png, palette PNG."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(f"write_id_map needs uint8 [H, W] object ids, got {ids.dtype} {ids.shape}")
    h, w = ids.shape
    img = Image.frombytes("P", (w, h), np.ascontiguousarray(ids).tobytes())
    img.putpalette(DAVIS_PALETTE)
    with atomic_path(annotation_path(root, video_id, name, split), suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def write_id_maps(root: Path, video_id: str, names: Sequence[str], id_maps: np.ndarray, split: str = TRAIN) -> None:
    """uint8 [T, H, W] -> one palette PNG per name (a subset of the video's frames may be annotated)."""
    id_maps = np.asarray(id_maps)
    if id_maps.ndim != 3 or len(id_maps) != len(names):
        raise ValueError(f"write_id_maps needs [T, H, W] with T == {len(names)}, got {id_maps.shape}")
    for name, ids in zip(names, id_maps):
        write_id_map(root, video_id, name, ids, split)


def objects_from_id_maps(
    categories: Mapping[int, str], names: Sequence[str], id_maps: np.ndarray
) -> dict[int, tuple[str, list[str]]]:
    """meta.json objects of one video: {id: (category, the frames where it has pixels)}.

    Every id of `categories` is an object (one in no frame gets frames []); every nonzero value
    of `id_maps` must be one of them.
    """
    id_maps = np.asarray(id_maps)
    present = [set(np.unique(m).tolist()) - {0} for m in id_maps]
    stray = sorted(set().union(*present) - set(categories)) if present else []
    if stray:
        raise ValueError(f"id maps hold ids {stray} without a category")
    return {k: (categories[k], [n for n, p in zip(names, present) if k in p]) for k in sorted(categories)}


def _write_json(path: Path, doc: Any) -> None:
    write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def write_meta(root: Path, videos: Mapping[str, Mapping[int, tuple[str, Sequence[str]]]], split: str = TRAIN) -> None:
    """<split>/meta.json from {vid: {obj_id: (category, frame names)}}."""
    doc = {
        "videos": {
            vid: {"objects": {str(k): {"category": cat, "frames": list(fr)} for k, (cat, fr) in objs.items()}}
            for vid, objs in videos.items()
        }
    }
    _write_json(meta_path(root, split), doc)


def write_meta_expressions(
    root: Path, split: str, videos: Mapping[str, tuple[Sequence[str], Sequence[tuple[str, int | None]]]]
) -> None:
    """meta_expressions/<split>/meta_expressions.json from {vid: (frame names, [(text, obj_id)])}.

    Expression ids are "0", "1", ... per video; obj_id None (valid/test) writes no "obj_id".
    """
    doc: dict[str, Any] = {"videos": {}}
    for vid, (names, exprs) in videos.items():
        entries = {}
        for k, (text, obj) in enumerate(exprs):
            entries[str(k)] = {"exp": text} if obj is None else {"exp": text, "obj_id": str(obj)}
        doc["videos"][vid] = {"expressions": entries, "frames": list(names)}
    _write_json(meta_expressions_path(root, split), doc)


@dataclass(frozen=True)
class TwinVideo:
    """One video of a synthetic split: frames, expressions and (train) per-frame object ids."""

    video_id: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    expressions: Sequence[tuple[str, int | None]]  # (text, obj_id); obj_id None in valid/test
    id_maps: np.ndarray | None = None  # uint8 [T, H, W] object ids (train only)
    categories: Mapping[int, str] | None = None  # obj_id -> category (train only)
    names: Sequence[str] | None = None  # frame names; default every 5th, 00000, 00005, ...


def write_split(root: Path, split: str, videos: Sequence[TwinVideo]) -> None:
    """A whole split: frames, and for train the id maps (every frame annotated) and meta.json,
    then meta_expressions.json. Files of earlier calls for other videos are not removed."""
    objects: dict[str, dict[int, tuple[str, list[str]]]] = {}
    exprs: dict[str, tuple[list[str], list[tuple[str, int | None]]]] = {}
    for v in videos:
        names = write_frames(root, split, v.video_id, v.frames, v.names)
        if split == TRAIN:
            if v.id_maps is None or v.categories is None:
                raise ValueError(f"train video {v.video_id!r} needs id_maps and categories")
            if np.asarray(v.id_maps).shape != np.asarray(v.frames).shape[:3]:
                raise ValueError(f"{v.video_id!r}: id maps {np.shape(v.id_maps)} do not fit frames {v.frames.shape}")
            write_id_maps(root, v.video_id, names, v.id_maps, split)
            objects[v.video_id] = objects_from_id_maps(v.categories, names, v.id_maps)
        exprs[v.video_id] = (names, list(v.expressions))
    if split == TRAIN:
        write_meta(root, objects, split)
    write_meta_expressions(root, split, exprs)
