"""Extraction stage: raw dataset layout -> processed store (see store.py).

The dataset is `data.dataset`, read by its reader in core.data.registry (`read_sources`): a2d =
A2D Sentences train/test + J-HMDB Sentences as the zero-shot `jhmdb` split; ytvos =
Ref-YouTube-VOS train, with the videos of `core.data.ytvos.offline_split` (data.offline_test_fraction,
data.offline_seed) as `test`; mevis = MeViS train -> `train`, valid_u -> `test`. For every dataset,
`val` is drawn from the remaining train videos (`val_videos`).

    python -m core.data.extract [--params params.yaml] [--set key=value ...]

Two passes, so that a killed run loses nothing it already decoded:
  1. each video is decoded, resized and saved as one chunk in `outputs/extract_cache/`
     (`core.data.chunks`: atomic; a rerun reuses every chunk whose inputs are unchanged);
  2. the chunks are assembled into the store in a temp folder, published in place last
     (`core.io.staged_dir`: a kill leaves the old store or the new one).
A summary of what was read, kept and skipped (and why) is written next to the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from core.cli import params_from, parser, run_main
from core.config import Params
from core.data import registry
from core.data.chunks import Chunk, chunk_all
from core.data.store import SPLITS
from core.data.types import SkipLedger, Video
from core.data.vocab import Vocab, tokenize
from core.errors import DataError
from core.io import hash_file, staged_dir, write_json

log = logging.getLogger("cvls")


# ---------------------------------------------------------------- assembly
@dataclass
class VideoEntry:
    video: Video  # frames' masks dropped after chunking (memory)
    chunk_path: Path | None
    split: str
    # MeViS: virtual (union) instance id -> its member instance ids; empty for other datasets
    unions: dict[int, tuple[int, ...]] = field(default_factory=dict)


def val_videos(train_ids: Sequence[str], fraction: float) -> set[str]:
    """A deterministic hold-out of the training videos (hash order, so it is stable under additions)."""
    if fraction <= 0 or not train_ids:
        return set()
    ranked = sorted(train_ids, key=lambda v: hashlib.sha1(v.encode()).hexdigest())
    n = min(max(1, round(len(ranked) * fraction)), len(ranked) - 1)
    return set(ranked[:n])


def sample_entries(
    video: Video,
    vid_row: int,
    frame_rows: dict[int, int],
    present: dict[int, set[int]],
    ledger: SkipLedger,
    keep_absent: bool = False,
) -> list[dict]:
    """Sentences of one video with the frames where each referent is visible; absent pairs are
    counted (no training pair). With `keep_absent` (the J&F datasets, whose DAVIS protocol scores
    every annotated frame of an expression, an empty target where its object is not in view) those
    frames are kept as the sample's "absent" rows, for evaluation only."""
    out = []
    for e in video.expressions:
        if not tokenize(e.text):
            ledger.problem("empty_sentence", f"{e.source}: sentence has no words")
            continue
        rows, absent = [], []
        for f in video.frames:
            if e.referent in present[f.index]:
                rows.append(frame_rows[f.index])
            else:
                absent.append(frame_rows[f.index])
                ledger.quirk("referent_absent_in_frame", f"{video.video_id} frame {f.index + 1} instance {e.referent}")
        if rows:
            entry = {
                "video": vid_row,
                "text": e.text,
                "referent": e.referent,
                "frames": rows,
                "source": e.source,
                "attribute": e.attribute,
            }
            out.append({**entry, "absent": absent} if keep_absent else entry)
    return out


def assemble_split(
    folder: Path, entries: list[VideoEntry], size: int, ledger: SkipLedger, keep_absent: bool = False
) -> dict:
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
        classes = None if v.classes is None else {str(i): c for i, c in sorted(v.classes.items())}
        record = {"id": v.video_id, "source": str(v.source), "height": v.height, "width": v.width, "classes": classes}
        if entry.unions:  # MeViS multi-object expressions (absent elsewhere: the A2D store is unchanged)
            record["unions"] = {str(u): list(m) for u, m in sorted(entry.unions.items())}
        videos.append(record)
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
            frame_table.append(
                {
                    "video": vid_row,
                    "index": idx,
                    "annotated": bool(c.annotated[k]),
                    "masks": [cursor, cursor + cnt],
                    "ids": ids,
                }
            )
            cursor += cnt
        samples.extend(sample_entries(v, vid_row, frame_rows, present, ledger, keep_absent))
        fr, mr, pr = fr + n, mr + m, pr + len(c.orig_packed)
    for arr in (frames, masks, orig):
        arr.flush()
    del frames, masks, orig
    index = {
        "input_size": size,
        "videos": videos,
        "frames": frame_table,
        "samples": samples,
        "masks_orig_offsets": offsets,
    }
    (folder / "index.json").write_text(json.dumps(index))
    n_pairs = sum(len(s["frames"]) + len(s.get("absent", ())) for s in samples)  # = SplitStore.eval_pairs()
    return {
        "videos": len(videos),
        "sentences": len(samples),
        "frames": n_frames,
        "annotated_frames": sum(f["annotated"] for f in frame_table),
        "instance_masks": n_masks,
        "eval_pairs": n_pairs,
    }


