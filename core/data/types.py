"""The one sample type every dataset reader yields, and the skip ledger.

Readers (a2d.py, jhmdb.py) turn an on-disk layout into `Video` records; extraction
(extract.py) turns those into the processed store. Nothing downstream knows which dataset a
video came from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from core.errors import DataError

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Expression:
    """One referring sentence for one object of a video."""

    text: str
    referent: int  # instance id of the referred object, as in the dataset's mask files
    source: str  # "file:line", for messages
    # the attribute type that tells the referent apart (the strata of evaluation); None when the
    # source does not say (the real releases; see core.data.ground_truth)
    attribute: str | None = None


@dataclass(frozen=True)
class Frame:
    """One annotated frame: every instance's mask, in image orientation (row = y)."""

    index: int  # 0-based index into the decoded video frames
    instance_ids: tuple[int, ...]
    masks: np.ndarray  # bool [N, H, W], N == len(instance_ids)
    source: str  # file the masks came from

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.shape[0] != len(self.instance_ids):
            raise DataError(
                f"{self.source}: {len(self.instance_ids)} instance ids but masks of shape {self.masks.shape}"
            )


@dataclass(frozen=True)
class Video:
    """A video with its annotated frames and the sentences that refer to objects in it."""

    video_id: str
    split: Split
    source: Path  # an mp4 file (A2D) or a folder of %05d.png frames (J-HMDB)
    height: int
    width: int
    frames: tuple[Frame, ...]  # annotated frames, ascending index
    expressions: tuple[Expression, ...]
    # instance id -> class, covering every instance of `frames` (the language-blind bound and the
    # distractor stratum need it); None when the source does not say (see core.data.ground_truth)
    classes: dict[int, str] | None = None


def visible_instances(frames: tuple[Frame, ...] | list[Frame]) -> set[int]:
    """The instance ids with at least one pixel in any of `frames` (a referent outside them is a
    `referent_never_visible` quirk of every reader)."""
    return {i for f in frames for i, m in zip(f.instance_ids, f.masks) if m.any()}


@dataclass
class SkipLedger:
    """Counts everything skipped on purpose, by reason, with a few examples each.

    Two kinds of skip: documented dataset quirks (always skipped, always counted), and
    problem classes the user allowed in `data.allow_skip` (otherwise they raise). Apart from
    them, `notes`: defects that were KEPT (e.g. an empty sentence of a split without masks,
    still predicted), counted so that nothing kept is ever reported as skipped. The rules:
    core.data.defects.
    """

    allowed: frozenset[str] = frozenset()
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)
    note_examples: dict[str, list[str]] = field(default_factory=dict)

    def quirk(self, reason: str, detail: str) -> None:
        _count(self.counts, self.examples, reason, [detail])

    def note(self, reason: str, detail: str) -> None:
        """A defect that was kept (not skipped): counted apart from the skips."""
        _count(self.notes, self.note_examples, reason, [detail])

    def problem(self, problem_class: str, message: str) -> None:
        """Raise a `DataError` unless `problem_class` is allowed, else count it.

        The error's one-line message is `message` plus how to skip such cases; its fields carry
        `problem_class` and `detail` (= `message`), so callers never parse the text.
        """
        if problem_class not in self.allowed:
            raise DataError(
                f"{message} (to skip such cases instead, add '{problem_class}' to data.allow_skip)",
                problem_class=problem_class,
                detail=message,
            )
        self.quirk(problem_class, message)

    def merge(self, other: "SkipLedger") -> None:
        """Add the counts, notes and examples of `other` (a worker process's ledger)."""
        for reason, n in other.counts.items():
            _count(self.counts, self.examples, reason, other.examples.get(reason, []), n)
        for reason, n in other.notes.items():
            _count(self.notes, self.note_examples, reason, other.note_examples.get(reason, []), n)

    def as_dict(self) -> dict[str, dict]:
        """The skips: reason -> {"count", "examples"}."""
        return {k: {"count": v, "examples": self.examples.get(k, [])} for k, v in sorted(self.counts.items())}

    def notes_dict(self) -> dict[str, dict]:
        """What was kept though noted: reason -> {"count", "examples"}."""
        return {k: {"count": v, "examples": self.note_examples.get(k, [])} for k, v in sorted(self.notes.items())}


def _count(counts: Counter, examples: dict[str, list[str]], reason: str, details: list[str], n: int = 1) -> None:
    counts[reason] += n
    ex = examples.setdefault(reason, [])
    ex.extend(details[: max(0, 5 - len(ex))])
