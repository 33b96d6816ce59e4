"""Pass 1 of extraction: each video decoded, resized and cached as one chunk file.

A chunk (`outputs/extract_cache/<key>.npz`, written atomically) holds a video's stored frames
and its masks at the store's size; its key covers the video's inputs and the extraction
settings, so a rerun reuses every chunk whose inputs are unchanged and a killed extraction
loses nothing it already decoded. `chunk_all` runs `chunk_for` over many videos, optionally
on worker processes (`data.extract_workers`), in input order.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from core import procs
from core.data.frames import load_frames
from core.data.images import JPEG_SUFFIXES, frame_files, is_jpeg_folder
from core.data.types import SkipLedger, Video
from core.errors import DataError
from core.io import atomic_path
from core.sections import DataParams

CHUNK_VERSION = 1


# ---------------------------------------------------------------- per-video chunk
@dataclass
class Chunk:
    """One video, decoded and resized: everything the store needs from it."""

    frame_indices: np.ndarray  # int [n] 0-based video frame of each stored frame
    annotated: np.ndarray  # bool [n]
    frames: np.ndarray  # uint8 [n, S, S, 3]
    mask_counts: np.ndarray  # int [n] instances per stored frame (0 for window frames)
    mask_ids: np.ndarray  # int [m] instance id of each mask row
    masks: np.ndarray  # uint8 [m, S, S]
    orig_packed: np.ndarray  # uint8 [...] bit-packed original-size masks, concatenated
    orig_offsets: np.ndarray  # int [m + 1]

    def save(self, path: Path) -> None:
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> "Chunk":
        with np.load(path) as z:
            return cls(**{k: z[k] for k in cls.__dataclass_fields__})


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [n, H, W, 3] -> uint8 [n, S, S, 3] (antialiased bilinear; aspect is squashed, as 320x320 in the paper)."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """bool [m, H, W] -> uint8 [m, S, S] in {0, 1} (a pixel is in when >= half covered)."""
    if len(masks) == 0:
        return np.zeros((0, size, size), np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (t[:, 0] >= 0.5).to(torch.uint8).numpy()


def folder_frames(folder: Path) -> list[Path]:
    """The frame files of a folder source, as `load_frames` decodes them: a folder with JPEGs
    (Ref-YouTube-VOS, MeViS) -> its JPEGs in frame order (core.data.images); else its PNGs (J-HMDB)."""
    if is_jpeg_folder(folder):
        return frame_files(folder, JPEG_SUFFIXES)
    return sorted(folder.glob("*.png"))


def frame_count(video: Video) -> int | None:
    """Frames in the source, when cheap to know (used only to clamp the optional window)."""
    if video.source.is_dir():
        return len(folder_frames(video.source))
    return None


def wanted_frames(video: Video, window: int) -> tuple[list[int], set[int]]:
    annotated = {f.index for f in video.frames}
    wanted = set(annotated)
    last = frame_count(video)
    for i in annotated:
        for j in range(i - window, i + window + 1):
            if j >= 0 and (last is None or j < last):
                wanted.add(j)
    return sorted(wanted), annotated


def build_chunk(
    video: Video, frames: np.ndarray, indices: list[int], annotated: set[int], size: int, ledger: SkipLedger
) -> Chunk | None:
    h, w = frames.shape[1:3]
    if (h, w) != (video.height, video.width):
        ledger.problem(
            "mask_size",
            f"{video.source}: decoded frames are {h}x{w} but the annotations say {video.height}x{video.width}",
        )
        return None
    by_index = {f.index: f for f in video.frames}
    counts, ids, masks = [], [], []
    for i in indices:
        f = by_index.get(i)
        if f is None:
            counts.append(0)
            continue
        if f.masks.shape[1:] != (h, w):
            ledger.problem(
                "mask_size", f"{f.source}: mask is {f.masks.shape[1]}x{f.masks.shape[2]} but the frame is {h}x{w}"
            )
            return None
        counts.append(len(f.instance_ids))
        ids.extend(f.instance_ids)
        masks.append(f.masks.astype(bool))
    all_masks = np.concatenate(masks) if masks else np.zeros((0, h, w), bool)
    packed = [np.packbits(m.reshape(-1)) for m in all_masks]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in packed], dtype=np.int64)])
    return Chunk(
        frame_indices=np.asarray(indices, np.int64),
        annotated=np.asarray([i in annotated for i in indices]),
        frames=resize_frames(frames, size),
        mask_counts=np.asarray(counts, np.int64),
        mask_ids=np.asarray(ids, np.int64),
        masks=resize_masks(all_masks, size),
        orig_packed=np.concatenate(packed) if packed else np.zeros(0, np.uint8),
        orig_offsets=offsets,
    )


def chunk_key(video: Video, size: int, window: int) -> str:
    """Identity of a chunk's inputs: a changed video, mask or size gives a new key (for a folder
    source, each frame file that `load_frames` may decode: its JPEGs, else its PNGs)."""
    h = hashlib.sha256(f"{CHUNK_VERSION}|{size}|{window}|{video.video_id}|{video.height}x{video.width}".encode())
    sources = [video.source] if video.source.is_file() else folder_frames(video.source)
    for p in sources:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    for f in video.frames:
        h.update(f"{f.index}:{f.instance_ids}".encode())
        h.update(np.packbits(f.masks.astype(bool)).tobytes())
    return h.hexdigest()[:16]


def chunk_for(video: Video, cache: Path, size: int, window: int, ledger: SkipLedger) -> Path | None:
    """Path of the video's chunk in the cache, decoding it first unless an identical one is there."""
    path = cache / f"{video.video_id}-{chunk_key(video, size, window)}.npz"
    if path.is_file():  # chunks are written atomically: one that exists is complete
        return path
    indices, annotated = wanted_frames(video, window)
    try:
        frames = load_frames(video, indices)
    except DataError as err:  # the decoder's error names the file; re-filed as this video's problem
        ledger.problem("corrupt_video", err.detail)
        return None
    chunk = build_chunk(video, frames, indices, annotated, size, ledger)
    if chunk is not None:
        for stale in cache.glob(f"{video.video_id}-*.npz"):
            stale.unlink()
        chunk.save(path)
        return path
    return None


