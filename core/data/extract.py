"""Extraction stage: raw A2D / J-HMDB layout -> processed store (see store.py).

    python -m core.data.extract [--params params.yaml] [--set key=value ...]

Two passes, so that a killed run loses nothing it already decoded:
  1. each video is decoded, resized and saved as one chunk in `outputs/extract_cache/`
     (atomic; a rerun reuses every chunk whose inputs are unchanged);
  2. the chunks are assembled into the store in a temp folder, renamed into place last.
A summary of what was read, kept and skipped (and why) is written next to the store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.cli import params_from, parser, run_main
from core.config import DataParams, Params
from core.data.a2d import load_frames, read_a2d
from core.data.jhmdb import read_jhmdb
from core.data.store import SPLITS
from core.data.types import SkipLedger, Video
from core.data.vocab import Vocab, tokenize
from core.errors import DataError
from core.io import atomic_path, hash_file, write_json

log = logging.getLogger("cvls")
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


def frame_count(video: Video) -> int | None:
    """Frames in the source, when cheap to know (used only to clamp the optional window)."""
    if video.source.is_dir():
        return len(list(video.source.glob("*.png")))
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


def build_chunk(video: Video, frames: np.ndarray, indices: list[int], annotated: set[int], size: int, ledger: SkipLedger) -> Chunk | None:
    h, w = frames.shape[1:3]
    if (h, w) != (video.height, video.width):
        ledger.problem("mask_size", f"{video.source}: decoded frames are {h}x{w} but the annotations say {video.height}x{video.width}")
        return None
    by_index = {f.index: f for f in video.frames}
    counts, ids, masks = [], [], []
    for i in indices:
        f = by_index.get(i)
        if f is None:
            counts.append(0)
            continue
        if f.masks.shape[1:] != (h, w):
            ledger.problem("mask_size", f"{f.source}: mask is {f.masks.shape[1]}x{f.masks.shape[2]} but the frame is {h}x{w}")
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
    """Identity of a chunk's inputs: a changed video, mask or size gives a new key."""
    h = hashlib.sha256(f"{CHUNK_VERSION}|{size}|{window}|{video.video_id}|{video.height}x{video.width}".encode())
    sources = [video.source] if video.source.is_file() else sorted(video.source.glob("*.png"))
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
    except DataError as err:
        ledger.problem("corrupt_video", str(err).split(" (to skip")[0])
        return None
    chunk = build_chunk(video, frames, indices, annotated, size, ledger)
    if chunk is not None:
        for stale in cache.glob(f"{video.video_id}-*.npz"):
            stale.unlink()
        chunk.save(path)
        return path
    return None


# ---------------------------------------------------------------- assembly
@dataclass
class VideoEntry:
    video: Video  # frames' masks dropped after chunking (memory)
    chunk_path: Path | None
    split: str


def val_videos(train_ids: Sequence[str], fraction: float) -> set[str]:
    """A deterministic hold-out of the training videos (hash order, so it is stable under additions)."""
    if fraction <= 0 or not train_ids:
        return set()
    ranked = sorted(train_ids, key=lambda v: hashlib.sha1(v.encode()).hexdigest())
    n = min(max(1, round(len(ranked) * fraction)), len(ranked) - 1)
    return set(ranked[:n])


def sample_entries(video: Video, vid_row: int, frame_rows: dict[int, int], present: dict[int, set[int]], ledger: SkipLedger) -> list[dict]:
    """Sentences of one video with the frames where each referent is visible; absent pairs are counted."""
    out = []
    for e in video.expressions:
        if not tokenize(e.text):
            ledger.problem("empty_sentence", f"{e.source}: sentence has no words")
            continue
        rows = []
        for f in video.frames:
            if e.referent in present[f.index]:
                rows.append(frame_rows[f.index])
            else:
                ledger.quirk("referent_absent_in_frame", f"{video.video_id} frame {f.index + 1} instance {e.referent}")
        if rows:
            out.append({"video": vid_row, "text": e.text, "referent": e.referent, "frames": rows, "source": e.source})
    return out


def assemble_split(folder: Path, entries: list[VideoEntry], size: int, ledger: SkipLedger) -> dict:
    """Write one split from its chunks; memory stays bounded by streaming into mmapped arrays."""
    folder.mkdir(parents=True)
    chunks = [(e, Chunk.load(e.chunk_path)) for e in entries if e.chunk_path is not None]
    n_frames = sum(len(c.frame_indices) for _, c in chunks)
    n_masks = sum(len(c.mask_ids) for _, c in chunks)
    n_packed = sum(len(c.orig_packed) for _, c in chunks)
    frames = np.lib.format.open_memmap(folder / "frames.npy", "w+", np.uint8, (n_frames, size, size, 3))
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.uint8, (n_masks, size, size))
    orig = np.lib.format.open_memmap(folder / "masks_orig.npy", "w+", np.uint8, (n_packed,))
    videos, frame_table, samples, offsets = [], [], [], [0]
    fr = mr = pr = 0
    for entry, c in chunks:
        v = entry.video
        vid_row = len(videos)
        videos.append({"id": v.video_id, "source": str(v.source), "height": v.height, "width": v.width})
        n, m = len(c.frame_indices), len(c.mask_ids)
        frames[fr : fr + n] = c.frames
        masks[mr : mr + m] = c.masks
        orig[pr : pr + len(c.orig_packed)] = c.orig_packed
        offsets.extend((pr + c.orig_offsets[1:]).tolist())
        frame_rows, present, cursor = {}, {}, mr
        for k in range(n):
            cnt = int(c.mask_counts[k])
            ids = c.mask_ids[cursor - mr : cursor - mr + cnt].tolist()
            idx = int(c.frame_indices[k])
            frame_rows[idx] = fr + k
            present[idx] = set(ids)
            frame_table.append({"video": vid_row, "index": idx, "annotated": bool(c.annotated[k]), "masks": [cursor, cursor + cnt], "ids": ids})
            cursor += cnt
        samples.extend(sample_entries(v, vid_row, frame_rows, present, ledger))
        fr, mr, pr = fr + n, mr + m, pr + len(c.orig_packed)
    for arr in (frames, masks, orig):
        arr.flush()
    del frames, masks, orig
    index = {"input_size": size, "videos": videos, "frames": frame_table, "samples": samples, "masks_orig_offsets": offsets}
    (folder / "index.json").write_text(json.dumps(index))
    n_pairs = sum(len(s["frames"]) for s in samples)
    return {"videos": len(videos), "sentences": len(samples), "frames": n_frames, "annotated_frames": sum(f["annotated"] for f in frame_table),
            "instance_masks": n_masks, "eval_pairs": n_pairs}


