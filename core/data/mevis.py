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

meta_expressions.json is read as Ref-YouTube-VOS's is (core.data.meta_expressions: a frame name
is the JPEG's name with or without ".jpg", the release writes "00000"; expression ids in
numeric order); a frame listed twice is a bad_annotation here (mask_dict is indexed by the
list). One expression may refer to several objects: obj_id and anno_id are parallel lists; its
target in a frame is the UNION of its objects' masks. The masks are COCO RLE (core.data.rle).

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
prediction export (`meta_expressions.QueryVideo`). The MeViS submission format is one png per
(video, expression, frame): <vid>/<exp_id>/<frame name>.png.

Defects follow the rules every reader shares (core.data.defects: missing_video, corrupt_video,
empty_sentence, frame_without_image, referent_never_visible, video_without_sentences; a listed
frame without its JPEG is never chosen, the others keep their JPEG positions). MeViS's own
quirks (always skipped and counted, `SkipLedger.quirk`):

    mevis_expression_without_target  an expression with an empty anno_id list
    mevis_anno_id_not_in_mask_dict   an expression naming an anno_id that mask_dict lacks
                                     (the expression is dropped; its other objects stay
                                     instances of the video)
    mevis_target_always_null         an expression whose objects are null in every frame

Bad input: a missing or unreadable root, split folder, meta_expressions.json or (read_mevis)
mask_dict.json, or one not of the shape above, always raises a one-line `DataError` naming the
file. Per video (`SkipLedger.problem`): bad_annotation (a malformed video or expression entry),
bad_h5 (a malformed mask_dict entry: not one RLE-or-null per frame, an RLE that does not decode
to its size), mask_size (an RLE whose size is not the JPEG size).

