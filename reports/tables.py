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

from core.bounds import share_of_headroom
from reports import paper
from reports.protocol import A2D, Protocol, short_label
from reports.stats import Interval, detectable_difference, mean_ci, paired_bootstrap, paired_t
from reports.variants import baseline, full, incremental_steps

DASH = "–"
PM = "±"
NA = "n/a"  # a number that cannot exist for this data (not a missing one, which is DASH)
POWER = 0.8  # the power the detectable differences are stated at
# bounds.json's bounds, as Table 3's reference rows
BOUND_ROWS = {"oracle": "oracle ceiling", "language_blind": "language-blind bound"}


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


def table3(
    results: pd.DataFrame,
    confidence: float,
    num: Numbers,
    bounds: dict[str, dict[str, float]] | None = None,
    proto: Protocol = A2D,
) -> Table:
    """Table 3 reproduced: the protocol's test metrics per variant (A2D: mAP / Overall IoU / Mean
    IoU; J&F datasets: J&F / J / F), ours (mean ± CI) vs the context numbers (A2D: the paper's
    rows; Ref-YouTube-VOS: another method's, on the full model's row); with `bounds` (bounds.json of
    the test split: 'oracle' / 'language_blind' -> metric -> %), the bounds as reference rows under
    the variants."""
    header = ["Variant", "seeds"]
    for m in proto.table3:
        header += [f"{proto.short(m)}\nours (± CI)", f"{proto.short(m)}\n{proto.context_label}"]
    t = Table(header)
    stats = {m: seed_intervals(results, f"test/{m}", confidence) for m in proto.table3}
    name = full(results)
    for v in dict.fromkeys(results["variant"]):
        row = [v, num.put(f"table3/{v}/n_seeds", stats[proto.primary][v].n)]
        for m in proto.table3:
            row.append(num.pm(f"table3/{v}/test/{m}", stats[m][v]))
            row.append(num.put(f"{proto.context_key}/{v}/{m}", proto.context(v, m, name)))
        t.rows.append(row)
    for b, label in BOUND_ROWS.items():
        if bounds is not None and b in bounds:
            row = [label, DASH]
            for m in proto.table3:
                row += [num.put(f"bounds/test/{b}/{m}", bounds[b].get(m)), DASH]
            t.rows.append(row)
    return t


def headroom_metrics(proto: Protocol = A2D) -> tuple[str, str]:
    """The metrics whose share of the headroom Table 3 states: the protocol's primary and secondary."""
    return proto.primary, proto.secondary


def headroom(results: pd.DataFrame, bounds: dict[str, dict[str, float]], num: Numbers, proto: Protocol = A2D) -> Table:
    """Per variant, the share of the headroom it closes on test (core.bounds.share_of_headroom of
    its mean over seeds against the bounds, in %) for the protocol's primary and secondary metric
    (A2D: mAP and Mean IoU; J&F datasets: J&F and J); n/a where a bound lacks the metric (no
    language-blind bound: data without class labels)."""
    metrics = headroom_metrics(proto)
    t = Table(["Variant", *(f"{proto.label(m)}\nheadroom closed (%)" for m in metrics)])
    blind, oracle = bounds.get("language_blind", {}), bounds.get("oracle", {})
    for v, g in results.groupby("variant", sort=False):
        row = [v]
        for m in metrics:
            if m in blind and m in oracle:
                share = share_of_headroom(float(g[f"test/{m}"].mean()), blind[m], oracle[m])
                row.append(num.put(f"headroom/{v}/{m}", 100 * share, digits=0))
            else:
                row.append(NA)
        t.rows.append(row)
    return t


def table3_precision(results: pd.DataFrame, confidence: float, num: Numbers, proto: Protocol = A2D) -> Table:
    """P@0.5..0.9 on test per variant (mean ± CI); the paper gives these for the full model only
    (on A2D: its row under the variants)."""
    ks = [m for m in paper.METRICS if m.startswith("P@")]
    t = Table(["Variant", "seeds", *ks])
    for v, g in results.groupby("variant", sort=False):
        row = [v, num.put(f"table3/{v}/n_seeds", len(g))]
        row += [num.pm(f"table3/{v}/test/{k}", mean_ci(g[f"test/{k}"].tolist(), confidence)) for k in ks]
        t.rows.append(row)
    if proto.cvls_paper:
        name = full(results)
        row = [f"paper {name} (Table 1)", DASH, *[num.put(f"paper/table1/{k}", paper.TABLE1_A2D[k]) for k in ks]]
        t.rows.append(row)
        t.bold_rows = (len(t.rows) - 1,)
    return t


