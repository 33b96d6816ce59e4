"""The report's tables as text cells, each number recorded under a key exactly as printed.

`Numbers` formats every number that goes into a table and remembers it, so report_numbers.json
holds the same values the PDF shows (value == float(text)), and tests can check one against the
other and against the result tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports import paper
from reports.stats import Interval, mean_ci, paired_bootstrap, paired_t
from reports.variants import full, incremental_steps

DASH = "–"
PM = "±"


class Numbers:
    """Formats numbers for the tables and records them: key -> {'value', 'text'}."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put(self, key: str, value: float | int | None, digits: int = 1, signed: bool = False) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            self.items[key] = {"value": None, "text": DASH}
            return DASH
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            text = str(int(value))
        else:
            text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
            if float(text) == 0:
                text = f"{0:.{digits}f}"  # no '-0.0' / '+0.0'
        self.items[key] = {"value": float(text), "text": text}
        return text

    def pm(self, key: str, iv: Interval, digits: int = 1) -> str:
        """'mean ± half' (mean alone with one seed); records key/mean and key/ci."""
        mean = self.put(f"{key}/mean", iv.mean, digits)
        half = self.put(f"{key}/ci", iv.half, digits)
        return mean if half == DASH else f"{mean} {PM} {half}"

    def p(self, key: str, p: float) -> str:
        """p-values: three decimals, scientific notation below 0.001."""
        if not math.isfinite(p):
            return self.put(key, None)
        if p >= 0.001:
            return self.put(key, p, 3)
        text = f"{p:.1e}"
        self.items[key] = {"value": float(text), "text": text}
        return text

    def interval(self, key: str, lo: float, hi: float, digits: int = 1) -> str:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return DASH
        return f"[{self.put(key + '/lo', lo, digits, signed=True)}, {self.put(key + '/hi', hi, digits, signed=True)}]"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    bold_rows: tuple[int, ...] = ()  # row indices to emphasise (e.g. the paper's row)


def seed_intervals(results: pd.DataFrame, column: str, confidence: float) -> dict[str, Interval]:
    """variant -> mean ± t-interval of `column` over its seeds."""
    return {v: mean_ci(g[column].tolist(), confidence) for v, g in results.groupby("variant", sort=False)}


def table3(results: pd.DataFrame, confidence: float, num: Numbers) -> Table:
    """Table 3 reproduced: test mAP / Overall IoU / Mean IoU per variant, ours (mean ± CI) vs paper."""
    header = ["Variant", "seeds"]
    for m in paper.TABLE3_METRICS:
        label = paper.METRIC_LABELS[m].replace(" 0.5:0.95", "")
        header += [f"{label}\nours (± CI)", f"{label}\npaper"]
    t = Table(header)
    stats = {m: seed_intervals(results, f"test/{m}", confidence) for m in paper.TABLE3_METRICS}
    for v in dict.fromkeys(results["variant"]):
        row = [v, num.put(f"table3/{v}/n_seeds", stats["mAP"][v].n)]
        for m in paper.TABLE3_METRICS:
            row.append(num.pm(f"table3/{v}/test/{m}", stats[m][v]))
            row.append(num.put(f"paper/table3/{v}/{m}", paper.TABLE3.get(v, {}).get(m)))
        t.rows.append(row)
    return t


def table3_precision(results: pd.DataFrame, confidence: float, num: Numbers) -> Table:
    """P@0.5..0.9 on test per variant (mean ± CI); the paper gives these for the full model only."""
    ks = [m for m in paper.METRICS if m.startswith("P@")]
    t = Table(["Variant", "seeds", *ks])
    for v, g in results.groupby("variant", sort=False):
        row = [v, num.put(f"table3/{v}/n_seeds", len(g))]
        row += [num.pm(f"table3/{v}/test/{k}", mean_ci(g[f"test/{k}"].tolist(), confidence)) for k in ks]
        t.rows.append(row)
    name = full(results)
    t.rows.append([f"paper {name} (Table 1)", DASH, *[num.put(f"paper/table1/{k}", paper.TABLE1_A2D[k]) for k in ks]])
    t.bold_rows = (len(t.rows) - 1,)
    return t


