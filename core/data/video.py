"""Video files through PyAV (torchvision >= 0.29 has no video reader).

Every failure inside the decoder becomes a `DataError` naming the file, so a corrupt or
truncated mp4 is one clear line, not an FFmpeg traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np

from core.errors import DataError
from core.io import atomic_path


def read_frames(path: Path, indices: Sequence[int]) -> np.ndarray:
    """Decode the frames at 0-based `indices` of `path` -> uint8 [len(indices), H, W, 3] RGB.

    Decodes sequentially and stops after the last wanted frame (A2D clips are short and
    seeking in H.264 is not frame-accurate).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return np.zeros((0, 0, 0, 3), np.uint8)
    if wanted[0] < 0:
        raise DataError(f"{path}: negative frame index {wanted[0]}")
    got: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # one reformatter per file: frame.to_ndarray(format=...) builds a new swscale
            # context for every frame, which costs several times the decode itself
            rgb = av.video.reformatter.VideoReformatter()
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if i in wanted:
                    got[i] = rgb.reformat(frame, format="rgb24").to_ndarray()
                if i >= wanted[-1]:
                    break
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise DataError(f"{path}: corrupt or unreadable video ({type(err).__name__}: {err})") from None
    missing = [i for i in wanted if i not in got]
    if missing:
        raise DataError(
            f"{path}: video has only {decoded} decodable frames, frame {missing[0] + 1} (1-indexed) is needed; "
            "truncated?"
        )
    return np.stack([got[int(i)] for i in indices])


def count_frames(path: Path) -> int:
    """Number of decodable frames (decodes the whole file)."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(container.streams.video[0]))
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        raise DataError(f"{path}: corrupt or unreadable video ({type(err).__name__}: {err})") from None


def write_mp4(path: Path, frames: np.ndarray, fps: int = 24, crf: int = 12) -> None:
    """Write uint8 [T, H, W, 3] RGB frames as an H.264 mp4, atomically. H and W must be even."""
    t, h, w, c = frames.shape
    if c != 3 or h % 2 or w % 2:
        raise ValueError(f"write_mp4 needs [T, H, W, 3] with even H, W; got {frames.shape}")
    with atomic_path(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
            for arr in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