def _worker_init() -> None:
    torch.set_num_threads(1)  # parallel across videos; intra-op threads on tiny frames only contend
    procs.watch_launcher()  # an extraction killed outright takes its decoders with it


def _chunk_job(
    video: Video, cache: Path, size: int, window: int, allowed: frozenset[str]
) -> tuple[Path | None, SkipLedger]:
    ledger = SkipLedger(allowed=allowed)
    return chunk_for(video, cache, size, window, ledger), ledger


def chunk_all(
    sources: Iterable[tuple[str, Video]], cache: Path, data: DataParams, ledger: SkipLedger
) -> Iterator[tuple[str, Video, Path | None]]:
    """`chunk_for` over every video, in input order, on `data.extract_workers` processes.

    At most a few videos per worker are in flight, so memory stays bounded on the real
    datasets; a worker's `DataError` (a problem not in allow_skip) is raised here, in order.
    """
    workers = data.extract_workers or os.cpu_count() or 1
    if workers == 1:
        for split, video in sources:
            yield split, video, chunk_for(video, cache, data.input_size, data.window, ledger)
        return
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    pending: deque = deque()

    def oldest() -> tuple[str, Video, Path | None]:
        split, video, future = pending.popleft()
        path, worker_ledger = future.result()
        ledger.merge(worker_ledger)
        return split, video, path

    try:
        for split, video in sources:
            pending.append(
                (split, video, pool.submit(_chunk_job, video, cache, data.input_size, data.window, ledger.allowed))
            )
            if len(pending) >= 4 * workers:
                yield oldest()
        while pending:
            yield oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