def paired_iou(per_sample: pd.DataFrame, a: str, b: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(seeds, samples) IoU arrays (in %) of variants a and b on the same seeds and sample pairs."""
    ps = per_sample[per_sample["split"] == split]
    tables = {
        v: ps[ps["variant"] == v].pivot_table(index="seed", columns="pair", values="iou", aggfunc="mean")
        for v in (a, b)
    }
    seeds = tables[a].index.intersection(tables[b].index)
    pairs = tables[a].columns.intersection(tables[b].columns)
    ta, tb = tables[a].loc[seeds, pairs], tables[b].loc[seeds, pairs]
    keep = ~(ta.isna().any(axis=0) | tb.isna().any(axis=0))
    return 100 * ta.loc[:, keep].to_numpy(), 100 * tb.loc[:, keep].to_numpy()


def significance(
    results: pd.DataFrame, per_sample: pd.DataFrame, *, reps: int, confidence: float, num: Numbers, split: str = "test"
) -> Table:
    """Each incremental step: paired bootstrap over test samples (mean IoU, averaged over seeds)
    and a paired t-test over seeds on mAP; with the paper's mAP step for reference."""
    ci = f"{confidence:.0%} CI"
    t = Table(
        [
            "Step",
            f"Δ Mean IoU\n(pp) [{ci}]",
            "p\nbootstrap",
            "pairs ×\nseeds",
            f"Δ mAP\n(pp) [{ci}]",
            "p\nt-test",
            "seeds",
            "paper\nΔ mAP",
        ]
    )
    for i, (a, b) in enumerate(incremental_steps(results)):
        key = f"significance/{a}->{b}"
        ia, ib = paired_iou(per_sample, a, b, split)
        boot = paired_bootstrap(ia, ib, reps=reps, confidence=confidence, seed=i) if ia.size else None
        ma = results[results["variant"] == a].set_index("seed")[f"{split}/mAP"]
        mb = results[results["variant"] == b].set_index("seed")[f"{split}/mAP"]
        seeds = ma.index.intersection(mb.index)
        tt = paired_t(ma.loc[seeds].to_numpy(), mb.loc[seeds].to_numpy(), confidence)
        pa, pb = paper.TABLE3.get(a, {}).get("mAP"), paper.TABLE3.get(b, {}).get("mAP")
        row = [f"{a} → {b}"]
        if boot is None:
            row += [DASH, DASH, "0"]
        else:
            row += [
                f"{num.put(key + '/mean_iou/diff', boot.diff, signed=True)} "
                f"{num.interval(key + '/mean_iou', boot.lo, boot.hi)}",
                num.p(key + "/mean_iou/p", boot.p),
                f"{num.put(key + '/pairs', ia.shape[1])} × {ia.shape[0]}",
            ]
        diff = num.put(key + "/mAP/diff", tt.diff, signed=True)
        interval = num.interval(key + "/mAP", tt.lo, tt.hi)
        row += [
            diff if interval == DASH else f"{diff} {interval}",
            num.p(key + "/mAP/p", tt.p),
            num.put(key + "/seeds", tt.n),
            num.put(f"paper/step/{a}->{b}/mAP", None if pa is None or pb is None else pb - pa, signed=True),
        ]
        t.rows.append(row)
    return t


def main_results(metrics: dict[str, dict[str, float]], num: Numbers) -> Table:
    """The main run (full model, params.yaml as is) vs the paper's CVLS rows of Tables 1-2."""
    t = Table(
        [
            "Metric (%)",
            "ours\nA2D-format test",
            "paper Table 1\nA2D Sentences",
            "ours J-HMDB-format\n(zero-shot)",
            "paper Table 2\nJ-HMDB Sentences",
        ]
    )
    test, jhmdb = metrics.get("test", {}), metrics.get("jhmdb", {})
    for m in paper.METRICS:
        t.rows.append(
            [
                paper.METRIC_LABELS[m],
                num.put(f"main/test/{m}", test.get(m)),
                num.put(f"paper/table1/{m}", paper.TABLE1_A2D[m]),
                num.put(f"main/jhmdb/{m}", jhmdb.get(m)),
                num.put(f"paper/table2/{m}", paper.TABLE2_JHMDB[m]),
            ]
        )
    n = lambda d: int(d["n"]) if "n" in d else None  # noqa: E731
    t.rows.append(["samples (n)", num.put("main/test/n", n(test)), DASH, num.put("main/jhmdb/n", n(jhmdb)), DASH])
    return t


def dataset_counts(processed: dict[str, Any], num: Numbers) -> Table:
    cols = ("videos", "sentences", "frames", "eval_pairs")
    t = Table(["split", *cols])
    splits = processed.get("splits", {})
    order = [s for s in ("train", "val", "test", "jhmdb") if s in splits] + sorted(
        set(splits) - {"train", "val", "test", "jhmdb"}
    )
    for split, c in ((s, splits[s]) for s in order):
        t.rows.append([split, *[num.put(f"dataset/{split}/{k}", c.get(k)) for k in cols]])
    return t


def skipped_counts(processed: dict[str, Any], num: Numbers) -> Table:
    t = Table(["skipped (reason)", "count", "example"])
    for reason, info in sorted(processed.get("skipped", {}).items()):
        example = (info.get("examples") or [DASH])[0]
        t.rows.append([reason, num.put(f"skipped/{reason}", info.get("count", 0)), str(example)[:60]])
    if not t.rows:
        t.rows.append(["none", num.put("skipped/total", 0), DASH])
    return t
