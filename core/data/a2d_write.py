"""A2D Sentences writers: the exact inverse of the layout `core.data.a2d` reads.

Used by the synthetic generator and the tests; every file is written atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from core.data.a2d import ANNOTATION_HEADER, ANNOTATIONS, MISSED, VIDEOSET, VideosetRow, h5_path
from core.io import atomic_path, write_text


def _csv_text(rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_videoset(root: Path, rows: Sequence[VideosetRow]) -> None:
    """Release/videoset.csv, no header, one row per video."""
    text = _csv_text(
        [
            (r.vid, r.label, r.start_time, r.end_time, r.height, r.width, r.total_frames, r.annotated_frames, r.subset)
            for r in rows
        ]
    )
    write_text(Path(root) / VIDEOSET, text)


def write_annotations(root: Path, rows: Sequence[tuple[str, str, str]]) -> None:
    """text_annotations/a2d_annotation.txt: header video_id,instance_id,query, then the rows."""
    write_text(Path(root) / ANNOTATIONS, _csv_text([ANNOTATION_HEADER, *rows]))


def write_missed_videos(root: Path, video_ids: Sequence[str]) -> None:
    write_text(Path(root) / MISSED, "".join(f"{v}\n" for v in video_ids))


def _bboxes(masks: np.ndarray) -> np.ndarray:
    """4 x N boxes (x1, y1, x2, y2 per column) of [N, H, W] masks; zeros for an empty mask."""
    out = np.zeros((4, masks.shape[0]), np.float64)
    for k, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[:, k] = (xs.min(), ys.min(), xs.max(), ys.max())
    return out


def write_frame_h5(
    root: Path, video_id: str, frame_number: int, instance_ids: Sequence[int], masks: np.ndarray
) -> None:
    """One annotated frame (1-indexed `frame_number`), masks [N, H, W] in image orientation.

    Stored like the real MATLAB v7.3 files: reMask transposed, (W, H) for a single instance.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != len(instance_ids):
        raise ValueError(f"write_frame_h5 needs masks [N, H, W] with N == {len(instance_ids)}, got {masks.shape}")
    if frame_number < 1:
        raise ValueError(f"frame_number is 1-indexed, got {frame_number}")
    binary = (masks > 0).astype(np.uint8)
    stored = binary.transpose(0, 2, 1)
    if len(instance_ids) == 1:
        stored = stored[0]
    with atomic_path(h5_path(root, video_id, frame_number), suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("instance", data=np.asarray(instance_ids, np.float64))
            f.create_dataset("reMask", data=np.ascontiguousarray(stored))
            f.create_dataset("reBBox", data=_bboxes(binary))
