"""Table 3 by stratum: each variant's level per stratum and, per stratum, the full model against
the Baseline, counting seeds and test videos like Table 3 (reports.inference).

The strata of a pair are the per-sample table's `distractor` and `attribute` columns
(core.results.STRATA_COLUMNS; empty = unknown), as core.strata.strata_of names them:
"distractor" (another actor of the referent's class is in its video), "no_distractor", and
"attribute=<type>" (what the sentence singles the referent out by). The metrics: the protocol's
secondary and primary one (A2D: Mean IoU and mAP; J&F datasets: J and J&F), and where the table
has other_iou the grounding and committed shares (core.metrics.grounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.config import Params
from core.results import STRATA_COLUMNS
from reports.analysis import Comparison, contrast, levels, primary_metric, split_rows
from reports.inference import Estimate, within_rows
from reports.protocol import protocol
from reports.scores import EXPRESSION_SCORES, GROUNDED, run_table

GROUNDING, COMMITTED = GROUNDED


@dataclass
class StrataAnalysis:
    strata: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # in the page's order
    cells: dict[tuple[str, str, str], Estimate] = field(default_factory=dict)  # (stratum, variant, metric)
    units: dict[tuple[str, str], int] = field(default_factory=dict)  # (stratum, metric) -> units it counts
    seeds: int = 0
    tests: list[Comparison] = field(default_factory=list)  # full − Baseline per stratum (primary metric, grounding)
    columns: bool = True  # the per-sample table has the strata columns (older tables lack them)
    unlabelled: list[str] = field(default_factory=list)  # "variant seed s" of runs with no labelled pair

    @property
    def available(self) -> bool:
        return bool(self.cells)


def has_grounding(per_sample: pd.DataFrame) -> bool:
    """The per-sample table carries other_iou for some pair (tables of older evaluations do not)."""
    return "other_iou" in per_sample.columns and bool(per_sample["other_iou"].notna().any())


def stratum_masks(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """stratum -> which rows belong to it, in core.strata's order (distractor strata, then the
    attributes by name); only strata with rows."""
    distractor = pd.to_numeric(rows["distractor"], errors="coerce")
    attribute = rows["attribute"].where(rows["attribute"].notna() & (rows["attribute"].astype(str) != ""))
    masks = {"distractor": distractor == 1, "no_distractor": distractor == 0}
    masks |= {f"attribute={a}": attribute == a for a in sorted(attribute.dropna().astype(str).unique())}
    return {k: m for k, m in masks.items() if m.any()}


def unit_count(rows: pd.DataFrame, metric: str) -> int:
    """The units `metric` counts in one run's rows: pairs, expressions (J&F), or pairs whose frame
    holds another actor (grounding)."""
    if metric in GROUNDED:
        return int(rows["other_iou"].notna().sum())
    return int(rows["sample"].nunique()) if metric in EXPRESSION_SCORES else len(rows)


def analyze(params: Params, per_sample: pd.DataFrame, variants: list[str], base: str, name: str) -> StrataAnalysis:
    """Every variant's level per stratum on test, and `name` (the full model) − `base` (the Baseline)
    per stratum on the primary metric and grounding."""
    proto, conf = protocol(params), params.report.confidence
    out = StrataAnalysis()
    if any(c not in per_sample.columns for c in STRATA_COLUMNS):
        out.columns = False
        return out
    rows = split_rows(per_sample, "test")
    masks = stratum_masks(rows)
    labelled = rows[pd.concat(list(masks.values()), axis=1).any(axis=1)] if masks else rows.iloc[:0]
    done = set(labelled.groupby(["variant", "seed"]).groups)
    out.unlabelled = [f"{v} seed {s}" for v, s in rows.groupby(["variant", "seed"]).groups if (v, s) not in done]
    out.metrics = [proto.secondary, proto.primary, *(GROUNDED if has_grounding(rows) else ())]
    tested = {primary_metric(params, proto), GROUNDING}
    for stratum, mask in masks.items():
        sub = rows[mask]
        first = sub[(sub["variant"] == sub["variant"].iloc[0]) & (sub["seed"] == sub["seed"].iloc[0])]
        present = [v for v in variants if v in set(sub["variant"])]  # a run without labels has no stratum
        for metric in out.metrics:
            t = run_table(sub, metric, present)
            if t.empty:
                continue
            out.strata += [stratum] if stratum not in out.strata else []
            out.seeds = max(out.seeds, len(t.seeds))
            out.units[(stratum, metric)] = unit_count(first, metric)
            out.cells |= {(stratum, v, metric): e for v, e in levels(t, within_rows(t.y), conf).items()}
            if metric in tested and len(t.seeds) >= 2 and base != name and {base, name} <= set(present):
                out.tests.append(
                    Comparison("stratum", base, name, metric, "test", contrast(t, base, name, conf), scope=stratum)
                )
    return out
