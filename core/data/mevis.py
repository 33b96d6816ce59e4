"""MeViS (motion expressions video segmentation): the on-disk layout and its readers.

Layout (as distributed), under one root, per split folder `train`, `valid_u` or `valid`:

    <split>/JPEGImages/<vid>/<frame>.jpg    the frames (00000.jpg, 00001.jpg, ...)
    <split>/meta_expressions.json           {"videos": {<vid>: {
                                                "frames": [<frame name>, ...],
                                                "expressions": {"<exp_id>": {
                                                    "exp": <sentence>,
                                                    "obj_id": [int, ...],
                                                    "anno_id": [int, ...]}, ...}}, ...}}
    <split>/mask_dict.json                  {"<anno_id>": [<rle or null>, ...]} - one entry per
                                            frame of the video, in the order of its "frames";
                                            an entry is a COCO RLE {"size": [h, w], "counts":
                                            str} or null (the object is absent in that frame).
                                            `train` and `valid_u` only: `valid` has no masks

A frame name is the JPEG's name with or without ".jpg" (the release writes "00000"). One
expression may refer to several objects: obj_id and anno_id are parallel lists; its target in
a frame is the UNION of its objects' masks. Expression ids are read in numeric order.

How MeViS maps onto the suite's types (`core.data.types`), which give a sentence ONE referent:

  * every anno_id named by a video's expressions (and held by mask_dict) is an instance of the
    video, with its anno_id as instance id;
  * a single-object expression refers to its object's anno_id directly;
  * a multi-object expression refers to a *virtual instance* whose mask is the union of its
    objects' masks: id `virtual_id(anno_ids)` = VIRTUAL_ID_BASE + (sha1 of the sorted,
    de-duplicated anno_ids mod VIRTUAL_ID_BASE), i.e. in [2**40, 2**41): stable across runs,
    reading order and splits, the same for every expression naming the same set, and outside
    the range of real anno_ids (a real anno_id >= VIRTUAL_ID_BASE is a bad_annotation).
    `is_virtual(id)` tells them apart; `read_mevis(..., unions=d)` fills d[video_id] with
    {virtual id: member anno_ids} for every virtual instance it yields;
  * a frame lists an instance (real or virtual) only where its mask there is non-empty (null
    RLE = absent), as A2D lists only the instances visible in a frame; instance ids of a
    frame are the real ones ascending, then the virtual ones ascending;
  * Video.classes is None: meta_expressions gives no per-object category.

Protocol: `frames_per_video` annotated frames per video (3 by default), spaced uniformly over
the video's listed frames that have a JPEG (`core.data.frames.chosen_indices`); Frame.index is
the frame's 0-based position in the sorted JPEG list of its folder (`core.data.images`
order, which `core.data.frames.load_frames` decodes); Video.source is the JPEG folder;
Expression.source is "<meta_expressions.json>:<vid>/<exp_id>"; Frame.source is
"<mask_dict.json>:<vid>/<frame name>". Video.split: train -> "train"; valid_u (and valid, if
masks are ever supplied) -> "test" (SPLITS).

`read_mevis_valid` reads a split without masks (`valid`; any split works, masks unread) for a
prediction export: per video its id, JPEG folder, frame names and their JPEG positions, size,
and its expressions with their exp_id (`MevisQueryVideo`). The MeViS submission format is
one png per (video, expression, frame): <vid>/<exp_id>/<frame name>.png.

Defects follow the rules every reader shares (core.data.defects): a listed video without its
JPEGImages folder, or with no JPEG in it, is missing_video; an unreadable first JPEG is
corrupt_video; an empty (blank) expression is empty_sentence where masks are read, and kept
(text "", the server wants a mask for every exp_id) and noted by read_mevis_valid; a listed
frame whose JPEG is missing is the frame_without_image quirk (the frame is never chosen; the
others keep their JPEG positions); referent_never_visible (an expression whose target is empty
in every chosen frame) and video_without_sentences (a video with no expression at all) are the
quirks every reader counts. MeViS's own quirks (always skipped and counted, `SkipLedger.quirk`):

    mevis_expression_without_target  an expression with an empty anno_id list
    mevis_anno_id_not_in_mask_dict   an expression naming an anno_id that mask_dict lacks
                                     (the expression is dropped; its other objects stay
                                     instances of the video)
    mevis_target_always_null         an expression whose objects are null in every frame

Bad input: a missing or unreadable root, split folder, meta_expressions.json or (read_mevis)
mask_dict.json, a file that is not JSON or not of the shape above, always raises a one-line
`DataError` naming the file and what it is (not found, a symbolic link loop, a folder, ...). Per
video, through `SkipLedger.problem` (raises unless allowed in data.allow_skip): bad_annotation (a
malformed video or expression entry of meta_expressions.json), bad_h5 (a malformed mask_dict
entry: not a list of one RLE-or-null per frame, an RLE that does not decode to its size; bad_h5
is the mask-file class, as J-HMDB uses it for its .mat), mask_size (an RLE whose size is not the
JPEG size).

`core.data.mevis_write` writes the same layout (the synthetic generator and the tests).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.data import defects
from core.data.frames import chosen_indices
from core.data.rle import decode_rle, rle_size
from core.data.types import Expression, Frame, SkipLedger, Split, Video
from core.errors import DataError

IMAGES = Path("JPEGImages")
META = "meta_expressions.json"
MASK_DICT = "mask_dict.json"
JPEG_SUFFIX = ".jpg"
# MeViS split folder -> the suite's split of its videos
SPLITS: dict[str, Split] = {"train": "train", "valid_u": "test", "valid": "test"}
MASKED_SPLITS = ("train", "valid_u")  # the release's splits with a mask_dict.json
VIRTUAL_ID_BASE = 2**40  # virtual (union) instance ids lie in [VIRTUAL_ID_BASE, 2 * VIRTUAL_ID_BASE)

# quirk names (see the module docstring): MeViS's own, then those every reader shares
EXPRESSION_WITHOUT_TARGET = "mevis_expression_without_target"
ANNO_ID_NOT_IN_MASK_DICT = "mevis_anno_id_not_in_mask_dict"
TARGET_ALWAYS_NULL = "mevis_target_always_null"
QUIRKS = (
    defects.FRAME_WITHOUT_IMAGE,
    EXPRESSION_WITHOUT_TARGET,
    ANNO_ID_NOT_IN_MASK_DICT,
    TARGET_ALWAYS_NULL,
    defects.REFERENT_NEVER_VISIBLE,
    defects.VIDEO_WITHOUT_SENTENCES,
)


def split_dir(root: Path, split: str) -> Path:
    return Path(root) / split


def frames_dir(root: Path, split: str, video_id: str) -> Path:
    return Path(root) / split / IMAGES / video_id


def meta_path(root: Path, split: str) -> Path:
    return Path(root) / split / META


def mask_dict_path(root: Path, split: str) -> Path:
    return Path(root) / split / MASK_DICT


def jpeg_name(frame_name: str) -> str:
    """The JPEG file of a listed frame name: '00000' -> '00000.jpg' ('00000.jpg' stays)."""
    return frame_name if frame_name.lower().endswith(JPEG_SUFFIX) else frame_name + JPEG_SUFFIX


def virtual_id(anno_ids: Sequence[int]) -> int:
    """The virtual instance id of the union of `anno_ids` (order and repeats do not matter)."""
    key = ",".join(str(i) for i in sorted({int(i) for i in anno_ids}))
    digest = int.from_bytes(hashlib.sha1(f"mevis-union:{key}".encode()).digest()[:8], "big")
    return VIRTUAL_ID_BASE + digest % VIRTUAL_ID_BASE


def is_virtual(instance_id: int) -> bool:
    return VIRTUAL_ID_BASE <= int(instance_id) < 2 * VIRTUAL_ID_BASE


# --------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MevisQuery:
    """One expression of a split without masks (what a prediction export needs)."""

    exp_id: str
    text: str
    source: str  # "<meta_expressions.json>:<vid>/<exp_id>"


@dataclass(frozen=True)
class MevisQueryVideo:
    """One video of a split without masks: predict every (expression, frame) pair."""

    video_id: str
    source: Path  # the JPEG folder
    frame_names: tuple[str, ...]  # listed names (as in meta_expressions) whose JPEG exists, in list order
    frame_indices: tuple[
        int, ...
    ]  # their 0-based positions in the sorted JPEG list (core.data.images.read_image_frames)
    height: int
    width: int
    expressions: tuple[MevisQuery, ...]


@dataclass(frozen=True)
class _Exp:
    exp_id: str
    text: str
    anno_ids: tuple[int, ...]  # sorted, unique
    source: str


def read_mevis(
    root: Path,
    ledger: SkipLedger,
    split: str = "train",
    frames_per_video: int = 3,
    unions: MutableMapping[str, dict[int, tuple[int, ...]]] | None = None,
) -> Iterator[Video]:
    """Yield every usable video of a masked MeViS split, in meta_expressions order.

    A video is yielded when at least one expression survives; its frames are the
    `frames_per_video` chosen ones. When `unions` is given, unions[video_id] is set to
    {virtual id: member anno_ids} for each yielded video (empty for single-object videos).
    """
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    if split not in SPLITS:
        raise ValueError(f"unknown MeViS split {split!r} (expected one of {', '.join(SPLITS)})")
    root = Path(root)
    meta, videos = _open_meta(root, split)
    masks_file = mask_dict_path(root, split)
    hint = "; the valid split has no masks: read it with read_mevis_valid" if split == "valid" else ""
    defects.require_file(masks_file, "required MeViS file", hint)
    mask_dict = _read_mask_dict(masks_file)
    for vid, entry in videos.items():
        video = _read_video(root, split, meta, masks_file, mask_dict, vid, entry, frames_per_video, ledger)
        if video is not None:
            video, members = video
            if unions is not None:
                unions[vid] = members
            yield video


def read_mevis_valid(root: Path, ledger: SkipLedger, split: str = "valid") -> Iterator[MevisQueryVideo]:
    """Yield every video of a split for prediction (no masks read), in meta_expressions order.

    Only "exp" is required of an expression (obj_id / anno_id are ignored). A video is yielded
    when it has a folder, at least one JPEG of a listed frame and one expression. An empty
    expression is KEPT with text "" and noted (empty_sentence), as Ref-YouTube-VOS's valid reader
    keeps it: the server wants a mask for every exp_id.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MeViS split {split!r} (expected one of {', '.join(SPLITS)})")
    root = Path(root)
    meta, videos = _open_meta(root, split)
    for vid, entry in videos.items():
        parsed = _parse_video_entry(meta, vid, entry, ledger)
        if parsed is None:
            continue
        frames, raw_exps = parsed
        located = _locate_frames(root, split, vid, frames, ledger)
        if located is None:
            continue
        folder, positions = located
        queries = []
        for exp_id, e in raw_exps:
            where = f"{meta}:{vid}/{exp_id}"
            if not isinstance(e, dict) or not isinstance(e.get("exp"), str):
                ledger.problem("bad_annotation", f"{where}: expression must be an object with a string 'exp'")
                continue
            if not e["exp"].strip():  # kept: a submission needs a mask for every exp_id
                defects.empty_sentence(ledger, where, masked=False)
            queries.append(MevisQuery(exp_id=exp_id, text=e["exp"].strip(), source=where))
        if not queries or not positions:
            continue
        size = _frame_size(folder, frames, positions, ledger)
        if size is None:
            continue
        listed = sorted(positions)
        yield MevisQueryVideo(
            video_id=vid,
            source=folder,
            frame_names=tuple(frames[p] for p in listed),
            frame_indices=tuple(positions[p] for p in listed),
            height=size[0],
            width=size[1],
            expressions=tuple(queries),
        )


