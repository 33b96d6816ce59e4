"""Ref-YouTube-VOS (2021): the on-disk layout and its readers.

Layout (as distributed, and as public code such as ReferFormer reads it), under one root:

    train/JPEGImages/<vid>/<frame>.jpg     the frames; names are frame numbers of the full
                                           video (00000, 00005, 00010: every 5th, not
                                           contiguous)
    train/Annotations/<vid>/<frame>.png    palette ("P") PNG per annotated frame; object k's
                                           mask is np.array(png) == k (0 = background; the
                                           palette colours are irrelevant)
    train/meta.json                        {"videos": {<vid>: {"objects": {"<obj_id>":
                                             {"category": str, "frames": [frame names]}}}}}
                                           (an object's frames: those where it is annotated)
    meta_expressions/train/meta_expressions.json
                                           {"videos": {<vid>: {"frames": [frame names],
                                             "expressions": {"<exp_id>": {"exp": str,
                                                                          "obj_id": "<obj_id>"}}}}}
    valid/JPEGImages/<vid>/<frame>.jpg     and meta_expressions/valid/meta_expressions.json:
                                           frames and expressions, NO masks (and usually no
                                           obj_id); likewise test/ where present
    synthetic_ground_truth.json            NOT in the real release: sentence attributes for
                                           the synthetic twin (core.data.ground_truth); its
                                           classes are ignored, meta.json has the real ones

Frame numbering: a video's frames are its JPEG files in frame order (core.data.images), and
`Frame.index` is the 0-based POSITION of a frame in that list, never the number in its name
(00010.jpg is index 2). core.data.frames.load_frames decodes by the same position.

`read_ytvos` (train, the only split with masks) yields `Video` records, split "train" always:
which train videos are held out as the offline test set is `offline_split`'s choice (a pure,
seeded function), not the reader's. Per video, `frames_per_video` annotated frames are chosen
uniformly among the frames that have an Annotations PNG (core.data.frames.chosen_indices);
then, for each referred object that meta.json lists in some annotated frame but that none of
the chosen frames shows per meta.json, the middle one of its annotated frames is added, so a
short-lived object keeps its sentences (a video can thus have more than `frames_per_video`
frames). `Frame.instance_ids` are the ids present in the PNG (ascending), masks bool
[N, H, W]; `Video.classes` = {obj_id: category} of every object in meta.json; each
Expression has referent int(obj_id) and source "<meta_expressions.json>:<vid>/<exp_id>".
Videos are yielded in meta_expressions.json order, expressions in exp_id order
(core.data.meta_expressions reads that file, for MeViS too).

`read_ytvos_valid` (valid or test: no masks) yields `meta_expressions.QueryVideo` records, the
input of a prediction export (`meta_expressions.read_queries`). `prediction_path` gives the file
the submission format wants for one (video, expression, frame): Annotations/<vid>/<exp_id>/<frame>.png.

Defects follow the rules every reader shares (core.data.defects: missing_video, corrupt_video,
empty_sentence, which valid/test keep and note, frame_without_image, video_without_sentences,
referent_never_visible: an object in none of the chosen annotated frames, or no object of
meta.json). Also, through `SkipLedger.problem`: bad_annotation (a malformed entry of meta.json /
meta_expressions.json, a video missing from meta.json), bad_h5 (a missing Annotations folder, an
unreadable mask PNG, one that is not an id map, or one with values that are not object ids of
meta.json), mask_size (a PNG of another size than the frames), missing_video (an annotation PNG
without its JPEG). A missing or unreadable root, meta.json or meta_expressions.json, one that is
not JSON, or one without a "videos" object always raises.

`core.data.ytvos_write` writes the same layout (the synthetic twin and the tests).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from core.data import defects
from core.data import meta_expressions as mx
from core.data.frames import chosen_indices
from core.data.ground_truth import GroundTruth, read_ground_truth
from core.data.images import PNG_SUFFIXES, frame_files
from core.data.types import Expression, Frame, SkipLedger, Video

TRAIN = "train"  # the one split with masks
UNANNOTATED_SPLITS = ("valid", "test")
JPEG_DIR = "JPEGImages"
ANNOTATION_DIR = "Annotations"
META = "meta.json"
META_EXPRESSIONS = Path("meta_expressions")
GROUND_TRUTH = Path("synthetic_ground_truth.json")  # not in the real release
JPEG_SUFFIX = ".jpg"
PNG_SUFFIX = ".png"
# PNG modes whose pixel values are object ids: palette (the release) or plain grey levels
ID_MODES = ("P", "L", "I", "I;16")

WHAT = "Ref-YouTube-VOS"  # how messages name its files
QUIRKS = (  # its documented quirks
    defects.REFERENT_NEVER_VISIBLE,
    defects.FRAME_WITHOUT_IMAGE,
    defects.VIDEO_WITHOUT_SENTENCES,
)


# --------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------


def frames_dir(root: Path, split: str, video_id: str) -> Path:
    return Path(root) / split / JPEG_DIR / video_id


def frame_path(root: Path, split: str, video_id: str, name: str) -> Path:
    return frames_dir(root, split, video_id) / f"{name}{JPEG_SUFFIX}"


def annotations_dir(root: Path, video_id: str, split: str = TRAIN) -> Path:
    return Path(root) / split / ANNOTATION_DIR / video_id


def annotation_path(root: Path, video_id: str, name: str, split: str = TRAIN) -> Path:
    return annotations_dir(root, video_id, split) / f"{name}{PNG_SUFFIX}"


def meta_path(root: Path, split: str = TRAIN) -> Path:
    return Path(root) / split / META


def meta_expressions_path(root: Path, split: str) -> Path:
    return Path(root) / META_EXPRESSIONS / split / "meta_expressions.json"


def prediction_path(out_root: Path, video_id: str, exp_id: str, frame_name: str) -> Path:
    """Where a submission (zip of `out_root`) holds the predicted mask of one expression in one frame."""
    return Path(out_root) / ANNOTATION_DIR / video_id / exp_id / f"{frame_name}{PNG_SUFFIX}"


# --------------------------------------------------------------------------------------
# the offline split
# --------------------------------------------------------------------------------------


def offline_split(video_ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The train videos held out as the offline test set (Ref-YouTube-VOS has no public test masks).

    Pure and deterministic: the distinct ids are ranked by sha256 of (seed, id) and the first
    round(n * fraction) are held out (at least 1 when fraction > 0, at most n - 1), so the
    result depends only on the SET of ids, the fraction and the seed, never on input order,
    and for one seed a larger fraction holds out a superset. fraction in [0, 1).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    ids = sorted(set(video_ids))
    if fraction == 0 or len(ids) < 2:
        return set()
    ranked = sorted(ids, key=lambda v: (hashlib.sha256(f"{seed}\0{v}".encode()).hexdigest(), v))
    n = min(max(1, round(len(ids) * fraction)), len(ids) - 1)
    return set(ranked[:n])


# --------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------


def read_ytvos(root: Path, ledger: SkipLedger, split: str = TRAIN, frames_per_video: int = 3) -> Iterator[Video]:
    """Yield every usable annotated video (split "train", see the module docstring)."""
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    if split != TRAIN:
        raise ValueError(
            f"Ref-YouTube-VOS has masks for {TRAIN!r} only, got split {split!r} (read_ytvos_valid reads "
            f"{' and '.join(UNANNOTATED_SPLITS)})"
        )
    root = _check_root(root)
    exprs_file = meta_expressions_path(root, split)
    meta_file = meta_path(root, split)
    videos = mx.load_videos(exprs_file, WHAT)
    objects_doc = mx.load_videos(meta_file, WHAT)
    ground_truth = read_ground_truth(root / GROUND_TRUTH)
    for vid, raw in videos.items():
        video = _read_video(root, split, vid, raw, exprs_file, objects_doc, meta_file, frames_per_video, ledger)
        if video is not None:
            yield _with_attributes(ground_truth, video) if ground_truth else video


def read_ytvos_valid(root: Path, ledger: SkipLedger, split: str = "valid") -> Iterator[mx.QueryVideo]:
    """Yield every video of a split without masks (valid or test), in meta_expressions.json order."""
    if split not in UNANNOTATED_SPLITS:
        raise ValueError(f"read_ytvos_valid reads {' or '.join(UNANNOTATED_SPLITS)}, got {split!r}")
    root = _check_root(root)
    yield from mx.read_queries(
        meta_expressions_path(root, split), split, lambda vid: frames_dir(root, split, vid), ledger, WHAT
    )


def listed_videos(root: Path, split: str = TRAIN) -> list[str]:
    """The ids of every video meta_expressions.json lists for `split` (usable or not)."""
    return list(mx.load_videos(meta_expressions_path(_check_root(root), split), WHAT))


# --------------------------------------------------------------------------------------
# json
# --------------------------------------------------------------------------------------


def _check_root(root: Path) -> Path:
    return defects.require_folder(Path(root), "Ref-YouTube-VOS root", " (data.ytvos_root)")


def _obj_id(raw: Any) -> int | None:
    """'3' or 3 -> 3; anything else (bools, negatives, '3a') -> None."""
    if mx.is_int(raw):
        return raw if raw >= 0 else None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def _expression(source: str, e: Any, ledger: SkipLedger) -> Expression | None:
    """A train expression: its text and its object (obj_id, required); None (bad_annotation) when malformed."""
    text = mx.expression_text(source, e, ledger)
    if text is None:
        return None
    referent = _obj_id(e.get("obj_id"))
    if referent is None:
        ledger.problem("bad_annotation", f"{source}: obj_id must be an integer id, got {e.get('obj_id')!r}")
        return None
    return Expression(text=text, referent=referent, source=source)


def _parse_objects(path: Path, vid: str, raw: Any, ledger: SkipLedger) -> dict[int, tuple[str, list[str]]] | None:
    """One video of meta.json -> {obj_id: (category, frames where it is annotated)}."""
    where = f"{path}: videos[{vid!r}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("objects"), dict):
        ledger.problem("bad_annotation", f'{where} must be an object with "objects" (an object)')
        return None
    out: dict[int, tuple[str, list[str]]] = {}
    for key, obj in raw["objects"].items():
        k = _obj_id(key)
        ok = isinstance(obj, dict) and isinstance(obj.get("category"), str) and obj["category"]
        if k is None or k == 0 or not ok or not mx.is_names(obj.get("frames")):
            ledger.problem(
                "bad_annotation",
                f'{where}.objects[{key!r}]: expected a positive integer id with {{"category": <name>, '
                f'"frames": [frame names]}}, got {repr(obj)[:200]}',
            )
            return None
        out[k] = (obj["category"], list(obj["frames"]))
    return out


# --------------------------------------------------------------------------------------
# one train video
# --------------------------------------------------------------------------------------


def _read_video(
    root: Path,
    split: str,
    vid: str,
    raw: Any,
    exprs_file: Path,
    objects_doc: dict[str, Any],
    meta_file: Path,
    frames_per_video: int,
    ledger: SkipLedger,
) -> Video | None:
    entry = mx.parse_video(exprs_file, vid, raw, ledger)
    if entry is None:
        return None
    listed, raw_exps = entry
    parsed = [x for exp_id, e in raw_exps if (x := _expression(f"{exprs_file}:{vid}/{exp_id}", e, ledger))]
    folder = frames_dir(root, split, vid)
    located = mx.locate_frames(exprs_file, vid, folder, listed, ledger)  # counts the listed ones without a JPEG
    if located is None:
        return None
    jpegs, _ = located
    position = {p.stem: i for i, p in enumerate(jpegs)}
    exprs = [e for e in parsed if e.text or not defects.empty_sentence(ledger, e.source, masked=True)]
    if not exprs:
        return None  # every expression was skipped, each already counted
    if vid not in objects_doc:
        ledger.problem("bad_annotation", f"{meta_file}: no entry for video {vid!r} (listed in {exprs_file})")
        return None
    objects = _parse_objects(meta_file, vid, objects_doc[vid], ledger)
    if objects is None:
        return None
    size = defects.first_frame_size(jpegs[0], ledger)
    if size is None:
        return None
    candidates = _annotated_names(root, split, vid, position, ledger)
    if not candidates:
        return None
    chosen = _choose(candidates, position, objects, exprs, frames_per_video)
    frames = []
    for name in chosen:
        frame = _read_id_png(
            annotation_path(root, vid, name, split), position[name], objects, size, vid, meta_file, folder, ledger
        )
        if frame is not None:
            frames.append(frame)
    if not frames:
        return None

    def why(e: Expression) -> str:
        if e.referent not in objects:
            return f"object {e.referent} of {vid!r} is not an object of {meta_file}"
        n = len(set(objects[e.referent][1]) & set(candidates))
        where = f"in none of its {len(frames)} chosen annotated frames (meta.json: in {n} annotated frames)"
        return f"object {e.referent} of {vid!r} is {where}"

    kept = defects.visible_referents(exprs, frames, ledger, why)
    if not kept:
        return None
    return Video(
        video_id=vid,
        split="train",
        source=folder,
        height=size[0],
        width=size[1],
        frames=tuple(frames),
        expressions=tuple(kept),
        classes={k: cat for k, (cat, _) in sorted(objects.items())},
    )


def _annotated_names(root: Path, split: str, vid: str, position: dict[str, int], ledger: SkipLedger) -> list[str]:
    """Names of the frames with both an annotation PNG and a JPEG, in frame order."""
    folder = annotations_dir(root, vid, split)
    if not folder.is_dir():
        ledger.problem("bad_h5", f"{folder}: annotation folder not found for video {vid!r}")
        return []
    out = []
    for png in frame_files(folder, PNG_SUFFIXES):
        if png.stem in position:
            out.append(png.stem)
        else:
            ledger.problem("missing_video", f"{png}: annotated frame without its image {png.stem}{JPEG_SUFFIX}")
    if not out:
        ledger.problem("bad_h5", f"{folder}: no annotation PNGs of frames of video {vid!r}")
    return sorted(out, key=lambda n: position[n])


def _choose(
    candidates: list[str],
    position: dict[str, int],
    objects: dict[int, tuple[str, list[str]]],
    exprs: list[Expression],
    n: int,
) -> list[str]:
    """`n` frames uniformly over `candidates`, plus one frame per referent none of them shows (meta.json)."""
    chosen = {candidates[i] for i in chosen_indices(len(candidates), n)}
    annotated = set(candidates)
    for referent in dict.fromkeys(e.referent for e in exprs):
        if referent not in objects:
            continue
        where = sorted(set(objects[referent][1]) & annotated, key=lambda name: position[name])
        if where and not chosen & set(where):
            chosen.add(where[len(where) // 2])
    return sorted(chosen, key=lambda name: position[name])


def _read_id_png(
    path: Path,
    index: int,
    objects: dict[int, tuple[str, list[str]]],
    size: tuple[int, int],
    vid: str,
    meta_file: Path,
    folder: Path,
    ledger: SkipLedger,
) -> Frame | None:
    """One annotation PNG -> Frame: object k's mask is (pixel value == k), 0 = background."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            ids_map = np.asarray(img) if mode in ID_MODES else None
    except (OSError, ValueError) as err:
        ledger.problem("bad_h5", f"{path}: unreadable annotation PNG ({type(err).__name__}: {err})")
        return None
    if ids_map is None:
        ledger.problem(
            "bad_h5", f"{path}: a {mode!r} PNG is no id map (expected a palette 'P' PNG, or grey levels = object ids)"
        )
        return None
    if ids_map.shape != size:
        h, w = ids_map.shape[:2]
        ledger.problem("mask_size", f"{path}: mask is {h}x{w} (HxW) but the frames in {folder} are {size[0]}x{size[1]}")
        return None
    present = [int(v) for v in np.unique(ids_map) if v != 0]
    unknown = sorted(set(present) - set(objects))
    if unknown:
        ledger.problem(
            "bad_h5",
            f"{path}: pixel values {unknown} are no object ids of video {vid!r} in {meta_file} "
            f"(objects {sorted(objects)})",
        )
        return None
    masks = ids_map[None] == np.asarray(present, ids_map.dtype).reshape(-1, 1, 1)
    return Frame(index=index, instance_ids=tuple(present), masks=masks.astype(bool), source=str(path))


def _with_attributes(ground_truth: GroundTruth, video: Video) -> Video:
    """The sidecar's sentence attributes; the classes stay meta.json's (the real ones)."""
    return replace(ground_truth.apply(video), classes=video.classes)
