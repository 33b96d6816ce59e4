"""A2D Sentences: the on-disk layout and its reader.

Layout (as distributed, and as public code such as MTTR reads it), under one root:

    Release/videoset.csv            no header; vid, label, start_time, end_time, height, width,
                                    total_frames, annotated_frames, subset (0 = train, 1 = test)
    Release/clips320H/<vid>.mp4     the videos
    text_annotations/a2d_annotation.txt
                                    CSV with header video_id,instance_id,query (extra columns ok)
    text_annotations/a2d_missed_videos.txt
                                    one video id per line; these videos are excluded
    text_annotations/a2d_annotation_with_instances/<vid>/<frame:05d>.h5
                                    one file per annotated frame; the number is 1-indexed into
                                    the mp4. Datasets (MATLAB v7.3 files, hence transposed):
                                      instance  ids of the instances in the frame (float64)
                                      reMask    masks, stored transposed: (W, H) when the frame
                                                has one instance, else (N, W, H)
                                      reBBox    4 x N boxes, x1, y1, x2, y2 per column
    text_annotations/synthetic_ground_truth.json
                                    NOT in the real release: instance classes and sentence
                                    attributes, written by the synthetic generator
                                    (core.data.ground_truth); absent = None (unknown)

`read_a2d` turns this into `Video` records (masks back in image orientation [N, H, W]).
Documented quirks are always skipped and counted in the ledger (`SkipLedger.quirk`):

    excluded_video           a video excluded by id wherever it appears (videoset.csv,
                             annotation rows, h5 masks), counted once: EXCLUDED_VIDEOS holds
                             only e7Kjy13woXg. The real a2d_annotation.txt does have rows for
                             it (lines 4444-4445), but public A2D loaders drop it by id
                             (appending it to the ids read from a2d_missed_videos.txt), so a
                             store that kept it would not match their train/test sets
    missed_video             a video of videoset.csv listed in a2d_missed_videos.txt
    copy_instance_row        the annotation row whose instance id is '1 (copy)'
    video_without_sentences  a video of videoset.csv with no annotation row at all
    referent_never_visible   a sentence whose referent is in none of the video's frames
    h5_extra_masks           an h5 with more masks than instance ids (the extra, trailing
                             masks are dropped; a few frames of the real release)
    duplicate_instance_id    an h5 listing one instance id twice (the later copy is dropped)

Bad input goes through `SkipLedger.problem` (raises `DataError` unless the class is in
data.allow_skip), by the rules every reader shares (core.data.defects): missing_video (a
listed video without its mp4), bad_h5, mask_size, bad_annotation, empty_sentence. A missing or
unreadable root, videoset.csv or a2d_annotation.txt always raises.

`core.data.a2d_write` writes the same layout (the synthetic generator and the tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from core.data import defects
from core.data.ground_truth import read_ground_truth
from core.data.textfile import csv_records, parse_csv_line, read_lines
from core.data.types import Expression, Frame, SkipLedger, Split, Video

VIDEOSET = Path("Release") / "videoset.csv"
CLIPS = Path("Release") / "clips320H"
ANNOTATIONS = Path("text_annotations") / "a2d_annotation.txt"
MISSED = Path("text_annotations") / "a2d_missed_videos.txt"
INSTANCES = Path("text_annotations") / "a2d_annotation_with_instances"
GROUND_TRUTH = Path("text_annotations") / "synthetic_ground_truth.json"  # not in the real release

ANNOTATION_HEADER = ("video_id", "instance_id", "query")
COPY_ROW_RE = re.compile(r"^\d+ \(copy\)$")  # the one known duplicated row: '1 (copy)'
H5_NAME_RE = re.compile(r"^(\d+)\.h5$")
SUBSETS: dict[int, Split] = {0: "train", 1: "test"}
# video id -> why it is excluded (a documented quirk: see the module docstring)
EXCLUDED_VIDEOS: dict[str, str] = {
    "e7Kjy13woXg": "public A2D loaders exclude it by id",
}


@dataclass(frozen=True)
class VideosetRow:
    """One row of Release/videoset.csv (the file has no header)."""

    vid: str
    label: int
    start_time: float
    end_time: float
    height: int
    width: int
    total_frames: int
    annotated_frames: int
    subset: int  # 0 = train, 1 = test


def video_path(root: Path, video_id: str) -> Path:
    return Path(root) / CLIPS / f"{video_id}.mp4"


def h5_path(root: Path, video_id: str, frame_number: int) -> Path:
    """Annotation file of 1-indexed `frame_number` of `video_id`."""
    return Path(root) / INSTANCES / video_id / f"{frame_number:05d}.h5"


# --------------------------------------------------------------------------------------
# reader
# --------------------------------------------------------------------------------------


def read_a2d(root: Path, ledger: SkipLedger) -> Iterator[Video]:
    """Yield every usable A2D video (train and test) with its annotated frames and sentences.

    Only videos that are in videoset.csv, not excluded (EXCLUDED_VIDEOS), not missed, and
    have at least one surviving sentence are yielded, in videoset.csv order. The mp4 is
    checked to exist, not decoded. Classes and attributes come from GROUND_TRUTH when it is
    there, else stay None.
    """
    root = defects.require_folder(Path(root), "A2D Sentences root", " (data.a2d_root)")
    for rel in (VIDEOSET, ANNOTATIONS):
        defects.require_file(root / rel, "required A2D Sentences file")
    ground_truth = read_ground_truth(root / GROUND_TRUTH)
    videoset = _read_videoset(root / VIDEOSET, ledger)
    missed = _read_missed(root / MISSED)
    excluded_rows: dict[str, int] = {}
    expressions = _read_annotations(root / ANNOTATIONS, videoset, missed, ledger, excluded_rows)
    for vid, reason in EXCLUDED_VIDEOS.items():
        found = [VIDEOSET.name] if vid in videoset else []
        if vid in excluded_rows:
            n = excluded_rows[vid]
            found.append(f"{n} row{'s' if n > 1 else ''} of {ANNOTATIONS.name}")
        found += [f"{INSTANCES.name}/{vid}"] if (root / INSTANCES / vid).is_dir() else []
        if found:
            ledger.quirk("excluded_video", f"{vid}: {reason} (found in {', '.join(found)})")
    for vid, row in videoset.items():
        if vid in EXCLUDED_VIDEOS:
            continue  # counted above; its masks are never read
        if vid in missed:
            ledger.quirk("missed_video", vid)
            continue
        if vid not in expressions:
            # in videoset.csv but without a single annotation row: not a sample, counted so
            # the ledger explains every video
            ledger.quirk(defects.VIDEO_WITHOUT_SENTENCES, vid)
            continue
        exprs = expressions[vid]
        if not exprs:
            continue  # all its rows were skipped, each already counted
        video = _read_video(root, row, exprs, ledger)
        if video is not None:
            yield ground_truth.apply(video) if ground_truth else video


def _read_videoset(path: Path, ledger: SkipLedger) -> dict[str, VideosetRow]:
    rows: dict[str, VideosetRow] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        cells = parse_csv_line(line)
        row = _videoset_row(cells) if cells is not None else None
        if row is None:
            ledger.problem(
                "bad_annotation",
                f"{path}:{lineno}: malformed videoset row (expected 9 columns: vid, label, start_time, end_time, "
                f"height, width, total_frames, annotated_frames, subset with subset 0 or 1): {line.strip()[:80]!r}",
            )
            continue
        if row.vid in rows:
            ledger.problem("bad_annotation", f"{path}:{lineno}: video {row.vid!r} listed twice")
            continue
        rows[row.vid] = row
    return rows


def _videoset_row(cells: list[str]) -> VideosetRow | None:
    if len(cells) != 9 or not cells[0]:
        return None
    try:
        row = VideosetRow(
            vid=cells[0],
            label=_int(cells[1]),
            start_time=float(cells[2]),
            end_time=float(cells[3]),
            height=_int(cells[4]),
            width=_int(cells[5]),
            total_frames=_int(cells[6]),
            annotated_frames=_int(cells[7]),
            subset=_int(cells[8]),
        )
    except ValueError:
        return None
    if row.subset not in SUBSETS or row.height <= 0 or row.width <= 0:
        return None
    return row


def _int(text: str) -> int:
    """'480' or '480.0' (a spreadsheet round trip writes the latter) -> 480; else ValueError."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _read_missed(path: Path) -> set[str]:
    """Excluded video ids; the file is optional (no file = nothing excluded)."""
    if defects.optional_file(path, "A2D Sentences file") is None:
        return set()
    return {line.strip() for line in read_lines(path) if line.strip()}