def _open_meta(root: Path, split: str) -> tuple[Path, dict[str, Any]]:
    defects.require_folder(root, "MeViS root", " (data.mevis_root)")
    defects.require_folder(split_dir(root, split), "MeViS split folder")
    meta = meta_path(root, split)
    doc = _load_json(meta)
    if not isinstance(doc, dict) or not isinstance(doc.get("videos"), dict):
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f'{meta}: expected {{"videos": {{<video id>: ...}}}}, got {got}')
    return meta, doc["videos"]


def _load_json(path: Path) -> Any:
    defects.require_file(path, "required MeViS file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON ({type(err).__name__}: {err})") from None


def _read_mask_dict(path: Path) -> dict[int, Any]:
    """anno_id -> its per-frame list (checked per video, when used)."""
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise DataError(f'{path}: expected {{"<anno_id>": [rle or null, ...]}}, got {type(doc).__name__}')
    out: dict[int, Any] = {}
    for key, value in doc.items():
        if not key.isdigit():
            raise DataError(f"{path}: key {key[:40]!r} is not an anno_id (a non-negative integer)")
        out[int(key)] = value
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _exp_order(exp_id: str) -> tuple[int, int, str]:
    return (0, int(exp_id), exp_id) if exp_id.isdigit() else (1, 0, exp_id)


