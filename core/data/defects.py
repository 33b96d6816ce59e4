"""One rule per defect, shared by every dataset reader (a2d, jhmdb, ytvos, mevis).

The same defect gets the same class name and the same outcome in every reader:

    defect                                              class                   outcome
    a dataset root, or a file the reader needs:          -                       DataError, always
      absent, a symbolic link loop, a dangling link,
      a folder for a file (or a file for a folder),
      unreadable
    a listed video with no frames on disk                missing_video           problem
      (no frame folder, no mp4)
    a frame folder without a single frame file           missing_video           problem
    a video's first frame unreadable (truncated, not     corrupt_video           problem
      an image)
    a mask of another size than its frames               mask_size               problem
    a mask file unreadable or malformed                  bad_h5                  problem
    a malformed annotation entry                         bad_annotation          problem
    an empty (blank) sentence where masks are read       empty_sentence          problem
    an empty sentence of a split without masks           empty_sentence          kept, noted
      (valid / test: a submission needs its mask)
    a listed frame without its image                     frame_without_image     quirk
    a sentence whose referent is in none of the          referent_never_visible  quirk
      chosen frames
    a video without a sentence                           video_without_sentences quirk

problem: `SkipLedger.problem` (a one-line DataError naming the file, unless the class is in
data.allow_skip; then skipped and counted). quirk: skipped and counted, always (a documented
property of the releases, not bad input). noted: kept, and counted as kept (`SkipLedger.note`),
never reported as skipped. Dataset-specific quirks (A2D's excluded and missed videos, MeViS's
multi-object expressions, ...) are documented in their readers. tests/test_defects.py feeds
each defect to every reader it applies to.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable, Sequence

from core.data.images import JPEG_SUFFIXES, frame_files, image_size
from core.data.types import Expression, Frame, SkipLedger, visible_instances
from core.errors import DataError

MISSING_VIDEO = "missing_video"
CORRUPT_VIDEO = "corrupt_video"
MASK_SIZE = "mask_size"
BAD_MASK = "bad_h5"
BAD_ANNOTATION = "bad_annotation"
EMPTY_SENTENCE = "empty_sentence"
FRAME_WITHOUT_IMAGE = "frame_without_image"
REFERENT_NEVER_VISIBLE = "referent_never_visible"
VIDEO_WITHOUT_SENTENCES = "video_without_sentences"


def what_is_wrong(path: Path, folder: bool = False) -> str | None:
    """None when `path` is a readable file (a folder, with folder=True); else what is wrong, as
    the end of a sentence: 'not found', 'is a symbolic link loop', 'is a dangling symbolic link
    (to ...)', 'is a folder, not a file', 'is not readable (permission denied)', ..."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if path.is_symlink():
            return f"is a dangling symbolic link (to {os.readlink(path)})"
        if err.errno == errno.ENOENT:
            return "not found"
        return f"is not accessible ({type(err).__name__}: {err.strerror})"
    if folder:
        if not stat.S_ISDIR(st.st_mode):
            return "is a file, not a folder"
        if not os.access(path, os.R_OK | os.X_OK):
            return "is not readable (permission denied)"
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


def require_file(path: Path, what: str, hint: str = "") -> Path:
    """`path` when it is a readable file, else a one-line DataError: '<path>: <what> not found<hint>',
    '... is a symbolic link loop', ... (`what`: e.g. 'required MeViS file')."""
    wrong = what_is_wrong(path)
    if wrong is not None:
        raise DataError(f"{path}: {what} {wrong}{hint}")
    return Path(path)


def require_folder(path: Path, what: str, hint: str = "") -> Path:
    """`path` when it is a readable folder, else a one-line DataError (as `require_file`)."""
    wrong = what_is_wrong(path, folder=True)
    if wrong is not None:
        raise DataError(f"{path}: {what} {wrong}{hint}")
    return Path(path)


def optional_file(path: Path, what: str) -> Path | None:
    """None when nothing is at `path` (not even a dangling link); else `require_file`."""
    if not os.path.lexists(path):
        return None
    return require_file(path, what)


def video_frames(
    folder: Path, ledger: SkipLedger, listed_in: str, suffixes: Sequence[str] = JPEG_SUFFIXES
) -> list[Path] | None:
    """The frame files of a listed video's folder, in frame order; None (a missing_video problem,
    naming where the video is listed) when the folder is not there or holds no frame file."""
    wrong = what_is_wrong(folder, folder=True)
    if wrong is not None:
        ledger.problem(MISSING_VIDEO, f"{folder}: frame folder {wrong} (video listed in {listed_in})")
        return None
    files = frame_files(folder, suffixes)
    if not files:
        ledger.problem(MISSING_VIDEO, f"{folder}: no {'/'.join(suffixes)} frames (video listed in {listed_in})")
        return None
    return files


def video_file(path: Path, ledger: SkipLedger, listed_in: str) -> Path | None:
    """A listed video's file (an mp4); None (a missing_video problem) when it is not a readable file."""
    wrong = what_is_wrong(path)
    if wrong is not None:
        ledger.problem(MISSING_VIDEO, f"{path}: video file {wrong} (video listed in {listed_in})")
        return None
    return Path(path)


def first_frame_size(path: Path, ledger: SkipLedger) -> tuple[int, int] | None:
    """(H, W) of a video's first frame from its header; None (a corrupt_video problem) when it
    cannot be read."""
    try:
        return image_size(path)
    except DataError as err:
        ledger.problem(CORRUPT_VIDEO, err.detail)
        return None


def empty_sentence(ledger: SkipLedger, source: str, masked: bool, of: str = "") -> bool:
    """The rule for a blank sentence at `source` (`of`: e.g. " for video 'v1'"): where masks are
    read, an empty_sentence problem (True: drop it, when allowed); in a split without masks,
    noted and kept (False)."""
    if masked:
        ledger.problem(EMPTY_SENTENCE, f"{source}: empty sentence{of}")
        return True
    ledger.note(EMPTY_SENTENCE, f"{source}: empty sentence{of} (kept: a submission needs its mask)")
    return False


def visible_referents(
    exprs: Sequence[Expression], frames: Sequence[Frame], ledger: SkipLedger, why: Callable[[Expression], str]
) -> list[Expression]:
    """The sentences whose referent has a pixel in one of `frames` (a video's chosen annotated
    frames); each other one is the referent_never_visible quirk, '<source>: <why(sentence)>'."""
    visible = visible_instances(frames)
    kept = []
    for e in exprs:
        if e.referent in visible:
            kept.append(e)
        else:
            ledger.quirk(REFERENT_NEVER_VISIBLE, f"{e.source}: {why(e)}")
    return kept