def _read_annotations(
    path: Path,
    videoset: dict[str, VideosetRow],
    missed: set[str],
    ledger: SkipLedger,
    excluded_rows: dict[str, int],
) -> dict[str, list[Expression]]:
    """video id -> its sentences, in file order. Quirks and bad lines are skipped here.

    A video (of videoset.csv) with rows that were all skipped maps to an empty list. Rows of
    an excluded video (EXCLUDED_VIDEOS) are not checked, only counted in `excluded_rows`.
    """
    out: dict[str, list[Expression]] = {}
    for where, rec in csv_records(path, ANNOTATION_HEADER, ledger):
        vid, inst, text = rec["video_id"], rec["instance_id"], rec["query"]
        if vid in EXCLUDED_VIDEOS:
            excluded_rows[vid] = excluded_rows.get(vid, 0) + 1
            continue  # the whole video is skipped (and counted once) by read_a2d
        if vid in missed:
            continue  # the whole video is skipped (and counted once) by read_a2d
        if vid in videoset:
            out.setdefault(vid, [])
        if COPY_ROW_RE.match(inst):
            ledger.quirk("copy_instance_row", f"{where}: instance id {inst!r}")
            continue
        if not re.fullmatch(r"\d+", inst):
            ledger.problem("bad_annotation", f"{where}: instance id {inst!r} is not an integer")
            continue
        if vid not in videoset:
            ledger.problem("bad_annotation", f"{where}: video {vid!r} is not in {VIDEOSET}")
            continue
        if not text and defects.empty_sentence(ledger, where, True, f" for video {vid!r} instance {inst}"):
            continue
        out[vid].append(Expression(text=text, referent=int(inst), source=where))
    return out


