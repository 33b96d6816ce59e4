"""Which ablation variant plays which role, from the component flags in the result table.

A variant is its set of components (ccl, rhic, lcf). The baseline has none, the full CVLS
model has all three, and an incremental step adds exactly one component to another variant:
with the default variants that gives Baseline->CCL, CCL->CCL+RHIC, CCL->CCL+LCF,
CCL+RHIC->CCL+RHIC+LCF and CCL+LCF->CCL+RHIC+LCF.
"""

from __future__ import annotations

import pandas as pd

COMPONENTS = ("ccl", "rhic", "lcf")


def components(results: pd.DataFrame) -> dict[str, frozenset[str]]:
    """variant -> its enabled components, in result-table order."""
    out: dict[str, frozenset[str]] = {}
    for _, row in results.drop_duplicates("variant").iterrows():
        out[row["variant"]] = frozenset(c for c in COMPONENTS if bool(row[c]))
    return out


def baseline(results: pd.DataFrame) -> str:
    """The variant with no component (else the first one)."""
    comp = components(results)
    return next((v for v, c in comp.items() if not c), next(iter(comp)))


def full(results: pd.DataFrame) -> str:
    """The variant with every component (else the last one)."""
    comp = components(results)
    return next((v for v, c in comp.items() if c == frozenset(COMPONENTS)), list(comp)[-1])


def incremental_steps(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(from, to) pairs where `to` adds exactly one component to `from`, in table order."""
    comp = components(results)
    return [(a, b) for b, cb in comp.items() for a, ca in comp.items() if ca < cb and len(cb - ca) == 1]
