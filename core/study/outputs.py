"""A study's outputs: the table, the figure, the JSON summary."""

from __future__ import annotations

import logging
import math
from typing import Any

from core.config import Params
from core.io import atomic_path, write_csv, write_json
from core.results import METRIC_COLUMNS, STUDY_COLUMNS
from core.study.figure import study_figure
from core.study.grid import ATTR_CLAIM, ATTR_ROW, StudyKind, grid, pair_of
from core.study.storage import display_url

log = logging.getLogger("cvls")


def collect_rows(kind: StudyKind, params: Params, study: Any) -> list[dict[str, Any]]:
    """One row per grid (point, seed) with a COMPLETE trial, from the study alone (grid order)."""
    from optuna.trial import TrialState

    by_pair: dict[tuple[str, int], Any] = {}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        pair = pair_of(t)
        if pair in by_pair:
            log.warning(
                "point %s seed %d has two COMPLETE trials (%d, %d); the table keeps %d",
                pair[0],
                pair[1],
                by_pair[pair].number,
                t.number,
                by_pair[pair].number,
            )
            continue
        by_pair[pair] = t
    rows = []
    for gp in grid(kind, params):
        t = by_pair.get(gp.pair)
        if t is None:
            continue
        row = t.user_attrs.get(ATTR_ROW, {})
        out: dict[str, Any] = {
            "study": study.study_name,
            "trial": t.number,
            "point": gp.point,
            "x": gp.x,
            "seed": gp.seed,
            "run_id": row.get("run_id"),
            "run_hash": row.get("run_hash"),
            "reused": bool(row.get("reused", False)),
        }
        for col in METRIC_COLUMNS:
            v = row.get(col)
            out[col] = float("nan") if v is None else float(v)
        rows.append(out)
    return rows


ORIGINS = ("trained_here", "reused", "trained_elsewhere")


def origin(trial: Any, before: set[int], host: str, pids: set[int]) -> str:
    """Where one invocation got a COMPLETE trial's row (one of ORIGINS): trained by its own
    workers (host, pids); reused (COMPLETE before it started, in `before`, or a FINISHED run of
    the same config); or trained meanwhile by another process on the same storage."""
    row = trial.user_attrs.get(ATTR_ROW) or {}
    if trial.number in before or row.get("reused"):
        return "reused"
    claim = trial.user_attrs.get(ATTR_CLAIM) or {}
    parts = str(claim.get("worker", "")).rsplit(":", 2)  # host:pid:index
    mine = len(parts) == 3 and parts[0] == host and parts[1].isdigit() and int(parts[1]) in pids
    return "trained_here" if mine else "trained_elsewhere"


def invocation_counts(
    rows: list[dict[str, Any]], study: Any, before: set[int], host: str, pids: set[int]
) -> dict[str, int]:
    """ORIGINS -> how many of `rows` (collect_rows) this invocation got that way."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    counts = dict.fromkeys(ORIGINS, 0)
    for r in rows:
        counts[origin(by_number[r["trial"]], before, host, pids)] += 1
    return counts


def summarize_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point (grid order): seeds, mean/min/max of val and test mAP."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = out.setdefault(r["point"], {"point": r["point"], "x": r["x"], "seeds": [], "val": [], "test": []})
        s["seeds"].append(r["seed"])
        s["val"].append(r["val/mAP"])
        s["test"].append(r["test/mAP"])
    res = []
    for s in out.values():
        entry = {"point": s["point"], "x": s["x"], "seeds": s["seeds"]}
        for split in ("val", "test"):
            vals = [v for v in s[split] if not math.isnan(v)]
            entry[f"mean_{split}_mAP"] = sum(vals) / len(vals) if vals else None
            entry[f"min_{split}_mAP"] = min(vals) if vals else None
            entry[f"max_{split}_mAP"] = max(vals) if vals else None
        res.append(entry)
    return res


def write_outputs(
    kind: StudyKind,
    params: Params,
    study: Any,
    url: str,
    *,
    counts: dict[str, int],
    failed_workers: int = 0,
) -> dict[str, Any]:
    """<outputs>/studies/<kind>.csv, .png, .svg and .json (atomic); returns the JSON summary.
    `counts`: this invocation's rows by origin (`invocation_counts`)."""
    from optuna.trial import TrialState

    rows = collect_rows(kind, params, study)
    out_dir = params.outputs / "studies"
    write_csv(out_dir / f"{kind.name}.csv", rows, STUDY_COLUMNS)
    points = list(dict.fromkeys(gp.point for gp in grid(kind, params)))
    fig = study_figure(kind, rows, points, study.study_name)  # a bare Figure: no pyplot state to close
    for fmt in ("png", "svg"):
        with atomic_path(out_dir / f"{kind.name}.{fmt}", suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    summary = summarize_points(rows)
    scored = [s for s in summary if s["mean_val_mAP"] is not None]
    best = max(scored, key=lambda s: s["mean_val_mAP"]) if scored else None
    all_pairs = [gp.pair for gp in grid(kind, params)]
    done = {(r["point"], r["seed"]) for r in rows}
    info = {
        "study": study.study_name,
        "kind": kind.name,
        "swept_key": kind.key,
        "objective": "val/mAP (%), maximised",
        "storage": display_url(url),
        "grid": {
            "points": list(dict.fromkeys(p for p, _ in all_pairs)),
            "seeds": list(dict.fromkeys(s for _, s in all_pairs)),
            "size": len(all_pairs),
        },
        "n_trials": len(trials),
        "n_complete": len(rows),
        "n_pruned_duplicates": sum(s == TrialState.PRUNED for s in states),
        "n_failed": sum(s == TrialState.FAIL for s in states),
        # this invocation: trained here / reused / trained elsewhere (the queue's history is in the csv)
        **{k: counts[k] for k in ORIGINS},
        "missing": [{"point": p, "seed": s} for p, s in all_pairs if (p, s) not in done],
        "failed_workers": failed_workers,
        "best": None
        if best is None
        else {
            "point": best["point"],
            "x": best["x"],
            "seeds": best["seeds"],
            "mean_val_mAP": best["mean_val_mAP"],
            "mean_test_mAP": best["mean_test_mAP"],
        },
        "points": summary,
        "files": {fmt: str(out_dir / f"{kind.name}.{fmt}") for fmt in ("csv", "png", "svg", "json")},
    }
    write_json(out_dir / f"{kind.name}.json", info)
    return info


def summary_table(info: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [f"{'point':>8}  {'seeds':>5}  {'mean val mAP':>12}  {'mean test mAP':>13}"]
    for s in info["points"]:
        lines.append(f"{s['point']:>8}  {len(s['seeds']):>5}  {f(s['mean_val_mAP']):>12}  {f(s['mean_test_mAP']):>13}")
    return "\n".join(lines)
