"""Line-exact reading of the datasets' CSV/text files, so errors can name file:line."""
from __future__ import annotations

import csv
from pathlib import Path

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
