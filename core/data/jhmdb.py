"""J-HMDB Sentences: the on-disk layout, its reader (test protocol) and its writers.

Layout, under one root:

    Rename_Images/<action>/<video>/%05d.png       the frames, 1-indexed
    puppet_mask/<action>/<video>/puppet_mask.mat  key 'part_mask', H x W x T; the actor's
                                                  mask in frame t is part_mask[:, :, t] > 0
    jhmdb_annotation.txt                          CSV with header video_id,query
    synthetic_ground_truth.json                   NOT in the real release: sentence attributes
                                                  (and classes), written by the synthetic
                                                  generator (core.data.ground_truth)

Each video shows one actor (instance id 1) and every sentence refers to it. The action of a
video is not in the annotation file: it is the folder Rename_Images/*/<video_id>.

Protocol (J-HMDB Sentences is test-only, zero-shot from the A2D-trained model): split is
always "test"; `frames_per_video` frames per video (3 by default), spaced uniformly over the
masked frames, deterministically.

Quirk (always skipped, counted): jhmdb_unmasked_trailing_frames - a video with more pngs
than mask frames; the trailing frames have no ground truth and are dropped. Also
referent_never_visible (the actor's mask is empty in every chosen frame), as for A2D.
Bad input goes through `SkipLedger.problem`, by the rules every reader shares
(core.data.defects): missing_video (no frame folder, or no png in it), corrupt_video (an
unreadable first png), bad_h5 (the .mat file), mask_size, bad_annotation, empty_sentence. A
missing or unreadable root, Rename_Images folder or annotation file always raises.

The writers at the bottom produce the same layout; every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import scipy.io
from PIL import Image
from scipy.io.matlab import MatReadError

from core.data import defects
from core.data.frames import chosen_indices
from core.data.ground_truth import read_ground_truth
from core.data.textfile import csv_records
from core.data.types import Expression, Frame, SkipLedger, Video
from core.io import atomic_path, write_text

IMAGES = Path("Rename_Images")
MASKS = Path("puppet_mask")
ANNOTATIONS = Path("jhmdb_annotation.txt")
GROUND_TRUTH = Path("synthetic_ground_truth.json")  # not in the real release
ANNOTATION_HEADER = ("video_id", "query")
MASK_KEY = "part_mask"
ACTOR_ID = 1
PNG_NAME_RE = re.compile(r"^(\d+)\.png$")


def frames_dir(root: Path, action: str, video: str) -> Path:
    return Path(root) / IMAGES / action / video


def mask_path(root: Path, action: str, video: str) -> Path:
    return Path(root) / MASKS / action / video / "puppet_mask.mat"


# --------------------------------------------------------------------------------------
# reader
# --------------------------------------------------------------------------------------


def read_jhmdb(root: Path, ledger: SkipLedger, frames_per_video: int = 3) -> Iterator[Video]:
    """Yield one test `Video` per annotated J-HMDB video, in annotation-file order (classes and
    attributes from GROUND_TRUTH when it is there, else None)."""
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    root = defects.require_folder(Path(root), "J-HMDB Sentences root", " (data.jhmdb_root)")
    defects.require_file(root / ANNOTATIONS, "required J-HMDB Sentences file")
    defects.require_folder(root / IMAGES, "J-HMDB frame folder")
    ground_truth = read_ground_truth(root / GROUND_TRUTH)
    sentences = _read_annotations(root / ANNOTATIONS, ledger)
    actions = _index_actions(root)
    for vid, exprs in sentences.items():
        video = _read_video(root, vid, actions.get(vid, []), exprs, frames_per_video, ledger)
        if video is not None:
            yield ground_truth.apply(video) if ground_truth else video


def _index_actions(root: Path) -> dict[str, list[str]]:
    """video id -> the action folder(s) holding Rename_Images/<action>/<video_id>."""
    out: dict[str, list[str]] = {}
    for action in sorted(p for p in (root / IMAGES).iterdir() if p.is_dir()):
        for video in action.iterdir():
            if video.is_dir():
                out.setdefault(video.name, []).append(action.name)
    return out


def _read_annotations(path: Path, ledger: SkipLedger) -> dict[str, list[Expression]]:
    out: dict[str, list[Expression]] = {}
    for where, rec in csv_records(path, ANNOTATION_HEADER, ledger):
        if not rec["video_id"]:
            ledger.problem("bad_annotation", f"{where}: malformed annotation line (no video id)")
            continue
        vid, text = rec["video_id"], rec["query"]
        if not text and defects.empty_sentence(ledger, where, True, f" for video {vid!r}"):
            continue
        out.setdefault(vid, []).append(Expression(text=text, referent=ACTOR_ID, source=where))
    return out


def _read_video(
    root: Path, vid: str, actions: list[str], exprs: list[Expression], n_frames: int, ledger: SkipLedger
) -> Video | None:
    if len(actions) != 1:
        what = "frame folder not found" if not actions else f"{len(actions)} frame folders ({', '.join(actions)})"
        ledger.problem(defects.MISSING_VIDEO, f"{root / IMAGES}/*/{vid}: {what} (video listed in {exprs[0].source})")
        return None
    action = actions[0]
    folder = frames_dir(root, action, vid)
    pngs = defects.video_frames(folder, ledger, exprs[0].source, (".png",))
    if pngs is None:
        return None
    numbers = sorted(int(m.group(1)) for p in pngs if (m := PNG_NAME_RE.match(p.name)))
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        ledger.problem(defects.MISSING_VIDEO, f"{folder}: frame files are not %05d.png numbered 1..N without gaps")
        return None
    part_mask = _read_part_mask(mask_path(root, action, vid), ledger)
    if part_mask is None:
        return None
    return _build_video(root, vid, folder, numbers, part_mask, exprs, n_frames, ledger)


def _read_part_mask(path: Path, ledger: SkipLedger) -> np.ndarray | None:
    """part_mask as H x W x T (a single-frame 2-D array gets T = 1)."""
    wrong = defects.what_is_wrong(path)
    if wrong is not None:
        ledger.problem(defects.BAD_MASK, f"{path}: puppet mask file {wrong}")
        return None
    try:
        mat = _load_mat(path)
    except (MatReadError, OSError, ValueError, TypeError, KeyError) as err:
        ledger.problem("bad_h5", f"{path}: unreadable .mat ({type(err).__name__}: {err})")
        return None
    if MASK_KEY not in mat:
        ledger.problem(
            "bad_h5", f"{path}: no key {MASK_KEY!r} (has {sorted(k for k in mat if not k.startswith('__'))})"
        )
        return None
    pm = np.asarray(mat[MASK_KEY])
    if pm.ndim == 2:
        pm = pm[:, :, None]  # MATLAB drops a trailing singleton T
    if pm.ndim != 3 or pm.dtype.kind not in "biuf":  # bool, int, uint or float masks
        ledger.problem(
            "bad_h5", f"{path}: {MASK_KEY!r} must be a numeric H x W x T array, got shape {pm.shape} {pm.dtype}"
        )
        return None
    return pm


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    """Variables of a .mat file. The release uses MATLAB v5 files (scipy); a re-saved v7.3
    file is HDF5, whose arrays h5py sees transposed, so they are transposed back."""
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k][()]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    return scipy.io.loadmat(str(path))


def _build_video(
    root: Path,
    vid: str,
    folder: Path,
    numbers: list[int],
    part_mask: np.ndarray,
    exprs: list[Expression],
    n_frames: int,
    ledger: SkipLedger,
) -> Video | None:
    mat = mask_path(root, folder.parent.name, vid)
    size = defects.first_frame_size(folder / f"{numbers[0]:05d}.png", ledger)  # header only, no decode
    if size is None:
        return None
    height, width = size
    h, w, t = part_mask.shape
    if (h, w) != (height, width):
        ledger.problem("mask_size", f"{mat}: mask is {h}x{w} (HxW) but the frames in {folder} are {height}x{width}")
        return None
    if t > len(numbers):
        ledger.problem("mask_size", f"{mat}: {t} mask frames but only {len(numbers)} images in {folder}")
        return None
    if t < len(numbers):
        ledger.quirk(
            "jhmdb_unmasked_trailing_frames",
            f"{vid}: {len(numbers) - t} trailing frames without a mask dropped ({len(numbers)} images, {t} masks)",
        )
    frames = tuple(
        Frame(index=i, instance_ids=(ACTOR_ID,), masks=(part_mask[:, :, i] > 0)[None], source=str(mat))
        for i in chosen_indices(t, n_frames)
    )
    kept = defects.visible_referents(
        exprs, frames, ledger, lambda e: f"the actor of {vid!r} is in none of its {len(frames)} chosen frames"
    )
    if not kept:
        return None
    return Video(
        video_id=vid, split="test", source=folder, height=height, width=width, frames=frames, expressions=tuple(kept)
    )


# --------------------------------------------------------------------------------------
# writers (synthetic data and tests); the exact inverse of the layout above
# --------------------------------------------------------------------------------------


def write_video_frames(root: Path, action: str, video: str, frames: np.ndarray) -> None:
    """uint8 [T, H, W, 3] -> Rename_Images/<action>/<video>/00001.png ... (1-indexed)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_video_frames needs uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    folder = frames_dir(root, action, video)
    for t, arr in enumerate(frames, start=1):
        with atomic_path(folder / f"{t:05d}.png", suffix=".png") as tmp:
            Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")


def write_puppet_mask(root: Path, action: str, video: str, masks: np.ndarray) -> None:
    """bool [T, H, W] -> puppet_mask/<action>/<video>/puppet_mask.mat, 'part_mask' H x W x T uint8."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"write_puppet_mask needs [T, H, W], got {masks.shape}")
    part_mask = np.ascontiguousarray((masks > 0).astype(np.uint8).transpose(1, 2, 0))
    with atomic_path(mask_path(root, action, video), suffix=".mat") as tmp:
        with open(tmp, "wb") as f:  # a file object: savemat would append '.mat' to the temp name
            scipy.io.savemat(f, {MASK_KEY: part_mask})


def write_annotations(root: Path, rows: Sequence[tuple[str, str]]) -> None:
    """jhmdb_annotation.txt: header video_id,query, then one row per sentence."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([ANNOTATION_HEADER, *rows])
    write_text(Path(root) / ANNOTATIONS, buf.getvalue())