def _parse_video_entry(meta: Path, vid: str, entry: Any, ledger: SkipLedger) -> tuple[list[str], list] | None:
    """(frame names, [(exp_id, raw expression)] in exp_id order) of a well-formed video entry."""
    where = f"{meta}:{vid}"
    if not isinstance(entry, dict) or not isinstance(entry.get("frames"), list):
        ledger.problem("bad_annotation", f"{where}: video entry must be an object with a 'frames' list")
        return None
    frames = entry["frames"]
    if not all(isinstance(f, str) and f for f in frames):
        ledger.problem("bad_annotation", f"{where}: 'frames' must list non-empty frame names")
        return None
    if len({jpeg_name(f) for f in frames}) != len(frames):
        ledger.problem("bad_annotation", f"{where}: 'frames' lists a frame twice")
        return None
    exps = entry.get("expressions", {})
    if not isinstance(exps, dict):
        ledger.problem("bad_annotation", f"{where}: 'expressions' must be an object {{<exp_id>: ...}}")
        return None
    if not exps:
        ledger.quirk(defects.VIDEO_WITHOUT_SENTENCES, f"{where}: no expressions")
        return None
    return frames, [(k, exps[k]) for k in sorted(exps, key=_exp_order)]


def _locate_frames(
    root: Path, split: str, vid: str, frames: list[str], ledger: SkipLedger
) -> tuple[Path, dict[int, int]] | None:
    """(JPEG folder, {listed position: position in the sorted JPEG list}) for frames with a JPEG;
    None (missing_video, `defects.video_frames`) for a video without its folder or any JPEG."""
    folder = frames_dir(root, split, vid)
    jpegs = defects.video_frames(folder, ledger, f"{meta_path(root, split)}")
    if jpegs is None:
        return None
    order = {p.name: k for k, p in enumerate(jpegs)}
    positions = {}
    for p, name in enumerate(frames):
        k = order.get(jpeg_name(name))
        if k is None:
            ledger.quirk(defects.FRAME_WITHOUT_IMAGE, f"{folder / jpeg_name(name)}: listed frame without a JPEG")
        else:
            positions[p] = k
    return folder, positions