def fingerprint(folder: Path) -> str:
    """Content hash of the processed store (tags every run: which data it saw).

    Hashes each file's path relative to `folder` and its bytes, never `folder`'s own name, so
    the temp folder it is computed in and the published store give the same value. index.json is
    hashed whole (the classes and attributes it carries are part of the identity) but for where
    each video and sentence was read from (`source`): the same data mounted elsewhere is the
    same data, so machines with their own copies share runs and queues (core/identity.py)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "summary.json":
            h.update(p.relative_to(folder).as_posix().encode())
            if p.name == "index.json":
                h.update(index_content(p))
            else:
                hash_file(h, p)
    return h.hexdigest()[:16]


def index_content(path: Path) -> bytes:
    """index.json without the raw files' locations, as canonical JSON."""
    index = json.loads(path.read_text())
    for key in ("videos", "samples"):
        index[key] = [{k: v for k, v in entry.items() if k != "source"} for entry in index.get(key, [])]
    return json.dumps(index, sort_keys=True).encode()


def read_sources(
    params: Params, ledger: SkipLedger, unions: dict[str, dict[int, tuple[int, ...]]] | None = None
) -> Iterator[tuple[str, Video]]:
    """(split, video) of every usable video of `data.dataset` (its reader in core.data.registry);
    split is train, test or jhmdb (val is drawn from train later). A dataset with multi-object
    expressions (MeViS) fills `unions` (video id -> virtual id -> members)."""
    spec = params.dataset_spec
    root = spec.existing_root(params)
    yield from spec.read(params, root, ledger, {} if unions is None else unions)


def strip_masks(v: Video) -> Video:
    """Keep frame indices and ids, drop pixel masks (already in the chunk) to bound memory."""
    from dataclasses import replace

    return replace(v, frames=tuple(replace(f, masks=np.zeros((len(f.instance_ids), 0, 0), bool)) for f in v.frames))


def extract(params: Params) -> dict:
    d = params.data
    ledger = SkipLedger(allowed=frozenset(d.allow_skip))
    cache = params.outputs / "extract_cache"
    cache.mkdir(parents=True, exist_ok=True)
    entries: list[VideoEntry] = []
    unions: dict[str, dict[int, tuple[int, ...]]] = {}
    chunks = chunk_all(read_sources(params, ledger, unions), cache, d, ledger)
    for split, video, path in tqdm(chunks, desc="extract: decode videos", unit="video"):
        if path is not None:
            entries.append(VideoEntry(strip_masks(video), path, split, unions.get(video.video_id, {})))
    held_out = val_videos([e.video.video_id for e in entries if e.split == "train"], d.val_fraction)
    for e in entries:
        if e.video.video_id in held_out:
            e.split = "val"

    keep_absent = params.dataset_spec.metrics.davis  # DAVIS scores every annotated frame of an expression
    with staged_dir(params.processed) as tmp:  # the fingerprint hashes paths relative to tmp
        counts = {}
        for split in SPLITS:
            chosen = [e for e in entries if e.split == split]
            if chosen or split != "jhmdb":
                counts[split] = assemble_split(tmp / split, chosen, d.input_size, ledger, keep_absent)
        if counts["train"]["sentences"] == 0:
            raise DataError(f"{params.raw_dataset}: no usable training sentences after extraction")
        train_sentences = [x.text for en in entries if en.split == "train" for x in en.video.expressions]
        vocab = Vocab.build(train_sentences, d.vocab_size)
        vocab.save(tmp / "vocab.json")
        summary = {
            "source": d.source,
            "dataset": d.dataset,
            **dataset_info(params, entries),
            "input_size": d.input_size,
            "vocab_words": len(vocab.words),
            "splits": counts,
            "skipped": ledger.as_dict(),
            "fingerprint": fingerprint(tmp),
        }
        write_json(tmp / "summary.json", summary)
    return summary


def dataset_info(params: Params, entries: list[VideoEntry]) -> dict:
    """The summary's record of what was read: the dataset's root(s) and how its test split was made."""
    spec = params.dataset_spec
    info: dict = {f"{spec.root_key}": str(params.raw_dataset)}
    for name in spec.extra_roots:
        root = params.raw_root(name)
        info[f"{name}_root"] = None if root is None else str(root)
    if spec.test_split is not None:
        info["test_split"] = spec.test_split(params, params.raw_dataset)
    if spec.unions:  # the union instances of multi-object expressions (index.json: videos[i]["unions"])
        info["virtual_instances"] = sum(len(e.unions) for e in entries)
    return info


def format_summary(summary: dict) -> str:
    dataset = registry.get(summary["dataset"]).title
    lines = [
        f"processed store: {summary['source']} {dataset} data, fingerprint {summary['fingerprint']}, "
        f"vocab {summary['vocab_words']} words"
    ]
    for split, c in summary["splits"].items():
        lines.append(
            f"  {split:6s} videos {c['videos']:5d}  sentences {c['sentences']:5d}  frames {c['frames']:6d}  "
            f"eval pairs {c['eval_pairs']:6d}"
        )
    if summary["skipped"]:
        lines.append("  skipped (on purpose, counted):")
        for reason, info in summary["skipped"].items():
            lines.append(f"    {reason}: {info['count']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(
        "Extract the processed store from data.dataset's layout (A2D + J-HMDB, Ref-YouTube-VOS, MeViS)"
    ).parse_args(argv)
    params = params_from(args)
    summary = extract(params)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