def _read_video(root: Path, row: VideosetRow, exprs: list[Expression], ledger: SkipLedger) -> Video | None:
    mp4 = defects.video_file(video_path(root, row.vid), ledger, f"{root / VIDEOSET}")
    if mp4 is None:
        return None
    frames = _read_frames(root, row, ledger)
    if not frames:
        return None
    kept = defects.visible_referents(
        exprs,
        frames,
        ledger,
        lambda e: f"instance {e.referent} of {row.vid!r} is in none of its {len(frames)} annotated frames",
    )
    if not kept:
        return None
    return Video(
        video_id=row.vid,
        split=SUBSETS[row.subset],
        source=mp4,
        height=frames[0].masks.shape[1],
        width=frames[0].masks.shape[2],
        frames=tuple(frames),
        expressions=tuple(kept),
    )


def _read_frames(root: Path, row: VideosetRow, ledger: SkipLedger) -> list[Frame]:
    folder = Path(root) / INSTANCES / row.vid
    numbered = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = H5_NAME_RE.match(p.name)
            if m:
                numbered.append((int(m.group(1)), p))
    if not numbered:
        ledger.problem("bad_h5", f"{folder}: no annotated frames (<frame:05d>.h5 files) for video {row.vid!r}")
        return []
    frames: list[Frame] = []
    for number, path in sorted(numbered):
        frame = _read_h5(path, number, row, ledger)
        if frame is None:
            continue
        # videoset.csv holds the ORIGINAL video size, not the 320H clip's; the masks match the
        # clip, so they must agree with each other here and with the decoded frames in extraction
        if frames and frame.masks.shape[1:] != frames[0].masks.shape[1:]:
            h, w = frame.masks.shape[1:]
            h0, w0 = frames[0].masks.shape[1:]
            ledger.problem(
                "mask_size",
                f"{path}: mask is {h}x{w} (HxW) but the video's other annotated frames are {h0}x{w0} "
                f"({frames[0].source})",
            )
            continue
        frames.append(frame)
    return frames


def _read_h5(path: Path, number: int, row: VideosetRow, ledger: SkipLedger) -> Frame | None:
    """One annotated frame, masks transposed back to image orientation [N, H, W] bool."""
    if number < 1:
        ledger.problem("bad_h5", f"{path}: frame numbers are 1-indexed, got {number}")
        return None
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("instance", "reMask") if k not in f]
            if missing:
                ledger.problem(
                    "bad_h5", f"{path}: no dataset {' or '.join(repr(k) for k in missing)} (has {sorted(f.keys())})"
                )
                return None
            ids_raw = np.asarray(f["instance"][()], dtype=np.float64).ravel()
            mask_raw = np.asarray(f["reMask"][()])
    except (OSError, ValueError, TypeError, KeyError) as err:
        ledger.problem("bad_h5", f"{path}: unreadable h5 ({type(err).__name__}: {err})")
        return None
    if ids_raw.size == 0 or not np.all(np.isfinite(ids_raw)) or np.any(ids_raw != np.round(ids_raw)):
        ledger.problem("bad_h5", f"{path}: 'instance' must hold integer ids, got {ids_raw.tolist()}")
        return None
    ids = [int(i) for i in ids_raw]
    n = len(ids)
    # MATLAB drops the leading singleton axis: one instance is stored 2-D as (W, H)
    if mask_raw.ndim == 2 and n == 1:
        mask_raw = mask_raw[None]
    if mask_raw.ndim != 3 or mask_raw.shape[0] < n:
        ledger.problem(
            "bad_h5",
            f"{path}: 'reMask' of shape {mask_raw.shape} does not fit {n} instance ids "
            f"(expected {'(W, H)' if n == 1 else f'({n}, W, H)'})",
        )
        return None
    if mask_raw.shape[0] > n:
        # real release: a few frames (e.g. 95Nq6fQoP2o/00032) carry more masks than ids; the
        # ids belong to the leading masks, as public loaders assume
        ledger.quirk(
            "h5_extra_masks",
            f"{path}: {mask_raw.shape[0]} masks for {n} instance ids, the last {mask_raw.shape[0] - n} dropped",
        )
        mask_raw = mask_raw[:n]
    masks = np.ascontiguousarray(mask_raw.transpose(0, 2, 1)) > 0
    keep = [k for k, i in enumerate(ids) if i not in ids[:k]]
    if len(keep) < n:
        # real release: EadxBPmQvtg/00025 lists instance 1 twice; the first one is the referent
        # (public loaders use list.index, i.e. the first occurrence)
        ledger.quirk("duplicate_instance_id", f"{path}: instance ids {ids}, later duplicates dropped")
        ids, masks = [ids[k] for k in keep], masks[keep]
    return Frame(index=number - 1, instance_ids=tuple(ids), masks=masks, source=str(path))
