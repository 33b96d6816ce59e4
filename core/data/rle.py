"""COCO run-length encoding (RLE), the mask format of MeViS's mask_dict.json, both ways.

An RLE is {"size": [h, w], "counts": str}: the column-major runs of a mask, alternately
background and foreground, compressed as pycocotools writes them. pycocotools decodes a
malformed string silently into a wrong mask, so `decode_rle` checks the runs first and raises
ValueError for anything malformed (the readers turn it into a bad_h5 problem naming the file).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def rle_counts(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' rleFrString, in Python).

    Raises ValueError on a character outside the alphabet, a truncated run or a negative run.
    """
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("truncated run")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {counts[p]!r} outside the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if x < 0:
            raise ValueError(f"negative run {x}")
        out.append(x)
    return out


def rle_size(rle: Any) -> tuple[int, int] | None:
    """(h, w) of a well-formed RLE dict, else None."""
    if not isinstance(rle, dict) or set(rle) != {"size", "counts"} or not isinstance(rle["counts"], str):
        return None
    size = rle["size"]
    if not isinstance(size, list) or len(size) != 2:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size):
        return None
    return int(size[0]), int(size[1])


def decode_rle(rle: Any) -> np.ndarray:
    """A COCO RLE {"size": [h, w], "counts": str} -> bool [h, w]; ValueError when malformed."""
    size = rle_size(rle)
    if size is None:
        got = repr(rle)
        got = got if len(got) <= 80 else got[:77] + "..."
        raise ValueError(f'expected {{"size": [h, w], "counts": str}}, got {got}')
    h, w = size
    total = sum(rle_counts(rle["counts"]))
    if total != h * w:
        raise ValueError(f"runs cover {total} pixels, size {h}x{w} has {h * w}")
    with warnings.catch_warnings():  # pycocotools' cython array wrapper predates numpy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode({"size": [h, w], "counts": rle["counts"].encode("ascii")}).astype(bool)


def encode_mask(mask: np.ndarray) -> dict | None:
    """bool [H, W] -> COCO RLE {"size": [h, w], "counts": str}; None when the mask is empty."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask needs [H, W], got {mask.shape}")
    if not mask.any():
        return None
    rle = mask_utils.encode(np.asfortranarray(mask > 0, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_masks(masks: np.ndarray) -> list[dict | None]:
    """bool [T, H, W] -> one RLE or None per frame."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"encode_masks needs [T, H, W], got {masks.shape}")
    return [encode_mask(m) for m in masks]