def _frame_size(
    folder: Path, frames: list[str], positions: dict[int, int], ledger: SkipLedger
) -> tuple[int, int] | None:
    return defects.first_frame_size(folder / jpeg_name(frames[min(positions)]), ledger)


def _parse_expression(where: str, e: Any, owner: dict[int, int], ledger: SkipLedger) -> tuple[str, tuple] | None:
    """(text, sorted unique anno_ids) of a well-formed expression; `owner` maps anno_id -> obj_id."""
    if not isinstance(e, dict) or not isinstance(e.get("exp"), str):
        ledger.problem("bad_annotation", f"{where}: expression must be an object with a string 'exp'")
        return None
    aids, oids = e.get("anno_id"), e.get("obj_id")
    if not isinstance(aids, list) or not all(_is_int(a) for a in aids):
        ledger.problem("bad_annotation", f"{where}: 'anno_id' must be a list of integers, got {_short(aids)}")
        return None
    if not isinstance(oids, list) or not all(_is_int(o) for o in oids) or len(oids) != len(aids):
        ledger.problem(
            "bad_annotation",
            f"{where}: 'obj_id' must be a list of integers parallel to 'anno_id' {aids}, got {_short(oids)}",
        )
        return None
    bad = [a for a in aids if not 0 <= a < VIRTUAL_ID_BASE]
    if bad:
        ledger.problem("bad_annotation", f"{where}: anno_id {bad[0]} outside [0, {VIRTUAL_ID_BASE})")
        return None
    clash = [(a, o) for a, o in zip(aids, oids) if owner.get(a, o) != o]
    if clash:
        a, o = clash[0]
        ledger.problem("bad_annotation", f"{where}: anno_id {a} is obj_id {o} here but {owner[a]} elsewhere")
        return None
    owner.update(zip(aids, oids))
    return e["exp"].strip(), tuple(sorted(set(aids)))


