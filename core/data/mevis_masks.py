"""MeViS's mask_dict.json: per anno_id one COCO RLE (core.data.rle) or null per listed frame of
its video, read once per split, checked per video when used, decoded for the chosen frames.

    {"<anno_id>": [<rle or null>, ...]}    one entry per frame of the video, in the order of
                                           its meta_expressions "frames"; null = the object is
                                           absent in that frame

The reader (core.data.mevis) turns the decoded masks into `Frame`s with `masks_frame`: the real
instances with a pixel in the frame, then the virtual (union) instances of its multi-object
expressions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.data import meta_expressions as mx
from core.data.rle import decode_rle, rle_size
from core.data.types import Frame, SkipLedger
from core.errors import DataError


def read_mask_dict(path: Path) -> dict[int, Any]:
    """anno_id -> its per-frame list (checked per video, when used)."""
    doc = mx.load_json(path, "MeViS")
    if not isinstance(doc, dict):
        raise DataError(f'{path}: expected {{"<anno_id>": [rle or null, ...]}}, got {type(doc).__name__}')
    out: dict[int, Any] = {}
    for key, value in doc.items():
        if not key.isdigit():
            raise DataError(f"{path}: key {key[:40]!r} is not an anno_id (a non-negative integer)")
        out[int(key)] = value
    return out


def check_entries(
    masks_file: Path, vid: str, aid: int, entries: Any, frames: list[str], size: tuple[int, int], ledger: SkipLedger
) -> bool:
    """True when anno_id `aid` has one RLE-or-null per frame, each of the frames' size."""
    where = f"{masks_file}: anno_id {aid} (video {vid!r})"
    if not isinstance(entries, list) or len(entries) != len(frames):
        got = f"{len(entries)} entries" if isinstance(entries, list) else type(entries).__name__
        ledger.problem("bad_h5", f"{where}: expected a list of {len(frames)} RLEs or nulls (one per frame), got {got}")
        return False
    for name, rle in zip(frames, entries):
        if rle is None:
            continue
        size_of = rle_size(rle)
        if size_of is None:
            ledger.problem("bad_h5", f'{where} frame {name}: expected {{"size": [h, w], "counts": str}} or null')
            return False
        if size_of != size:
            ledger.problem(
                "mask_size",
                f"{where} frame {name}: RLE size {size_of[0]}x{size_of[1]} (HxW) but the frames are "
                f"{size[0]}x{size[1]}",
            )
            return False
    return True


def decode_frames(
    masks_file: Path,
    mask_dict: Mapping[int, Any],
    vid: str,
    frames: list[str],
    chosen: list[int],
    instances: list[int],
    size: tuple[int, int],
    ledger: SkipLedger,
) -> dict[int, dict[int, np.ndarray]] | None:
    """listed position -> anno_id -> its mask in that frame (null = empty), for the chosen frames."""
    decoded: dict[int, dict[int, np.ndarray]] = {}
    for p in chosen:
        decoded[p] = {}
        for aid in instances:
            rle = mask_dict[aid][p]
            try:
                decoded[p][aid] = np.zeros(size, bool) if rle is None else decode_rle(rle)
            except ValueError as err:
                where = f"{masks_file}: anno_id {aid} (video {vid!r}) frame {frames[p]}"
                ledger.problem("bad_h5", f"{where}: bad RLE ({err})")
                return None
    return decoded


def masks_frame(
    masks: dict[int, np.ndarray], members: dict[int, tuple[int, ...]], index: int, size: tuple[int, int], source: str
) -> Frame:
    """One chosen frame: the real instances with a pixel in it (ascending), then the virtual ones."""
    ids, stack = [], []
    for aid in sorted(masks):
        if masks[aid].any():
            ids.append(aid)
            stack.append(masks[aid])
    for ref in sorted(members):
        union = np.logical_or.reduce([masks[a] for a in members[ref]])
        if union.any():
            ids.append(ref)
            stack.append(union)
    return Frame(
        index=index,
        instance_ids=tuple(ids),
        masks=np.stack(stack) if stack else np.zeros((0, *size), bool),
        source=source,
    )
