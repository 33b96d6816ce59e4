"""Submission export: the trained model's masks for the official splits that have no masks.

    python -m core.evaluate --export          (wired in core.evaluate's main: `export_run`)

Ref-YouTube-VOS `valid` and MeViS `valid` are scored by their evaluation servers only. This
writes, for every expression and every listed frame that has a JPEG, the predicted mask in the
layout those servers take, zipped:

    ytvos  <run>/export/ytvos_valid_submission.zip:  Annotations/<vid>/<exp_id>/<frame>.png
           (`core.data.ytvos.prediction_path`; ReferFormer zips its Annotations folder)
    mevis  <run>/export/mevis_valid_submission.zip:  <vid>/<exp_id>/<frame>.png
           (no root folder: the official LMPM code writes <vid>/<exp_id>/<frame>.png under
           its inference folder and runs `cd inference && zip -r submission.zip ./*`)

Only the zip is written (it is what one uploads; unzip it to look at the masks); it holds the
PNGs and nothing else (no folder entries), with fixed timestamps, so the same model and data
give the same bytes. It is written atomically (`core.io.atomic_path`): a killed or failed
export leaves the previous zip (or none) under the final name, never a partial one.

Complete or nothing: an evaluation server expects one PNG per (expression, listed frame) of the
split's meta file, so every one of them must be in the zip. When some cannot be made (a listed
frame without its JPEG, a video skipped by data.allow_skip, ...) the export fails with one line
giving how many are missing and the first one, and writes nothing; `allow_incomplete`
(`python -m core.evaluate --export --allow-incomplete`) writes the partial zip instead, and the
summary's last line says it is INCOMPLETE.

What is predicted (the evaluation protocol, `core.scoring` / `core.metrics`):
  * the frames: the JPEGs the split's reader lists (`core.data.meta_expressions.read_queries`:
    the listed frames with a JPEG, by their position in the sorted JPEG list), decoded like
    extraction decodes them (`core.data.images.read_image_frames`, what `load_frames` calls
    for a JPEG folder), resized to data.input_size by extraction's own `resize_frames` and
    normalised by the dataset's `to_device`, i.e. exactly the processed store's frames;
  * the text: `tokenize` + `Vocab.encode(..., data.max_tokens)` and the padding and lengths
    of `collate_frames`, with the run's vocabulary;
  * each frame's visual map F once (`model.visual`), then the fusion and decoder per
    expression (`model.segment` with `model.text`), eval.batch_size frames at a time, under
    torch.no_grad and `core.runtime.autocast`;
  * the mask: sigmoid -> the frame's original size -> θ·max rule (`core.metrics.predict_mask`,
    θ = eval.threshold), written as a single-channel ("L") PNG, 0 background / 255 foreground.

Empty expressions (both valid readers keep them, the server wants a mask for every exp_id, and
note them as empty_sentence: kept, never "skipped") are PREDICTED, not left empty: a sentence
without words encodes to an empty token list, which the dataset's collation turns into one
<pad> token of length 1, and the model is run on that (the same holds for a text with no words,
e.g. punctuation only).

Skipped quirks and allowed problems go through one `SkipLedger`, the readers' (core.data.defects:
frames listed without a JPEG, videos missing on disk, ...); a video whose JPEGs cannot be decoded
is a `corrupt_video` problem (raises unless data.allow_skip has it; skipped whole when allowed).
`ExportResult` has the counts. A2D Sentences has no such split: asking for it is a UserError.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from core.checkpoint import load_model, load_vocab
from core.config import Params
from core.data import registry
from core.data.chunks import resize_frames
from core.data.dataset import encode_texts, to_device
from core.data.images import read_image_frames
from core.data.meta_expressions import QueryVideo, load_videos
from core.data.spec import DatasetSpec, Submission
from core.data.types import SkipLedger
from core.data.vocab import Vocab
from core.errors import DataError, UserError
from core.io import atomic_path
from core.metrics import predict_mask
from core.model import CVLS
from core.runtime import autocast, channels_last, pick_device

log = logging.getLogger("cvls")

EXPORT_DIR = "export"  # <run_dir>/export/
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps (zip's epoch): same inputs, same bytes


# --------------------------------------------------------------------------------------
# data.dataset's split to submit (core.data.registry: its spec's `submission`)
# --------------------------------------------------------------------------------------


def listed_masks(sub: Submission, root: Path, title: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """What the split's meta file asks a submission for: (video, exp_id, frame name) of every
    expression x every listed frame (a frame listed twice once), in file order; and the videos
    whose entry is too malformed to say (no "frames" list or "expressions" object)."""
    videos = load_videos(sub.meta(root), title)  # the reader checked it
    listed, unlisted = [], []
    for vid, entry in videos.items():
        frames = entry.get("frames") if isinstance(entry, dict) else None
        exps = entry.get("expressions") if isinstance(entry, dict) else None
        if not isinstance(frames, list) or not isinstance(exps, dict) or not all(isinstance(f, str) for f in frames):
            unlisted.append(vid)
            continue
        listed += [(vid, exp_id, name) for exp_id in exps for name in dict.fromkeys(frames)]
    return listed, unlisted


def submission_spec(params: Params) -> DatasetSpec:
    """The spec of data.dataset, which has a split to submit; else a one-line UserError.

    Cheap (reads nothing): call it before training so `--export` on A2D fails at once."""
    spec = params.dataset_spec
    if spec.submission is None:
        with_one = [s for s in registry.DATASETS.values() if s.submission is not None]
        splits = "/".join(sorted({s.submission.split for s in with_one if s.submission is not None}))
        raise UserError(
            f"submission export is for data.dataset {' or '.join(s.name for s in with_one)} (their {splits} splits "
            f"have no public masks); data.dataset is {spec.name!r}, whose test masks are public (evaluate instead)"
        )
    return spec


def zip_name(spec: DatasetSpec) -> str:
    """<dataset>_<split>_submission.zip."""
    assert spec.submission is not None
    return f"{spec.name}_{spec.submission.split}_submission.zip"


def export_path(run_dir: Path, params: Params) -> Path:
    """Where `export_run` writes the zip: <run_dir>/export/<dataset>_valid_submission.zip."""
    return Path(run_dir) / EXPORT_DIR / zip_name(submission_spec(params))


# --------------------------------------------------------------------------------------
# inputs, as the store and the dataset prepare them
# --------------------------------------------------------------------------------------


def store_frames(folder: Path, indices: Sequence[int], size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 [n, S, S, 3], (H, W)): the frames at JPEG positions `indices` as the processed store
    holds them (extraction's decoder, then its `resize_frames`), and their original size."""
    raw = read_image_frames(folder, indices)
    return resize_frames(raw, size), (int(raw.shape[1]), int(raw.shape[2]))


