"""meta_expressions.json, the file Ref-YouTube-VOS and MeViS share, read once for both.

    {"videos": {<vid>: {"frames": [<frame name>, ...],
                        "expressions": {"<exp_id>": {"exp": <sentence>, ...}, ...}}, ...}}

What a dataset adds to an expression is read by its own module: Ref-YouTube-VOS's "obj_id" (one
object id, as a string; core.data.ytvos), MeViS's parallel "obj_id" and "anno_id" lists
(core.data.mevis). Here, for both:

  * `load_json` / `load_videos`: a JSON file, and its "videos" object; anything unreadable or of
    another shape always raises one `DataError` line naming the file;
  * `parse_video`: one video's entry -> its listed frames and its expressions in exp_id order
    (numeric ids by number). A malformed entry is a bad_annotation problem; an entry without a
    single expression is the video_without_sentences quirk (core.data.defects);
  * `expression_text`: an expression's sentence, stripped (a malformed one is bad_annotation);
  * `locate_frames`: where each listed frame's JPEG is. A listed name is a JPEG's name or its name
    without the suffix ("00000" and "00000.jpg" are 00000.jpg); its position is its place in the
    folder's sorted JPEG list (core.data.images), which is `Frame.index`. A listed frame without
    a JPEG is the frame_without_image quirk; a frame listed twice is one frame;
  * `read_queries`: a split without masks (valid / test), as the submission export needs it:
    per video the listed frames that have a JPEG (in frame order) and every expression with its
    exp_id, an empty one kept (a submission needs its mask) and noted (`QueryVideo`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data import defects
from core.data.types import SkipLedger
from core.errors import DataError

JPEG_SUFFIX = ".jpg"  # the suffix of a listed frame name that has none


@dataclass(frozen=True)
class Query:
    """One expression of a split without masks, keyed by its exp_id."""

    exp_id: str
    text: str  # "" for an empty expression (noted as empty_sentence, still exported)
    source: str  # "<meta_expressions.json>:<vid>/<exp_id>"


@dataclass(frozen=True)
class QueryVideo:
    """A video of a split without masks: what a prediction export needs (frames, expressions)."""

    video_id: str
    split: str  # the dataset's split folder: "valid" or "test"
    source: Path  # the JPEGImages/<vid> folder
    height: int
    width: int
    frame_names: tuple[str, ...]  # the listed frames that have a JPEG, as listed, in frame order
    frame_indices: tuple[int, ...]  # their positions in the sorted JPEG list (images.read_image_frames)
    expressions: tuple[Query, ...]


@dataclass(frozen=True)
class ListedFrame:
    """A listed frame that has its JPEG."""

    listed: int  # its place in the entry's "frames" list (MeViS's mask_dict is indexed by it)
    name: str  # as listed
    position: int  # its JPEG's place in the folder's sorted JPEG list (Frame.index)


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def load_json(path: Path, what: str) -> Any:
    """The JSON document at `path` (`what`: e.g. 'MeViS', in 'required MeViS file not found')."""
    defects.require_file(path, f"required {what} file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON ({type(err).__name__}: {err})") from None


def load_videos(path: Path, what: str) -> dict[str, Any]:
    """The "videos" object of a meta file (meta_expressions.json, Ref-YouTube-VOS's meta.json)."""
    doc = load_json(path, what)
    if not isinstance(doc, dict) or not isinstance(doc.get("videos"), dict):
        got = f"keys {sorted(doc)}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise DataError(f'{path}: expected an object {{"videos": {{<video id>: ...}}}}, got {got}')
    return doc["videos"]


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_names(v: Any) -> bool:
    """A list of frame names (non-empty strings)."""
    return isinstance(v, list) and all(isinstance(n, str) and n for n in v)


def short(v: Any) -> str:
    """A JSON value for a message, cut at 80 characters."""
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _exp_order(exp_id: str) -> tuple[int, int, str]:
    return (0, int(exp_id), exp_id) if exp_id.isdigit() else (1, 0, exp_id)


# --------------------------------------------------------------------------------------
# one video's entry
# --------------------------------------------------------------------------------------


def parse_video(path: Path, vid: str, raw: Any, ledger: SkipLedger) -> tuple[list[str], list[tuple[str, Any]]] | None:
    """(listed frame names, [(exp_id, raw expression)] in exp_id order) of a well-formed entry."""
    frames = raw.get("frames") if isinstance(raw, dict) else None
    exps = raw.get("expressions") if isinstance(raw, dict) else None
    if not is_names(frames) or not isinstance(exps, dict):
        got = f"keys {sorted(raw)}" if isinstance(raw, dict) else f"a JSON {type(raw).__name__}"
        ledger.problem(
            defects.BAD_ANNOTATION,
            f'{path}:{vid}: video entry must be an object with "frames" (a list of frame names) and '
            f'"expressions" (an object), got {got}',
        )
        return None
    if not exps:
        ledger.quirk(defects.VIDEO_WITHOUT_SENTENCES, f"{path}:{vid}: no expressions")
        return None
    return list(frames), [(k, exps[k]) for k in sorted(exps, key=_exp_order)]


def expression_text(source: str, e: Any, ledger: SkipLedger) -> str | None:
    """The stripped sentence of a raw expression; None (bad_annotation) when it has no string "exp"."""
    if not isinstance(e, dict) or not isinstance(e.get("exp"), str):
        ledger.problem(
            defects.BAD_ANNOTATION, f'{source}: expression must be an object with a string "exp", got {short(e)}'
        )
        return None
    return e["exp"].strip()


def jpeg_name(frame_name: str) -> str:
    """The JPEG file of a listed frame name: '00000' -> '00000.jpg' ('00000.jpg' stays)."""
    return frame_name if frame_name.lower().endswith((".jpg", ".jpeg")) else frame_name + JPEG_SUFFIX


def frame_stem(frame_name: str) -> str:
    """A listed frame name without its JPEG suffix ('00000.jpg' -> '00000'): a prediction PNG's name."""
    return jpeg_name(frame_name).rsplit(".", 1)[0]


def locate_frames(
    path: Path, vid: str, folder: Path, listed: list[str], ledger: SkipLedger
) -> tuple[list[Path], list[ListedFrame]] | None:
    """(the folder's JPEGs in frame order, the listed frames that have one, in frame order); None
    (missing_video, `defects.video_frames`) for a folder that is not there or holds no JPEG."""
    jpegs = defects.video_frames(folder, ledger, f"{path}")
    if jpegs is None:
        return None
    position: dict[str, int] = {}
    for i, p in enumerate(jpegs):
        position.setdefault(p.name, i)
        position.setdefault(p.stem, i)
    found: dict[int, ListedFrame] = {}
    for k, name in enumerate(listed):
        i = position.get(name)
        if i is None:
            detail = f"listed frame without a JPEG (frame {name!r} of video {vid!r} in {path})"
            ledger.quirk(defects.FRAME_WITHOUT_IMAGE, f"{folder / jpeg_name(name)}: {detail}")
        else:
            found.setdefault(i, ListedFrame(k, name, i))  # a frame listed twice is one frame
    return jpegs, [found[i] for i in sorted(found)]


# --------------------------------------------------------------------------------------
# a split without masks
# --------------------------------------------------------------------------------------


def read_queries(
    path: Path, split: str, folder: Callable[[str], Path], ledger: SkipLedger, what: str
) -> Iterator[QueryVideo]:
    """Every video of a split without masks listed in `path` (its meta_expressions.json), in file
    order; `folder(vid)` is a video's JPEG folder. Only "exp" is read of an expression. A video is
    yielded when it has a JPEG of a listed frame and an expression."""
    for vid, raw in load_videos(path, what).items():
        entry = parse_video(path, vid, raw, ledger)
        if entry is None:
            continue
        listed, raw_exps = entry
        located = locate_frames(path, vid, folder(vid), listed, ledger)
        if located is None:
            continue
        jpegs, frames = located
        queries = []
        for exp_id, e in raw_exps:
            source = f"{path}:{vid}/{exp_id}"
            text = expression_text(source, e, ledger)
            if text is None:
                continue
            if not text:
                defects.empty_sentence(ledger, source, masked=False)  # kept: the submission needs it
            queries.append(Query(exp_id=exp_id, text=text, source=source))
        if not frames or not queries:
            continue  # nothing to predict; what is missing was counted
        size = defects.first_frame_size(jpegs[frames[0].position], ledger)
        if size is None:
            continue
        yield QueryVideo(
            video_id=vid,
            split=split,
            source=folder(vid),
            height=size[0],
            width=size[1],
            frame_names=tuple(f.name for f in frames),
            frame_indices=tuple(f.position for f in frames),
            expressions=tuple(queries),
        )
