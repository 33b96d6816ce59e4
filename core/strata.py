"""Strata of an evaluation: the protocol's scores on the pairs where the sentence is needed and
on those where the class would do, and per disambiguating attribute type.

Per scored pair (a row of per_sample.csv, `core.results.STRATA_COLUMNS`):
- `distractor`: 1 if another instance of the referent's class is in any annotated frame of its
  video (`SplitStore.has_distractor`), 0 if not, None (an empty cell) when classes are unknown;
- `attribute`: the sentence's disambiguating attribute type (`SampleRef.attribute`), or None.
Both follow the pair's sample, i.e. its referent and its own sentence, also in the shuffled
control (where the text shown is another sample's).

`strata_metrics` summarises each non-empty stratum like a split (with its n):
"distractor", "no_distractor", then "attribute=<type>" in name order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.data.store import SplitStore
from core.scoring import summarize_rows


def pair_strata(store: SplitStore, sample: int) -> dict[str, int | str | None]:
    """The strata columns of the pairs of one sample of `store`."""
    d = store.has_distractor(sample)
    return {"distractor": None if d is None else int(d), "attribute": store.samples[sample].attribute}


def strata_of(row: Mapping[str, Any]) -> list[str]:
    """The strata a scored row belongs to (none when neither is known)."""
    out = []
    if row["distractor"] is not None:
        out.append("distractor" if row["distractor"] else "no_distractor")
    if row["attribute"]:
        out.append(f"attribute={row['attribute']}")
    return out


def strata_metrics(rows: Sequence[Mapping[str, Any]], jf: bool = False) -> dict[str, dict[str, float]]:
    """stratum -> the protocol's summary of its rows (`core.scoring.summarize_rows`: each row
    needs inter, union and the strata columns, and with `jf` sample, iou and f); only strata
    with rows appear."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        for name in strata_of(r):
            groups.setdefault(name, []).append(r)
    order = [n for n in ("distractor", "no_distractor") if n in groups] + sorted(
        n for n in groups if n.startswith("attribute=")
    )
    return {n: summarize_rows(groups[n], jf) for n in order}
