"""Ground truth the real releases do not carry: instance classes and sentence attributes.

The evaluation's language-blind bound needs each instance's class and its strata need each
sentence's disambiguating attribute type (docs/method.md, 'Bounds the suite adds'). The real A2D
Sentences h5 files hold 'instance', 'reMask' and 'reBBox' and no class our reader uses, and
J-HMDB Sentences masks one actor per video, so neither release says either. The synthetic
generator knows both and writes them into one extra file per layout, which is NOT part of
either real release:

    <a2d root>/text_annotations/synthetic_ground_truth.json     (a2d.GROUND_TRUTH)
    <jhmdb root>/synthetic_ground_truth.json                    (jhmdb.GROUND_TRUTH)

    {
      "note":      "<free text>",                                             (optional)
      "classes":   {"<video id>": {"<instance id>": "<class>", ...} or null, ...},
      "sentences": [{"video": "<video id>", "instance": <int>, "text": "<sentence>",
                     "attribute": "<type>"}, ...]
    }

A sentence is matched by (video, instance, text with outer blanks stripped, as the readers
strip CSV cells). The readers apply the file when it is there (`GroundTruth.apply`) and leave
None where it is absent or silent (real data): what needs the values is then left out,
never guessed. A video's class map must cover every instance of its frames. A malformed
file is a one-line `DataError` naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.data import defects
from core.data.types import Video
from core.errors import DataError
from core.io import write_json

NOTE = "not part of the real release: written by the synthetic generator (core.data.ground_truth)"
SENTENCE_KEYS = ("video", "instance", "text", "attribute")
_INT_RE = re.compile(r"^\d+$")


@dataclass(frozen=True)
class GroundTruth:
    path: Path
    classes: dict[str, dict[int, str] | None]  # video id -> instance id -> class (None: unknown)
    attributes: dict[tuple[str, int, str], str]  # (video id, instance id, text) -> attribute type

    def apply(self, video: Video) -> Video:
        """`video` with its class map and its sentences' attributes (None where the file is silent)."""
        classes = self.classes.get(video.video_id)
        if classes is not None:
            missing = sorted({i for f in video.frames for i in f.instance_ids} - set(classes))
            if missing:
                raise DataError(
                    f"{self.path}: classes of video {video.video_id!r} miss instance(s) "
                    f"{', '.join(map(str, missing))} of its annotated frames"
                )
        exprs = tuple(
            replace(e, attribute=self.attributes.get((video.video_id, e.referent, e.text.strip())))
            for e in video.expressions
        )
        return replace(video, classes=classes, expressions=exprs)


def read_ground_truth(path: Path) -> GroundTruth | None:
    """The file at `path`, validated; None when there is none (the real releases)."""
    path = Path(path)
    if defects.optional_file(path, "synthetic ground-truth file") is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON ({type(err).__name__}: {err})") from None
    if not isinstance(doc, dict) or not {"classes", "sentences"} <= set(doc) <= {"note", "classes", "sentences"}:
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{path}: expected an object with keys classes, sentences (and optionally note), got {got}")
    return GroundTruth(path, _classes(path, doc["classes"]), _attributes(path, doc["sentences"]))


def _classes(path: Path, raw: Any) -> dict[str, dict[int, str] | None]:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: 'classes' must map video ids to {{instance id: class}} or null")
    out: dict[str, dict[int, str] | None] = {}
    for vid, m in raw.items():
        if m is None:
            out[vid] = None
            continue
        if not isinstance(m, dict):
            raise DataError(f"{path}: classes[{vid!r}] must be an object {{instance id: class}} or null")
        for inst, cls in m.items():
            if not _INT_RE.match(inst) or not isinstance(cls, str) or not cls:
                raise DataError(
                    f"{path}: classes[{vid!r}] must map integer instance ids to class names, got {inst!r}: {cls!r}"
                )
        out[vid] = {int(i): c for i, c in m.items()}
    return out


def _attributes(path: Path, raw: Any) -> dict[tuple[str, int, str], str]:
    if not isinstance(raw, list):
        raise DataError(f"{path}: 'sentences' must be a list of {{{', '.join(SENTENCE_KEYS)}}} objects")
    out: dict[tuple[str, int, str], str] = {}
    for k, s in enumerate(raw):
        where = f"{path}: sentences[{k}]"
        if not isinstance(s, dict) or set(s) != set(SENTENCE_KEYS):
            got = sorted(s) if isinstance(s, dict) else type(s).__name__
            raise DataError(f"{where} must have exactly the keys {', '.join(SENTENCE_KEYS)}, got {got}")
        inst = s["instance"]
        if not isinstance(inst, int) or isinstance(inst, bool) or inst < 0:
            raise DataError(f"{where}.instance must be a non-negative integer, got {inst!r}")
        for key in ("video", "text", "attribute"):
            if not isinstance(s[key], str) or not s[key].strip():
                raise DataError(f"{where}.{key} must be a non-empty string, got {s[key]!r}")
        at = (s["video"], inst, s["text"].strip())
        if at in out:
            raise DataError(f"{where}: sentence {at[2]!r} of video {at[0]!r} instance {inst} is listed twice")
        out[at] = s["attribute"]
    return out


def write_ground_truth(
    path: Path, classes: Mapping[str, Mapping[int, str] | None], sentences: Sequence[tuple[str, int, str, str]]
) -> None:
    """The file `read_ground_truth` reads: classes per video, (video, instance, text, attribute) rows."""
    doc = {
        "note": NOTE,
        "classes": {v: None if m is None else {str(i): c for i, c in sorted(m.items())} for v, m in classes.items()},
        "sentences": [dict(zip(SENTENCE_KEYS, row)) for row in sentences],
    }
    write_json(path, doc)