`core.data.mevis_write` writes the same layout (the synthetic generator and the tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.data import defects
from core.data import meta_expressions as mx
from core.data.frames import chosen_indices
from core.data.meta_expressions import jpeg_name
from core.data.mevis_masks import check_entries, decode_frames, masks_frame, read_mask_dict
from core.data.types import Expression, SkipLedger, Split, Video

IMAGES = Path("JPEGImages")
META = "meta_expressions.json"
MASK_DICT = "mask_dict.json"
WHAT = "MeViS"  # how messages name its files
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
    mask_dict = read_mask_dict(masks_file)
    for vid, entry in videos.items():
        video = _read_video(root, split, meta, masks_file, mask_dict, vid, entry, frames_per_video, ledger)
        if video is not None:
            video, members = video
            if unions is not None:
                unions[vid] = members
            yield video


def read_mevis_valid(root: Path, ledger: SkipLedger, split: str = "valid") -> Iterator[mx.QueryVideo]:
    """Yield every video of a split for prediction (no masks read), in meta_expressions order
    (`meta_expressions.read_queries`: only "exp" is read of an expression; an empty one is kept
    and noted, as Ref-YouTube-VOS's valid reader keeps it: the server wants a mask for every exp_id)."""
    if split not in SPLITS:
        raise ValueError(f"unknown MeViS split {split!r} (expected one of {', '.join(SPLITS)})")
    meta, _ = _open_meta(Path(root), split)
    yield from mx.read_queries(meta, split, lambda vid: frames_dir(root, split, vid), ledger, WHAT)


def _open_meta(root: Path, split: str) -> tuple[Path, dict[str, Any]]:
    defects.require_folder(root, "MeViS root", " (data.mevis_root)")
    defects.require_folder(split_dir(root, split), "MeViS split folder")
    meta = meta_path(root, split)
    return meta, mx.load_videos(meta, WHAT)


def _parse_video(meta: Path, vid: str, entry: Any, ledger: SkipLedger) -> tuple[list[str], list] | None:
    """`meta_expressions.parse_video`, and no frame listed twice (mask_dict is indexed by the list)."""
    parsed = mx.parse_video(meta, vid, entry, ledger)
    if parsed is not None and len({jpeg_name(f) for f in parsed[0]}) != len(parsed[0]):
        ledger.problem("bad_annotation", f"{meta}:{vid}: 'frames' lists a frame twice")
        return None
    return parsed


def _parse_expression(where: str, e: Any, owner: dict[int, int], ledger: SkipLedger) -> tuple[str, tuple] | None:
    """(text, sorted unique anno_ids) of a well-formed expression; `owner` maps anno_id -> obj_id."""
    text = mx.expression_text(where, e, ledger)
    if text is None:
        return None
    aids, oids = e.get("anno_id"), e.get("obj_id")
    if not isinstance(aids, list) or not all(mx.is_int(a) for a in aids):
        ledger.problem("bad_annotation", f"{where}: 'anno_id' must be a list of integers, got {mx.short(aids)}")
        return None
    if not isinstance(oids, list) or not all(mx.is_int(o) for o in oids) or len(oids) != len(aids):
        ledger.problem(
            "bad_annotation",
            f"{where}: 'obj_id' must be a list of integers parallel to 'anno_id' {aids}, got {mx.short(oids)}",
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
    return text, tuple(sorted(set(aids)))


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
    parsed = _parse_video(meta, vid, entry, ledger)
    if parsed is None:
        return None
    frames, raw_exps = parsed
    folder = frames_dir(root, split, vid)
    located = mx.locate_frames(meta, vid, folder, frames, ledger)
    if located is None:
        return None
    jpegs, listed = located
    positions = {f.listed: f.position for f in listed}  # listed position -> JPEG position
    if not positions:
        return None  # every frame counted as without a JPEG
    exps, instances = _expressions(meta, masks_file, mask_dict, vid, raw_exps, ledger)
    if not exps:
        return None
    size = defects.first_frame_size(jpegs[positions[min(positions)]], ledger)  # the first listed one
    if size is None:
        return None
    for aid in sorted(instances):
        if not check_entries(masks_file, vid, aid, mask_dict[aid], frames, size, ledger):
            return None
    kept_null = []
    for e in exps:
        if all(mask_dict[a][t] is None for a in e.anno_ids for t in range(len(frames))):
            ledger.quirk(TARGET_ALWAYS_NULL, f"{e.source}: anno_id {list(e.anno_ids)} null in all {len(frames)} frames")
        else:
            kept_null.append(e)
    if not kept_null:
        return None
    usable = sorted(positions)
    chosen = [usable[k] for k in chosen_indices(len(usable), n_frames)]
    decoded = decode_frames(masks_file, mask_dict, vid, frames, chosen, sorted(instances), size, ledger)
    if decoded is None:
        return None
    # referents: the object itself, or the virtual instance of the union of its objects
    members: dict[int, tuple[int, ...]] = {}
    candidates: list[Expression] = []
    for e in kept_null:
        ref = e.anno_ids[0] if len(e.anno_ids) == 1 else virtual_id(e.anno_ids)
        if len(e.anno_ids) > 1 and members.setdefault(ref, e.anno_ids) != e.anno_ids:
            ledger.problem(
                "bad_annotation",
                f"{e.source}: virtual id {ref} of anno_ids {list(e.anno_ids)} collides with "
                f"{list(members[ref])} (sha1 collision)",
            )
            continue
        candidates.append(Expression(text=e.text, referent=ref, source=e.source))
    out_frames = [
        masks_frame(decoded[p], members, positions[p], size, f"{masks_file}:{vid}/{frames[p]}") for p in chosen
    ]
    out_frames.sort(key=lambda f: f.index)

    def why(e: Expression) -> str:
        objects = list(members.get(e.referent, (e.referent,)))
        return f"anno_id {objects} of {vid!r} is in none of its {len(chosen)} chosen frames"

    kept = defects.visible_referents(candidates, out_frames, ledger, why)
    if not kept:
        return None
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
    return video, {ref: members[ref] for ref in sorted(members) if ref in {e.referent for e in kept}}


def _expressions(
    meta: Path, masks_file: Path, mask_dict: Mapping[int, Any], vid: str, raw_exps: list, ledger: SkipLedger
) -> tuple[list[_Exp], set[int]]:
    """The well-formed expressions with a text and a target, and the instances of the video (every
    anno_id they name that mask_dict holds); an anno_id the mask file lacks drops its expression."""
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
    return exps, instances