def paired_scores(
    per_sample: pd.DataFrame,
    a: str,
    b: str,
    split: str = "test",
    score: str = "iou",
    unit: str = "pair",
    split_b: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, units) arrays (in %) of a per-sample `score` column ('iou', 'map': the sample's share
    of mAP, 'f', 'jf') averaged over each `unit` ('pair': one (frame, sentence) pair; 'sample': one
    expression, over its annotated frames) of variant a on `split` and variant b on `split_b`
    (default: the same split), on the same seeds and units. A split and its shuffled control share
    their units (a shuffled pair is the same frame and referent with another sample's sentence)."""

    def table(variant: str, sp: str) -> pd.DataFrame:
        ps = per_sample[(per_sample["split"] == sp) & (per_sample["variant"] == variant)]
        return ps.pivot_table(index="seed", columns=unit, values=score, aggfunc="mean")

    tables = [table(a, split), table(b, split_b or split)]
    seeds = tables[0].index.intersection(tables[1].index)
    pairs = tables[0].columns.intersection(tables[1].columns)
    ta, tb = tables[0].loc[seeds, pairs], tables[1].loc[seeds, pairs]
    keep = ~(ta.isna().any(axis=0) | tb.isna().any(axis=0))
    return 100 * ta.loc[:, keep].to_numpy(), 100 * tb.loc[:, keep].to_numpy()


def paired_units(
    per_sample: pd.DataFrame, a: str, b: str, metric: str, proto: Protocol = A2D, split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """`paired_scores` of the protocol's per-unit score of `metric` (A2D: per pair; J&F datasets:
    per expression, the mean over its annotated frames)."""
    return paired_scores(per_sample, a, b, split, proto.scores[metric], proto.unit)


def significance(
    results: pd.DataFrame,
    per_sample: pd.DataFrame,
    *,
    reps: int,
    confidence: float,
    num: Numbers,
    split: str = "test",
    proto: Protocol = A2D,
) -> Table:
    """Each incremental step: paired bootstrap over the test units of the secondary metric (A2D:
    Mean IoU over pairs; J&F datasets: J over expressions), averaged over seeds, and a paired t-test
    over seeds on the primary metric (mAP; J&F); on A2D with the paper's mAP step for reference."""
    ci = f"{confidence:.0%} CI"
    sec, pri = proto.secondary, proto.primary
    units = proto.units(2)
    header = [
        "Step",
        f"Δ {proto.label(sec)}\n(pp) [{ci}]",
        "p\nbootstrap",
        f"{units} ×\nseeds",
        f"Δ {proto.short(pri)}\n(pp) [{ci}]",
        "p\nt-test",
        "seeds",
    ]
    t = Table(header + ([f"paper\nΔ {proto.short(pri)}"] if proto.cvls_paper else []))
    for i, (a, b) in enumerate(incremental_steps(results)):
        key = f"significance/{a}->{b}"
        ia, ib = paired_units(per_sample, a, b, sec, proto, split)
        boot = paired_bootstrap(ia, ib, reps=reps, confidence=confidence, seed=i) if ia.size else None
        ma = results[results["variant"] == a].set_index("seed")[f"{split}/{pri}"]
        mb = results[results["variant"] == b].set_index("seed")[f"{split}/{pri}"]
        seeds = ma.index.intersection(mb.index)
        tt = paired_t(ma.loc[seeds].to_numpy(), mb.loc[seeds].to_numpy(), confidence)
        row = [f"{a} → {b}"]
        if boot is None:
            row += [DASH, DASH, "0"]
        else:
            row += [
                f"{num.put(f'{key}/{sec}/diff', boot.diff, signed=True)} "
                f"{num.interval(f'{key}/{sec}', boot.lo, boot.hi)}",
                num.p(f"{key}/{sec}/p", boot.p),
                f"{num.put(f'{key}/{units}', ia.shape[1])} × {ia.shape[0]}",
            ]
        diff = num.put(f"{key}/{pri}/diff", tt.diff, signed=True)
        interval = num.interval(f"{key}/{pri}", tt.lo, tt.hi)
        row += [
            diff if interval == DASH else f"{diff} {interval}",
            num.p(f"{key}/{pri}/p", tt.p),
            num.put(key + "/seeds", tt.n),
        ]
        if proto.cvls_paper:
            pa, pb = paper.TABLE3.get(a, {}).get(pri), paper.TABLE3.get(b, {}).get(pri)
            step = None if pa is None or pb is None else pb - pa
            row.append(num.put(f"paper/step/{a}->{b}/{pri}", step, signed=True))
        t.rows.append(row)
    return t


def shuffled_control(
    results: pd.DataFrame,
    per_sample: pd.DataFrame,
    main: dict,
    *,
    reps: int,
    confidence: float,
    num: Numbers,
    proto: Protocol = A2D,
) -> Table:
    """Each variant's test score with its own sentences vs the shuffled-sentence control (mean over
    seeds of the primary metric), and the paired test of the secondary metric (A2D: Mean IoU over
    pairs; J&F datasets: J over expressions): test minus shuffled on the same units and seeds,
    paired bootstrap as on the significance page. The main run's row: its metrics only."""
    pri, sec = proto.primary, proto.secondary
    label, ci, units = short_label(pri), f"{confidence:.0%} CI", proto.units(2)
    t = Table(
        [
            "variant",
            f"test {label}",
            f"shuffled {label}",
            "drop (pp)",
            f"Δ {proto.short(sec)} test −\nshuffled (pp) [{ci}]",
            "p\nbootstrap",
            f"{units} ×\nseeds",
        ]
    )

    def scores(name: str, test: float, shuffled: float) -> list[str]:
        key = f"shuffled/{name}"
        return [
            name,
            num.put(f"{key}/test_{pri}", test),
            num.put(f"{key}/shuffled_{pri}", shuffled),
            num.put(key + "/drop", test - shuffled),
        ]

    for i, (v, g) in enumerate(results.groupby("variant", sort=False)):
        key = f"shuffled/{v}"
        row = scores(v, g[f"test/{pri}"].mean(), g[f"test_shuffled/{pri}"].mean())
        shuffled, own = paired_scores(per_sample, v, v, "test_shuffled", proto.scores[sec], proto.unit, split_b="test")
        if shuffled.size:
            boot = paired_bootstrap(shuffled, own, reps=reps, confidence=confidence, seed=i)
            diff = num.put(f"{key}/{sec}/diff", boot.diff, signed=True)
            row += [
                f"{diff} {num.interval(f'{key}/{sec}', boot.lo, boot.hi)}",
                num.p(f"{key}/{sec}/p", boot.p),
                f"{num.put(f'{key}/{units}', shuffled.shape[1])} × {shuffled.shape[0]}",
            ]
        else:
            row += [DASH, DASH, "0"]
        t.rows.append(row)
    a, b = (main.get(s, {}).get(pri, float("nan")) for s in ("test", "test_shuffled"))
    t.rows.append(scores("main run", a, b) + [DASH] * 3)
    return t


def detectable_differences(
    results: pd.DataFrame,
    per_sample: pd.DataFrame,
    confidence: float,
    num: Numbers,
    split: str = "test",
    proto: Protocol = A2D,
) -> str:
    """The power line under Table 3: the smallest secondary- and primary-metric difference (pp; A2D:
    Mean IoU and mAP, J&F datasets: J and J&F) that a paired test over the units (pairs; expressions)
    like the significance page's bootstrap detects at `POWER`, two-sided at alpha = 1 - confidence,
    from the measured variance of each variant paired with Baseline (stats.detectable_difference of
    the seed-averaged per-unit differences); the median over those pairings, so one number stands
    for the table."""
    base, alpha = baseline(results), 1 - confidence
    sec, pri = proto.secondary, proto.primary
    found = []  # (mde secondary, mde primary, units, seeds) per variant paired with the baseline
    for v in [v for v in dict.fromkeys(results["variant"]) if v != base]:
        (ia, ib), (ma, mb) = (paired_units(per_sample, base, v, m, proto, split) for m in (sec, pri))
        if ia.shape[1] >= 2:
            d_sec, d_pri = (ib - ia).mean(axis=0), (mb - ma).mean(axis=0)
            found.append(
                (
                    detectable_difference(d_sec, alpha=alpha, power=POWER),
                    detectable_difference(d_pri, alpha=alpha, power=POWER),
                    *ia.shape[::-1],
                )
            )
    head = f"Smallest detectable difference ({POWER:.0%} power, α = {alpha:g} two-sided"
    units = proto.units(2)
    if not found:
        return head + f"): {DASH} (fewer than 2 {split} {units} shared with {base})."
    sec_mde, pri_mde = (float(np.median([f[i] for f in found])) for i in (0, 1))
    n_units, seeds = min(f[2] for f in found), min(f[3] for f in found)
    if proto.jf:
        score = (
            f"an expression's {proto.label(pri)} score is the mean over its annotated frames of (J + F) / 2, its "
            f"{proto.label(sec)} score the mean of J"
        )
    else:
        score = "a pair's mAP score is the share of the thresholds 0.5:0.05:0.95 its IoU reaches"
    return (
        f"{head}, paired over {num.put(f'power/{units}', n_units)} {split} {units} × "
        f"{num.put('power/seeds', seeds)} seeds): {proto.label(sec)} {num.put(f'power/{sec}', sec_mde)} pp, "
        f"{proto.short(pri)} {num.put(f'power/{pri}', pri_mde)} pp. "
        f"Rule: the median over the variants paired with {base} ({len(found)}) of "
        f"(z_{1 - alpha / 2:g} + z_{POWER:g}) · sd(d) / √{units}, d = a{'n' if proto.jf else ''} "
        f"{proto.unit_name}'s score difference averaged over the seeds (normal approximation; {score}). "
        "Smaller true differences between rows are likely to go undetected. "
        + seed_detectable_differences(results, alpha, num, split, proto)
    )


def seed_detectable_differences(
    results: pd.DataFrame, alpha: float, num: Numbers, split: str = "test", proto: Protocol = A2D
) -> str:
    """The same power over the seeds: the pairing above holds the trained models fixed, so it
    leaves out how much a row moves from one training seed to the next. Here d = a variant's
    score minus Baseline's on the same seed (one per seed), q = Student-t with seeds - 1 degrees
    of freedom (stats.detectable_difference, t=True); the median over the variants."""
    base = baseline(results)
    sec, pri = proto.secondary, proto.primary
    by_seed = results.set_index(["variant", "seed"])
    found = []
    for v in [v for v in dict.fromkeys(results["variant"]) if v != base]:
        seeds = sorted(
            set(results.loc[results["variant"] == v, "seed"]) & set(results.loc[results["variant"] == base, "seed"])
        )
        if len(seeds) >= 2:
            found.append(
                [
                    detectable_difference(
                        [by_seed.loc[(v, s), f"{split}/{m}"] - by_seed.loc[(base, s), f"{split}/{m}"] for s in seeds],
                        alpha=alpha,
                        power=POWER,
                        t=True,
                    )
                    for m in (sec, pri)
                ]
            )
    if not found:
        return f"Over the seeds: {DASH} (fewer than 2 seeds shared with {base})."
    sec_mde, pri_mde = (float(np.median([f[i] for f in found])) for i in (0, 1))
    return (
        f"Over the seeds (a row's score minus {base}'s on the same seed, paired t, which includes how much "
        f"a row moves between training seeds): {proto.label(sec)} {num.put(f'power/seed/{sec}', sec_mde)} pp, "
        f"{proto.short(pri)} {num.put(f'power/seed/{pri}', pri_mde)} pp."
    )


def main_results(metrics: dict[str, dict[str, float]], num: Numbers, proto: Protocol = A2D) -> Table:
    """The main run (full model, params.yaml as is): on A2D vs the paper's CVLS rows of Tables 1-2
    (test, zero-shot J-HMDB); on the J&F datasets its test and val J, F, J&F and the A2D-style
    metrics vs the context numbers (another method's, where there are any)."""
    n = lambda d: int(d["n"]) if "n" in d else None  # noqa: E731
    if proto.cvls_paper:
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
        t.rows.append(["samples (n)", num.put("main/test/n", n(test)), DASH, num.put("main/jhmdb/n", n(jhmdb)), DASH])
        return t
    t = Table(["Metric (%)", f"ours\n{proto.test_short}", "ours\nval", proto.context_label])
    test, val = metrics.get("test", {}), metrics.get("val", {})
    for m in proto.main_metrics:
        t.rows.append(
            [
                proto.label(m),
                num.put(f"main/test/{m}", test.get(m)),
                num.put(f"main/val/{m}", val.get(m)),
                num.put(f"context/main/{m}", proto.reference.get(m)),
            ]
        )
    e = lambda d: int(d["n_expressions"]) if "n_expressions" in d else None  # noqa: E731
    t.rows.append(["pairs (n)", num.put("main/test/n", n(test)), num.put("main/val/n", n(val)), DASH])
    ne = [num.put(f"main/{s}/n_expressions", e(d)) for s, d in (("test", test), ("val", val))]
    t.rows.append(["expressions (n)", *ne, DASH])
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


def sensitivity(table: pd.DataFrame, num: Numbers) -> Table:
    """The reconstruction-sensitivity table (ablations/sensitivity.py's table.csv): per reading and
    variant, test mAP and Mean IoU over seeds and the mAP difference from the reading's Baseline."""
    t = Table(["Reading", "Variant", "seeds", "test mAP", "Δ mAP vs Baseline", "Mean IoU"])
    for r in table.to_dict("records"):
        key = f"sensitivity/{r['reading']}/{r['variant']}"
        n = int(r["seeds"])
        t.rows.append(
            [
                r["reading"],
                r["variant"],
                num.put(key + "/n_seeds", n),
                num.pm(key + "/mAP", Interval(r["test/mAP"], r["test/mAP ±"], n)),
                num.pm(key + "/delta_mAP", Interval(r["Δ test/mAP"], r["Δ test/mAP ±"], n)),
                num.pm(key + "/mean_iou", Interval(r["test/mean_iou"], r["test/mean_iou ±"], n)),
            ]
        )
    return t
