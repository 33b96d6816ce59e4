"""Line-exact reading of the datasets' CSV/text files, so errors can name file:line."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, Sequence

from core.data.types import SkipLedger
from core.errors import DataError


def read_lines(path: Path) -> list[str]:
    """Physical lines, so that list position + 1 is the line number an editor shows."""
    try:
        # utf-8-sig: a BOM would otherwise glue itself to the first header name
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    # split on '\n' only: str.splitlines also breaks on form feeds, U+2028 etc. inside a sentence
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]


def parse_csv_line(line: str) -> list[str] | None:
    """One CSV record from one physical line (the files have no multi-line fields); None if malformed."""
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error:
        return None
    return [cell.strip() for cell in rows[0]] if rows else []


def csv_records(path: Path, columns: Sequence[str], ledger: SkipLedger) -> Iterator[tuple[str, dict[str, str]]]:
    """('file:line', {column: cell}) for every non-blank line of a CSV with a header naming
    `columns` (extra columns are tolerated). A missing header raises; a malformed line is a
    'bad_annotation' problem (raised, or counted when allowed) and is skipped."""
    lines = read_lines(path)
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    header = parse_csv_line(lines[header_at]) if header_at is not None else None
    if header is None or header_at is None or not set(columns) <= set(header):
        raise DataError(f"{path}:{(header_at or 0) + 1}: expected a CSV header with columns {','.join(columns)}")
    for lineno in range(header_at + 2, len(lines) + 1):
        line = lines[lineno - 1]
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        cells = parse_csv_line(line)
        if cells is None or len(cells) != len(header):
            got = "unparseable CSV" if cells is None else f"{len(cells)} columns, header has {len(header)}"
            ledger.problem("bad_annotation", f"{where}: malformed annotation line ({got}): {line.strip()[:80]!r}")
            continue
        yield where, dict(zip(header, cells))