def _check_entries(
    masks_file: Path, vid: str, aid: int, entries: Any, frames: list[str], size: tuple[int, int], ledger: SkipLedger
) -> bool:
    """True when anno_id `aid` has one RLE-or-null per frame, each of the frames' size."""
    where = f"{masks_file}: anno_id {aid} (video {vid!r})"
    if not isinstance(entries, list) or len(entries) != len(frames):
        got = f"{len(entries)} entries" if isinstance(entries, list) else type(entries).__name__
        ledger.problem("bad_h5", f"{where}: expected a list of {len(frames)} RLEs or nulls (one per frame), got {got}")
        return False
    for name, rle in zip(frames, entries):
        if rle is None:
            continue
        size_of = rle_size(rle)
        if size_of is None:
            ledger.problem("bad_h5", f'{where} frame {name}: expected {{"size": [h, w], "counts": str}} or null')
            return False
        if size_of != size:
            ledger.problem(
                "mask_size",
                f"{where} frame {name}: RLE size {size_of[0]}x{size_of[1]} (HxW) but the frames are "
                f"{size[0]}x{size[1]}",
            )
            return False
    return True


def _read_video(
    root: Path,
    split: str,
    meta: Path,
    masks_file: Path,
    mask_dict: Mapping[int, Any],
    vid: str,
    entry: Any,
    n_frames: int,
    ledger: SkipLedger,
) -> tuple[Video, dict[int, tuple[int, ...]]] | None:
    parsed = _parse_video_entry(meta, vid, entry, ledger)
    if parsed is None:
        return None
    frames, raw_exps = parsed
    located = _locate_frames(root, split, vid, frames, ledger)
    if located is None:
        return None
    folder, positions = located
    if not positions:
        return None  # every frame counted as without a JPEG
    # expressions: well-formed, with text and target; anno_ids the mask file lacks are dropped
    exps: list[_Exp] = []
    instances: set[int] = set()
    owner: dict[int, int] = {}
    for exp_id, e in raw_exps:
        where = f"{meta}:{vid}/{exp_id}"
        got = _parse_expression(where, e, owner, ledger)
        if got is None:
            continue
        text, aids = got
        held = [a for a in aids if a in mask_dict]
        instances.update(held)
        if not text:
            defects.empty_sentence(ledger, where, masked=True)  # raises, or drops it when allowed
        elif not aids:
            ledger.quirk(EXPRESSION_WITHOUT_TARGET, f"{where}: empty anno_id list")
        elif len(held) < len(aids):
            missing = ", ".join(str(a) for a in aids if a not in mask_dict)
            ledger.quirk(ANNO_ID_NOT_IN_MASK_DICT, f"{where}: anno_id {missing} not in {masks_file}")
        else:
            exps.append(_Exp(exp_id, text, aids, where))
    if not exps:
        return None
    size = _frame_size(folder, frames, positions, ledger)
    if size is None:
        return None
    for aid in sorted(instances):
        if not _check_entries(masks_file, vid, aid, mask_dict[aid], frames, size, ledger):
            return None
    kept_null = []
    for e in exps:
        if all(mask_dict[a][t] is None for a in e.anno_ids for t in range(len(frames))):
            ledger.quirk(TARGET_ALWAYS_NULL, f"{e.source}: anno_id {list(e.anno_ids)} null in all {len(frames)} frames")
        else:
            kept_null.append(e)
    if not kept_null:
        return None
    # the chosen frames, decoded
    usable = sorted(positions)
    chosen = [usable[k] for k in chosen_indices(len(usable), n_frames)]
    decoded: dict[int, dict[int, np.ndarray]] = {}  # listed position -> anno_id -> mask
    for p in chosen:
        decoded[p] = {}
        for aid in sorted(instances):
            rle = mask_dict[aid][p]
            if rle is None:
                decoded[p][aid] = np.zeros(size, bool)
                continue
            try:
                decoded[p][aid] = decode_rle(rle)
            except ValueError as err:
                ledger.problem(
                    "bad_h5", f"{masks_file}: anno_id {aid} (video {vid!r}) frame {frames[p]}: bad RLE ({err})"
                )
                return None
    # referents: the object itself, or the virtual union instance
    members: dict[int, tuple[int, ...]] = {}
    kept: list[Expression] = []
    for e in kept_null:
        ref = e.anno_ids[0] if len(e.anno_ids) == 1 else virtual_id(e.anno_ids)
        if not any(decoded[p][a].any() for p in chosen for a in e.anno_ids):
            ledger.quirk(
                defects.REFERENT_NEVER_VISIBLE,
                f"{e.source}: anno_id {list(e.anno_ids)} of {vid!r} is in none of its {len(chosen)} chosen frames",
            )
            continue
        if len(e.anno_ids) > 1:
            if members.get(ref, e.anno_ids) != e.anno_ids:
                ledger.problem(
                    "bad_annotation",
                    f"{e.source}: virtual id {ref} of anno_ids {list(e.anno_ids)} collides with "
                    f"{list(members[ref])} (sha1 collision)",
                )
                continue
            members[ref] = e.anno_ids
        kept.append(Expression(text=e.text, referent=ref, source=e.source))
    if not kept:
        return None
    out_frames = []
    for p in chosen:
        ids, masks = [], []
        for aid in sorted(instances):
            if decoded[p][aid].any():
                ids.append(aid)
                masks.append(decoded[p][aid])
        for ref in sorted(members):
            union = np.logical_or.reduce([decoded[p][a] for a in members[ref]])
            if union.any():
                ids.append(ref)
                masks.append(union)
        stack = np.stack(masks) if masks else np.zeros((0, *size), bool)
        out_frames.append(
            Frame(index=positions[p], instance_ids=tuple(ids), masks=stack, source=f"{masks_file}:{vid}/{frames[p]}")
        )
    out_frames.sort(key=lambda f: f.index)
    video = Video(
        video_id=vid,
        split=SPLITS[split],
        source=folder,
        height=size[0],
        width=size[1],
        frames=tuple(out_frames),
        expressions=tuple(kept),
        classes=None,  # meta_expressions has no per-object category
    )
    return video, members