def png_bytes(mask: Tensor | np.ndarray) -> bytes:
    """bool [H, W] -> a single-channel ("L") PNG, 0 background / 255 foreground."""
    arr = np.asarray(mask, dtype=bool).astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # uint8 [H, W]: mode "L"
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What one export wrote: the zip and its counts (videos, expressions, frames, masks), the
    ledger's skips and notes (reason -> {"count", "examples"}: `SkipLedger.as_dict`, what was
    dropped; `notes_dict`, what was kept though noted), and what the split lists but the zip lacks."""

    path: Path
    dataset: str
    split: str
    videos: int = 0
    expressions: int = 0  # (video, expression) pairs with masks
    frames: int = 0  # (video, frame) pairs predicted
    masks: int = 0  # PNG files = Σ over videos of expressions x frames
    skipped: dict[str, dict] = field(default_factory=dict)
    kept: dict[str, dict] = field(default_factory=dict)
    listed: int = 0  # masks the split's meta file asks for
    missing: list[str] = field(default_factory=list)  # "<member> (why)", listed but not in the zip

    def incomplete(self) -> str | None:
        """One line saying what is missing, None when the zip has every listed mask."""
        if not self.missing:
            return None
        return (
            f"{len(self.missing)} of the {self.listed} masks {self.path.name} must hold are missing "
            f"(the first: {self.missing[0]})"
        )

    def summary(self) -> str:
        lines = [
            f"submission {self.path}: {registry.get(self.dataset).title} {self.split}, {self.videos} videos, "
            f"{self.expressions} expressions, {self.frames} frames, {self.masks} masks"
        ]
        for reason, info in self.skipped.items():
            lines.append(f"  skipped {reason}: {info['count']}")
        for reason, info in self.kept.items():
            lines.append(f"  kept {reason}: {info['count']} (predicted)")
        if self.missing:
            lines.append(f"INCOMPLETE (--allow-incomplete): {self.incomplete()}")
        return "\n".join(lines)


def _video_masks(
    model: CVLS, video: QueryVideo, sub: Submission, params: Params, vocab: Vocab, device: torch.device
) -> Iterator[tuple[str, bytes]]:
    """(zip member, PNG) of every (expression, frame) of one video, frame batch by frame batch."""
    tokens, lengths = encode_texts([q.text for q in video.expressions], vocab, params.data.max_tokens)
    size, theta, step = params.data.input_size, params.eval.threshold, params.eval.batch_size
    with autocast(device, params.train):
        sentences = model.text(tokens.to(device), lengths.to(device))  # [E, W], once per video
    for start in range(0, len(video.frame_names), step):
        names = video.frame_names[start : start + step]
        stored, original = store_frames(video.source, video.frame_indices[start : start + step], size)
        frames = torch.from_numpy(stored).permute(0, 3, 1, 2)[:, None]  # uint8 [B,1,3,S,S], as collated
        on_device = to_device({"frames": frames}, device, channels_last(device, params.train))
        frames = on_device["frames"][:, 0]  # normalised like evaluation's
        with autocast(device, params.train):
            feat = model.visual(frames)  # F once per frame
            logits = [model.segment(feat, s.expand(len(names), -1), (size, size))[:, 0] for s in sentences]
        for q, lg in zip(video.expressions, logits):
            pred = predict_mask(torch.sigmoid(lg.float()).cpu(), original, theta)  # [B, H, W], original size
            for name, m in zip(names, pred):
                yield sub.member(video.video_id, q.exp_id, name), png_bytes(m)


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16  # a plain file when unzipped
    zf.writestr(info, data)


@torch.no_grad()
def export_predictions(
    params: Params,
    model: CVLS,
    vocab: Vocab,
    device: torch.device,
    out: Path,
    *,
    allow_incomplete: bool = False,
) -> ExportResult:
    """Write `out`/<dataset>_valid_submission.zip (see the module docstring); return its counts.

    `model` must be on `device` (it is run in eval mode and its mode restored after); `vocab`
    is the run's (`core.checkpoint.load_vocab`). Raises UserError for data.dataset a2d, a
    DataError for a missing root or meta file, a problem not in data.allow_skip, or a listed
    mask that could not be made (unless `allow_incomplete`: then the partial zip is written and
    `ExportResult.missing` names what it lacks).
    """
    spec = submission_spec(params)
    sub = spec.submission
    assert sub is not None
    root = spec.existing_root(params)
    if model.text.num_ids != vocab.num_ids:
        raise UserError(
            f"the vocabulary has {vocab.num_ids} token ids but the model reads {model.text.num_ids}: "
            f"{params.processed / 'vocab.json'} is not the vocabulary it was trained with (re-extract or retrain)"
        )
    ledger = SkipLedger(allowed=frozenset(params.data.allow_skip))
    path = Path(out) / zip_name(spec)
    result = ExportResult(path, spec.name, sub.split)
    was_training = model.training
    model.eval()
    written: set[str] = set()
    try:
        with atomic_path(path, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as zf:
            for video in tqdm(sub.videos(root, ledger), desc=f"export {spec.name} {sub.split}", unit="video"):
                try:  # a video's masks reach the zip only once all of them are made
                    members = list(_video_masks(model, video, sub, params, vocab, device))
                except DataError as err:  # an undecodable JPEG: this video's problem, as in extraction
                    ledger.problem("corrupt_video", err.detail)
                    continue
                for name, data in members:
                    _write_member(zf, name, data)
                    written.add(name)
                result.videos += 1
                result.expressions += len(video.expressions)
                result.frames += len(video.frame_names)
                result.masks += len(members)
            result.skipped, result.kept = ledger.as_dict(), ledger.notes_dict()
            _check_complete(result, spec, root, written, ledger)
            if result.missing and not allow_incomplete:  # raised inside: nothing is published
                raise DataError(
                    f"{sub.meta(root)}: submission not written: {result.incomplete()}; "
                    "to write the partial zip anyway, pass --allow-incomplete"
                )
    finally:
        model.train(was_training)
    log.info("%s", result.summary())
    return result


def _check_complete(result: ExportResult, spec: DatasetSpec, root: Path, written: set[str], ledger: SkipLedger) -> None:
    """result.listed and result.missing ('<member> (why)') against the split's meta file."""
    sub = spec.submission
    assert sub is not None
    listed, unlisted = listed_masks(sub, root, spec.title)
    result.listed = len(listed)
    result.missing = [f"{vid}/* (its entry in {sub.meta(root)} is malformed)" for vid in unlisted]
    for vid, exp_id, name in listed:
        member = sub.member(vid, exp_id, name)
        if member not in written:
            result.missing.append(member)
    if result.missing and not unlisted:  # say why the first one is missing
        vid, _, name = next(t for t in listed if sub.member(*t) == result.missing[0])
        result.missing[0] += f" ({_why_missing(sub.jpeg(root, vid, name), ledger)})"


def _why_missing(jpeg: Path, ledger: SkipLedger) -> str:
    if not jpeg.parent.is_dir():
        return f"no folder {jpeg.parent}"
    if not jpeg.is_file():
        return f"no JPEG {jpeg}"
    skipped = ", ".join(ledger.counts) or "no reason recorded"
    return f"its video was skipped: {skipped}"


def export_run(
    params: Params, run_dir: Path, device: torch.device | None = None, *, allow_incomplete: bool = False
) -> ExportResult:
    """`export_predictions` of a finished run's model (<run_dir>/model.pt) into <run_dir>/export/."""
    submission_spec(params)  # before loading anything
    device = device or pick_device(params.train.device)
    model = load_model(params, Path(run_dir) / "model.pt", device)
    out = Path(run_dir) / EXPORT_DIR
    return export_predictions(params, model, load_vocab(params), device, out, allow_incomplete=allow_incomplete)
