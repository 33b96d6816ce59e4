"""Atomic output: write to a temp file (or folder) in the same folder, then rename.

A kill at any point leaves either the old file or the new one, never a half-written one
that looks complete. Files: `atomic_path` and the `write_*` helpers; whole folders:
`staged_dir` (build in a temp sibling) and `publish_dir` (swap it into place).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it 0600: publish it as a plain open() would
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder next to `final`; publish it as `final` only if the block succeeds.

    Temp and old siblings that a killed earlier attempt left behind are removed first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700: publish it as a plain mkdir would
    try:
        yield tmp
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Swap the complete folder `tmp` into place as `final` (same file system).

    The old `final` is moved aside first, never mutated, and removed once the new one is in
    place: a kill leaves the old folder, the new one, or (between the two renames) none.
    """
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def hash_file(h: Any, path: str | os.PathLike) -> None:
    """Feed a file's bytes into the hashlib object `h`, in chunks (files of any size)."""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    hash_file(h, path)
    return h.hexdigest()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """A result table: one row per dict (columns: `columns`, else the first row's keys);
    NaN is written as an empty cell and booleans as true/false."""
    cols = list(columns if columns is not None else (rows[0] if rows else []))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in cols})
    write_text(path, buf.getvalue())


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and math.isnan(v):
        return ""
    return v