def fingerprint(folder: Path) -> str:
    """Content hash of the processed store (tags every run: which data it saw)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "summary.json":
            h.update(p.relative_to(folder).as_posix().encode())
            hash_file(h, p)
    return h.hexdigest()[:16]


def read_sources(params: Params, ledger: SkipLedger) -> Iterator[tuple[str, Video]]:
    root = params.raw_a2d
    if not root.is_dir():
        hint = "set data.a2d_root to your A2D Sentences folder" if params.data.source == "real" else "run the generate stage first (dvc repro generate)"
        raise DataError(f"{root}: A2D dataset root not found; {hint}")
    for v in read_a2d(root, ledger):
        yield v.split, v
    jroot = params.raw_jhmdb
    if jroot is not None:
        if not jroot.is_dir():
            raise DataError(f"{jroot}: J-HMDB dataset root not found (data.jhmdb_root)")
        for v in read_jhmdb(jroot, ledger):
            yield "jhmdb", v


def strip_masks(v: Video) -> Video:
    """Keep frame indices and ids, drop pixel masks (already in the chunk) to bound memory."""
    from dataclasses import replace

    return replace(v, frames=tuple(replace(f, masks=np.zeros((len(f.instance_ids), 0, 0), bool)) for f in v.frames))


def _worker_init() -> None:
    torch.set_num_threads(1)  # parallel across videos; intra-op threads on tiny frames only contend


def _chunk_job(video: Video, cache: Path, size: int, window: int, allowed: frozenset[str]) -> tuple[Path | None, SkipLedger]:
    ledger = SkipLedger(allowed=allowed)
    return chunk_for(video, cache, size, window, ledger), ledger


def chunk_all(sources: Iterable[tuple[str, Video]], cache: Path, data: DataParams, ledger: SkipLedger
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
            pending.append((split, video, pool.submit(_chunk_job, video, cache, data.input_size, data.window, ledger.allowed)))
            if len(pending) >= 4 * workers:
                yield oldest()
        while pending:
            yield oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def extract(params: Params) -> dict:
    d = params.data
    ledger = SkipLedger(allowed=frozenset(d.allow_skip))
    cache = params.outputs / "extract_cache"
    cache.mkdir(parents=True, exist_ok=True)
    entries: list[VideoEntry] = []
    chunks = chunk_all(read_sources(params, ledger), cache, d, ledger)
    for split, video, path in tqdm(chunks, desc="extract: decode videos", unit="video"):
        if path is not None:
            entries.append(VideoEntry(strip_masks(video), path, split))
    held_out = val_videos([e.video.video_id for e in entries if e.split == "train"], d.val_fraction)
    for e in entries:
        if e.video.video_id in held_out:
            e.split = "val"

    out = params.processed
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    counts = {}
    for split in SPLITS:
        chosen = [e for e in entries if e.split == split]
        if chosen or split != "jhmdb":
            counts[split] = assemble_split(tmp / split, chosen, d.input_size, ledger)
    if counts["train"]["sentences"] == 0:
        raise DataError(f"{params.raw_a2d}: no usable training sentences after extraction")
    train_sentences = [x.text for en in entries if en.split == "train" for x in en.video.expressions]
    vocab = Vocab.build(train_sentences, d.vocab_size)
    vocab.save(tmp / "vocab.json")
    summary = {
        "source": d.source,
        "a2d_root": str(params.raw_a2d),
        "jhmdb_root": str(params.raw_jhmdb) if params.raw_jhmdb else None,
        "input_size": d.input_size,
        "vocab_words": len(vocab.words),
        "splits": counts,
        "skipped": ledger.as_dict(),
        "fingerprint": fingerprint(tmp),
    }
    write_json(tmp / "summary.json", summary)
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"processed store: {summary['source']} data, fingerprint {summary['fingerprint']}, vocab {summary['vocab_words']} words"]
    for split, c in summary["splits"].items():
        lines.append(f"  {split:6s} videos {c['videos']:5d}  sentences {c['sentences']:5d}  frames {c['frames']:6d}  eval pairs {c['eval_pairs']:6d}")
    if summary["skipped"]:
        lines.append("  skipped (on purpose, counted):")
        for reason, info in summary["skipped"].items():
            lines.append(f"    {reason}: {info['count']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("Extract the processed store from the A2D (+ J-HMDB) layout").parse_args(argv)
    params = params_from(args)
    summary = extract(params)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
