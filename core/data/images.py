"""Folders of still frames (JPEG or PNG files), read by position in the folder's sorted list.

A folder-of-frames video (Ref-YouTube-VOS `JPEGImages/<vid>/00000.jpg, 00005.jpg, ...`) need
not be numbered contiguously: frame `i` of such a video is the i-th file of `frame_files`,
sorted by frame number (numeric stems, so `5.jpg` < `10.jpg` as well as `00005` < `00010`),
never the number in its name. Readers (core.data.ytvos) and the decoder (`read_image_frames`,
called by core.data.frames.load_frames) share this one ordering.

J-HMDB's 1-indexed `%05d.png` folders are read by name (`read_png_frames`: index i is the file
%05d.png of i + 1). Every failure is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from core.errors import DataError

JPEG_SUFFIXES = (".jpg", ".jpeg")
PNG_SUFFIXES = (".png",)


def frame_sort_key(name: str) -> tuple[int, int, str]:
    """Sort key of a frame file or frame name: numeric stems by number, then anything else by name."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if stem.isdigit():
        return (0, int(stem), name)
    return (1, 0, name)


def frame_files(folder: Path, suffixes: Sequence[str] = JPEG_SUFFIXES) -> list[Path]:
    """The frame files of `folder` (suffix in `suffixes`, any case), in frame order."""
    folder = Path(folder)
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.is_file() and os.path.splitext(e.name)[1].lower() in suffixes]
    except OSError as err:
        raise DataError(f"{folder}: frame folder not readable ({type(err).__name__}: {err})") from None
    return [folder / n for n in sorted(names, key=frame_sort_key)]


def is_jpeg_folder(folder: Path) -> bool:
    """True when `folder` is a folder holding at least one JPEG file (stops at the first one)."""
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and os.path.splitext(e.name)[1].lower() in JPEG_SUFFIXES for e in it)
    except OSError:
        return False


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (no decode)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None
    return height, width


def read_image(path: Path) -> np.ndarray:
    """One image file -> uint8 [H, W, 3] RGB (grey, palette or CMYK files are converted)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: frame image not found")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: corrupt or unreadable image ({type(err).__name__}: {err})") from None


def read_image_frames(folder: Path, indices: Sequence[int], suffixes: Sequence[str] = JPEG_SUFFIXES) -> np.ndarray:
    """Frames at 0-based `indices` (positions in `frame_files(folder, suffixes)`) -> uint8 [len, H, W, 3]."""
    folder = Path(folder)
    wanted = [int(i) for i in indices]
    if not wanted:
        return np.zeros((0, 0, 0, 3), np.uint8)
    files = frame_files(folder, suffixes)
    out = []
    for i in wanted:
        if i < 0:
            raise DataError(f"{folder}: negative frame index {i}")
        if i >= len(files):
            raise DataError(f"{folder}: frame index {i} out of range ({len(files)} {'/'.join(suffixes)} frames)")
        out.append(read_image(files[i]))
    shapes = sorted({a.shape for a in out})
    if len(shapes) > 1:
        raise DataError(f"{folder}: frames of different sizes {shapes}")
    return np.stack(out)


def read_png_frames(folder: Path, indices: Sequence[int]) -> np.ndarray:
    """Frames at 0-based `indices` of a %05d.png folder (1-indexed names) -> uint8 [len, H, W, 3]."""
    out = []
    for i in indices:
        if int(i) < 0:
            raise DataError(f"{folder}: negative frame index {i}")
        out.append(read_image(Path(folder) / f"{int(i) + 1:05d}.png"))
    if not out:
        return np.zeros((0, 0, 0, 3), np.uint8)
    if len({a.shape for a in out}) > 1:
        raise DataError(f"{folder}: frames of different sizes {sorted({a.shape for a in out})}")
    return np.stack(out)
