"""Frame helpers every reader shares: which annotated frames a video keeps, and decoding a
`Video`'s frames from whatever its source is (an mp4, a folder of JPEGs, a folder of %05d.png).

`Frame.index` is always a 0-based position: into the decoded mp4 (A2D), the sorted JPEG list of a
folder (Ref-YouTube-VOS, MeViS: `core.data.images.frame_files` order, never the number in a
name), or the 1-indexed png files of a J-HMDB folder (index i is %05d.png of i + 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from core.data.images import is_jpeg_folder, read_image_frames, read_png_frames
from core.data.types import Video
from core.data.video import read_frames


def chosen_indices(n_masked: int, n: int) -> list[int]:
    """`n` 0-based frame indices spaced uniformly over `n_masked` frames (fewer if it is short)."""
    if n_masked <= 0 or n <= 0:
        return []
    return sorted({int(i) for i in np.round(np.linspace(0, n_masked - 1, n))})


def load_frames(video: Video, indices: Sequence[int]) -> np.ndarray:
    """Decode frames at 0-based `indices` of a video -> uint8 [len(indices), H, W, 3]: its mp4
    (A2D), its JPEG folder (by position in the sorted file list) or its %05d.png folder (J-HMDB)."""
    source = Path(video.source)
    if source.is_dir():
        if is_jpeg_folder(source):
            return read_image_frames(source, indices)
        return read_png_frames(source, indices)
    return read_frames(source, indices)
