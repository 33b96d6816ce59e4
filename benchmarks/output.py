"""What a benchmark reports: its headline claims, the printed table and the JSON result.

Every script ends in `finish`, so every result has the same shape (the run's settings and
machine, notes, headlines, the table) and run_all.py can collect the claims of all of them
from outputs/benchmarks/ without knowing any script.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.cli import ROOT, Context
from core.io import write_json

RESULTS = ROOT / "outputs" / "benchmarks"  # the JSON results


def headline(
    label: str,
    value: float | None,
    target: float | None = None,
    at_most: bool = True,
    applies: bool = True,
    unit: str = "x",
) -> dict[str, Any]:
    """A benchmark's claim: `value` against `target` (<= when at_most, else >=); `applies`
    false when the target is set for another profile/device (then it is shown, not judged)."""
    met = None
    if value is not None and target is not None and applies:
        met = bool(value <= target) if at_most else bool(value >= target)
    return {
        "label": label,
        "value": value,
        "unit": unit,
        "target": target,
        "at_most": at_most,
        "applies": applies,
        "met": met,
    }


def value_text(h: dict[str, Any]) -> str:
    """A headline's value with its unit, or 'skipped' (no value measured here)."""
    return "skipped" if h["value"] is None else f"{h['value']:.4g}{h['unit']}"


def bound_text(h: dict[str, Any]) -> str:
    """A headline's target as '<= 1.1x' / '>= 3x'; '' when it has none."""
    return "" if h["target"] is None else f"{'<=' if h['at_most'] else '>='} {h['target']:g}{h['unit']}"


def headline_text(h: dict[str, Any]) -> str:
    """The one printed line of a headline: label, value, and the verdict against its target."""
    if h["value"] is None:
        return f"{h['label']}: skipped"
    text = f"{h['label']}: {value_text(h)}"
    if h["target"] is None:
        return text
    if not h["applies"]:
        return f"{text}   target {bound_text(h)}: not judged here (set for another profile or device)"
    return f"{text}   target {bound_text(h)}: {'met' if h['met'] else 'NOT met'}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the numbers right-aligned."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(list(headers)), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def fmt(v: Any) -> str:
    """A table cell: floats to 4 significant digits (whole numbers past 1e4), the rest as str."""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def result_path(name: str, profile: str) -> Path:
    """outputs/benchmarks/<name>.json for the default profile, <name>-<profile>.json otherwise."""
    return RESULTS / (f"{name}.json" if profile == "default" else f"{name}-{profile}.json")


def finish(
    name: str,
    ctx: Context,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    result: dict[str, Any],
    headlines: Sequence[dict[str, Any]],
    extra_lines: Sequence[str] = (),
    timing: bool = True,
) -> Path:
    """Print the table, the headline claims and the notes; write outputs/benchmarks/<name>[-<profile>].json."""
    path = result_path(name, ctx.args.profile)
    cells = [[jsonable(c) for c in r] for r in rows]
    write_json(
        path,
        {
            "benchmark": name,
            "title": title,
            **ctx.header(),
            "notes": ctx.notes,
            "headlines": list(headlines),
            **result,
            "table": {"headers": list(headers), "rows": cells},
        },
    )
    m = ctx.machine()
    batch = f"batch {ctx.batch_size}, " if ctx.batch_size else ""
    reps = (
        f"{ctx.args.reps} reps after {ctx.args.warmup} warm-up (interleaved), medians"
        if timing
        else f"{ctx.args.reps} run(s)"
    )
    print(
        f"\n{title}\nprofile {ctx.args.profile}, device {m['device']} ({m['device_name']}), "
        f"{ctx.threads} torch threads, {batch}{reps}\n"
    )
    print(table(headers, rows))
    print()
    for line in [*extra_lines, *(headline_text(h) for h in headlines)]:
        print(line)
    for n in ctx.notes:
        print(f"note: {n}")
    print(f"\nJSON: {path}")
    return path


def jsonable(v: Any) -> Any:
    """A table cell as JSON stores it (anything but a number, string, bool or None as str)."""
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def load_json(path: Path) -> Any:
    """A result written by `finish` (run_all reads every script's headlines back)."""
    return json.loads(Path(path).read_text())
