"""reports/analysis.py and reports/scores.py: per-sample rows -> tests, families and verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from core.config import load_params
from core.metrics import grounding, summarize
from core.vos_metrics import summarize_pairs
from reports.analysis import EXPLORATORY, PRIMARY, Comparison, correct, table3_tests
from reports.inference import Estimate
from reports.inputs import with_sample_map
from reports.scores import run_table

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "Baseline": (0, 0, 0),
    "CCL": (1, 0, 0),
    "CCL+RHIC": (1, 1, 0),
    "CCL+LCF": (1, 0, 1),
    "CCL+RHIC+LCF": (1, 1, 1),
}


def params(*overrides: str):
    return load_params(ROOT / "params.yaml", list(overrides))


def samples(
    rng: np.random.Generator, variants=("Baseline", "CCL"), seeds=(0, 1), videos=5, pairs=(1, 3)
) -> pd.DataFrame:
    """Per-sample rows as evaluation writes them: each video with a random number of pairs."""
    per_video = rng.integers(pairs[0], pairs[1] + 1, videos)
    rows = []
    for v in variants:
        for s in seeds:
            pair = 0
            for vid, n in enumerate(per_video):
                for k in range(n):
                    union = int(rng.integers(0, 400)) if pair % 7 else 0  # some empty pairs (IoU 1)
                    inter = int(rng.integers(0, union + 1))
                    other = None if pair % 3 == 0 else float(rng.choice([0.0, rng.uniform(0, 1)]))
                    rows.append(
                        {
                            "variant": v,
                            "seed": s,
                            "split": "test",
                            "pair": pair,
                            "sample": f"{vid}-{k // 2}",
                            "video": f"v{vid}",
                            "inter": inter,
                            "union": union,
                            "iou": 1.0 if union == 0 else inter / union,
                            "f": float(rng.uniform()),
                            "other_iou": other,
                        }
                    )
                    pair += 1
    return with_sample_map(pd.DataFrame(rows))


@pytest.mark.parametrize("metric", ["mAP", "overall_iou", "mean_iou", "P@0.5", "P@0.7", "P@0.9"])
def test_a_runs_pseudo_values_average_to_its_split_metric(metric):
    rows = samples(np.random.default_rng(0))
    t = run_table(rows, metric)
    for (v, s), g in rows.groupby(["variant", "seed"]):
        expected = summarize(list(g["inter"]), list(g["union"]))[metric]
        assert t.y[t.rows.index(v), t.seeds.index(s)] == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("metric", ["J&F", "J", "F"])
def test_expression_metrics_average_over_expressions_like_the_davis_protocol(metric):
    rows = samples(np.random.default_rng(1))
    t = run_table(rows, metric)
    for (v, s), g in rows.groupby(["variant", "seed"]):
        expected = summarize_pairs(g.to_dict("records"))[metric]
        assert t.y[t.rows.index(v), t.seeds.index(s)] == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("metric", ["grounding", "committed"])
def test_grounding_shares_are_over_the_pairs_with_another_actor(metric):
    rows = samples(np.random.default_rng(2), videos=12)
    t = run_table(rows, metric)
    for (v, s), g in rows.groupby(["variant", "seed"]):
        other = [None if pd.isna(x) else x for x in g["other_iou"]]
        expected = grounding(list(g["iou"]), other)[metric]
        assert t.y[t.rows.index(v), t.seeds.index(s)] == pytest.approx(expected, abs=0.05)


def one_pair_table(d: np.ndarray) -> pd.DataFrame:
    """Baseline at IoU 0.5 on one pair per video; CCL at 0.5 + d / 100 (d: seeds x videos, pp)."""
    rows = []
    for v, shift in (("Baseline", np.zeros_like(d)), ("CCL", d)):
        for s in range(d.shape[0]):
            for vid in range(d.shape[1]):
                iou = 0.5 + shift[s, vid] / 100
                rows.append(
                    {
                        "variant": v,
                        "seed": s,
                        "split": "test",
                        "pair": vid,
                        "sample": vid,
                        "video": f"v{vid}",
                        "inter": round(iou * 1000),
                        "union": 1000,
                        "iou": iou,
                    }
                )
    return with_sample_map(pd.DataFrame(rows))


def test_a_step_from_per_sample_rows_is_the_hand_computed_interval():
    # the table of tests/test_inference.py: D = [[1, 2, 6], [3, 2, 10]] pp, se^2 = 1 + 22/6 (two rows: the
    # pooled seed variance is the variance of the seed-level differences)
    d = np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 10.0]])
    rows = one_pair_table(d)
    results = pd.DataFrame({"variant": ["Baseline", "CCL"], "ccl": [False, True], "rhic": False, "lcf": False})
    p = params()
    tables = {m: run_table(rows, m, ["Baseline", "CCL"]) for m in ("mAP", "overall_iou", "mean_iou")}
    step = next(t for t in table3_tests(results, tables, p, p_proto()) if t.metric == "mean_iou")
    se2 = 1 + 22 / 6
    df = se2**2 / (1 + (24 / 6) ** 2 / 2 + (2 / 6) ** 2 / 2)
    assert (step.kind, step.a, step.b) == ("step", "Baseline", "CCL")
    assert step.est.value == pytest.approx(4.0) and step.est.se == pytest.approx(math.sqrt(se2))
    assert step.est.hi - step.est.value == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(se2))
    mAP = next(t for t in table3_tests(results, tables, p, p_proto()) if t.metric == "mAP")
    assert mAP.family == PRIMARY and step.family == EXPLORATORY


def p_proto():
    from reports.protocol import A2D

    return A2D


def test_the_primary_family_is_the_steps_or_the_rows_against_the_baseline():
    rng = np.random.default_rng(4)
    rows = samples(rng, variants=tuple(VARIANTS), seeds=(0, 1, 2), videos=8)
    results = pd.DataFrame(
        [{"variant": v, "ccl": bool(c), "rhic": bool(r), "lcf": bool(lc)} for v, (c, r, lc) in VARIANTS.items()]
    )
    tables = {m: run_table(rows, m, list(VARIANTS)) for m in ("mAP", "overall_iou", "mean_iou")}
    steps = table3_tests(results, tables, params(), p_proto())
    primary = [(t.a, t.b) for t in steps if t.family == PRIMARY]
    assert primary == [
        ("Baseline", "CCL"),
        ("CCL", "CCL+RHIC"),
        ("CCL", "CCL+LCF"),
        ("CCL+RHIC", "CCL+RHIC+LCF"),
        ("CCL+LCF", "CCL+RHIC+LCF"),
    ]
    assert {t.metric for t in steps if t.family == PRIMARY} == {"mAP"}
    assert len(steps) == 3 * 8  # 5 steps + 3 more rows vs Baseline, each once, on 3 metrics
    vs = table3_tests(
        results, tables, params("report.primary=vs_baseline", "report.primary_metric=mean_iou"), p_proto()
    )
    assert [(t.a, t.b) for t in vs if t.family == PRIMARY] == [("Baseline", v) for v in list(VARIANTS)[1:]]
    assert {t.metric for t in vs if t.family == PRIMARY} == {"mean_iou"}


def fake(p: float, family: str, value: float = 1.0) -> Comparison:
    return Comparison(
        "step", "a", "b", "mAP", "test", Estimate(value, 1.0, 8.0, -1, 1, p, 0.5, 0.5, 3, 10), family=family
    )


def test_holm_on_the_primary_family_and_bh_on_the_rest_match_statsmodels():
    rng = np.random.default_rng(5)
    for _ in range(4):  # statsmodels' Holm runs gc.collect() on every call: seconds in a test process
        ps = rng.uniform(0, 1, 17) ** 3
        fam = [PRIMARY] * 5 + [EXPLORATORY] * 12
        ps[rng.integers(0, 17)] = math.nan  # a test without a p (no seed variance) is left out
        out = correct([fake(p, f) for p, f in zip(ps, fam)], 0.05, 0.8)
        for family, method in ((PRIMARY, "holm"), (EXPLORATORY, "fdr_bh")):
            idx = [i for i, f in enumerate(fam) if f == family and not math.isnan(ps[i])]
            expected = multipletests(ps[idx], alpha=0.05, method=method)[1]
            assert np.allclose([out[i].p_adj for i in idx], expected)
        nan = [t for p, t in zip(ps, out) if math.isnan(p)]
        assert all(math.isnan(t.p_adj) for t in nan)
    primary = [t for t in out if t.family == PRIMARY and not math.isnan(t.p_adj)]
    assert all(t.level == pytest.approx(0.05 / len(primary)) for t in primary)


def test_verdicts_read_the_adjusted_p_and_the_sign():
    helps, hurts, none = (
        correct([fake(p, PRIMARY, v)], 0.05, 0.8)[0] for p, v in ((1e-4, 2.0), (1e-4, -2.0), (0.2, 2.0))
    )
    assert (helps.verdict(0.05), hurts.verdict(0.05), none.verdict(0.05)) == ("helps", "hurts", "no evidence")
    shuffled = correct([Comparison("shuffled", "s", "v", "mAP", "test", fake(1e-6, EXPLORATORY).est)], 0.05, 0.8)[0]
    assert shuffled.verdict(0.05) == "higher"


def test_an_unknown_primary_metric_for_the_dataset_is_a_one_line_params_error():
    from core.errors import ParamsError

    with pytest.raises(ParamsError, match="report.primary_metric: 'J&F' is not a Table-3 metric of data.dataset 'a2d'"):
        params("report.primary_metric=J&F")
