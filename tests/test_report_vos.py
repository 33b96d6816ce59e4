"""reports/ on the J&F datasets (data.dataset ytvos / mevis): the report in J, F and J&F.

The fixture writes every input the report reads as evaluation writes it on those datasets:
per-sample rows with the boundary F in the `f` column, an expression ('sample') over several
annotated frames (uneven counts), metrics.json / results.csv with J, F and J&F (core.vos_metrics),
no J-HMDB split, and bounds.json whose language-blind bound has no J&F.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.config import Params
from core.metrics import summarize
from core.results import METRIC_KEYS, SPLITS
from core.strata import strata_metrics
from core.vos_metrics import summarize_pairs
from reports import paper
from reports.protocol import A2D, MEVIS, YTVOS
from reports.stats import detectable_difference, mean_ci
from tests.test_report import (
    BLIND,
    ORACLE,
    _labels,
    _qualitative_png,
    _write_csv,
    make_params,
    pdf_text,
    study_points,
)

EFFECT = {"Baseline": 0.0, "CCL": 0.06, "CCL+RHIC": 0.075, "CCL+LCF": 0.09, "CCL+RHIC+LCF": 0.10}
EXPRESSIONS = {"val": 12, "test": 24, "test_shuffled": 24}  # expressions per split (no jhmdb on VOS)
FRAMES = (1, 2, 3, 5)  # annotated frames of expression e: FRAMES[e % 4] (uneven on purpose)
VOS_SPLITS = ("val", "test", "test_shuffled")
ORACLE_JF = ORACLE | {"J": 91.0, "F": 87.0, "J&F": 89.0}
BLIND_JF = BLIND | {"J": 40.0, "F": 30.0}  # no language-blind J&F: headroom n/a there


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _vos_run(rng: np.random.Generator, bases: dict[str, np.ndarray], effect: float) -> tuple[list[dict], dict]:
    """One evaluated run on a J&F dataset: per-sample rows (J = iou, F = f, per frame) and metrics
    per split as evaluation summarises them (core.metrics.summarize + core.vos_metrics.summarize_pairs)."""
    rows, metrics = [], {}
    for split in VOS_SPLITS:
        shift = effect - (0.35 if split == "test_shuffled" else 0.0)
        split_rows = []
        for e, base in enumerate(bases[split]):
            for k in range(FRAMES[e % 4]):
                iou = float(np.clip(base + shift + rng.normal(0, 0.08), 0, 1))
                union = int(rng.integers(200, 3000))
                inter = int(round(iou * union))
                f = float(np.clip(0.9 * inter / union + 0.05 + rng.normal(0, 0.05), 0, 1))
                pair = len(split_rows)
                split_rows.append(
                    {"split": split, "pair": pair, "sample": e, "video": f"v{e // 3:03d}", "frame": k}
                    | {"inter": inter, "union": union, "iou": inter / union, "f": f, **_labels(e)}
                )
        metrics[split] = summarize([r["inter"] for r in split_rows], [r["union"] for r in split_rows])
        metrics[split] |= summarize_pairs(split_rows)
        rows += split_rows
    return rows, metrics


def _metric_cols(metrics: dict) -> dict:
    return {f"{s}/{k}": metrics.get(s, {}).get(k, math.nan) for s in SPLITS for k in METRIC_KEYS}


def _write_run_eval(folder: Path, rows: list[dict]) -> None:
    _write_csv(folder / "per_sample.csv", [{**r, "text": "the red dog on the left"} for r in rows])
    bounds = {"test": {"oracle": ORACLE_JF, "language_blind": BLIND_JF}}
    (folder / "bounds.json").write_text(json.dumps(bounds))
    test = [{**r, "distractor": int(r["distractor"])} for r in rows if r["split"] == "test"]
    (folder / "strata.json").write_text(json.dumps({"test": strata_metrics(test, jf=True)}))


def write_vos_outputs(params: Params, seed: int = 0) -> None:
    """Every input of the report under params.outputs, as the stages write them on a J&F dataset."""
    out = params.outputs
    rng = np.random.default_rng(seed)
    bases = {s: rng.beta(4, 3, n) * 0.8 for s, n in EXPRESSIONS.items()}
    counts = {
        s: {"videos": n // 3, "sentences": n, "frames": 8 * n, "eval_pairs": sum(FRAMES[e % 4] for e in range(n))}
        for s, n in (("train", 60), ("val", 12), ("test", 24))
    }
    (out / "processed").mkdir(parents=True, exist_ok=True)
    (out / "processed/summary.json").write_text(
        json.dumps({"source": "synthetic", "fingerprint": "fpvos", "input_size": 48, "splits": counts})
    )
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "raw/synthetic_summary.json").write_text(json.dumps({"source": "synthetic", "generated": True, "seed": 0}))
    runs = out / "runs"
    _, main_metrics = _vos_run(rng, bases, EFFECT["CCL+RHIC+LCF"])
    (out / "eval").mkdir(parents=True, exist_ok=True)
    (out / "eval/metrics.json").write_text(json.dumps(main_metrics))
    (runs / "main").mkdir(parents=True)
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e} for e in range(1, 4)]
    (runs / "main/run.json").write_text(json.dumps({"run_id": "r-main", "run_hash": "main", "history": history}))
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "train/run.json").write_text(json.dumps({"run_id": "r-main", "run_hash": "main"}))

    results, per_sample, histories = [], [], []
    png = runs / "qualitative.png"
    _qualitative_png(png, rng, 2)
    for name, variant in params.ablation.variants.items():
        for s in params.ablation.seeds:
            h = f"{name.replace('+', '_').lower()}-s{s}"
            rows, metrics = _vos_run(rng, bases, EFFECT[name] + rng.normal(0, 0.01))
            flags = {"ccl": variant.ccl, "rhic": variant.rhic, "lcf": variant.lcf}
            results.append({"variant": name, "seed": s, **flags, "run_id": h, "run_hash": h, "reused": False})
            results[-1] |= _metric_cols(metrics)
            per_sample += [{"variant": name, "seed": s, **r} for r in rows if r["split"] != "val"]
            _write_run_eval(runs / h / "eval", rows)
            shutil.copy(png, runs / h / "eval" / "qualitative.png")
            histories += [
                {"variant": name, "seed": s, "epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e}
                for e in range(1, params.train.epochs + 1)
            ]
    _write_csv(out / "ablation/results.csv", results)
    _write_csv(out / "ablation/per_sample.csv", per_sample)
    _write_csv(out / "ablation/histories.csv", histories)
    for study, points in study_points(params):
        rows = []
        for trial, (point, x) in enumerate(points):
            for s in params.studies.seeds:
                h = f"{study}-{trial}-s{s}"
                sample_rows, metrics = _vos_run(rng, bases, EFFECT["CCL+RHIC+LCF"] - 0.01 * trial)
                _write_run_eval(runs / h / "eval", sample_rows)
                rows.append(
                    {"study": study, "trial": trial, "point": point, "x": x, "seed": s, "run_id": h, "run_hash": h}
                    | {"reused": False, **_metric_cols(metrics)}
                )
        _write_csv(out / "studies" / f"{study}.csv", rows)


def _build(tmp_path_factory, dataset: str) -> SimpleNamespace:
    from reports.report import build_report

    params = make_params(tmp_path_factory.mktemp(f"report_{dataset}"), f"data.dataset={dataset}")
    write_vos_outputs(params)
    result = build_report(params, track=False)
    _, text = pdf_text(result.pdf)
    return SimpleNamespace(
        params=params, result=result, flat=" ".join(text.split()), numbers=json.loads(result.numbers.read_text())
    )


@pytest.fixture(scope="module")
def ytvos(tmp_path_factory):
    return _build(tmp_path_factory, "ytvos")


@pytest.fixture(scope="module")
def mevis(tmp_path_factory):
    return _build(tmp_path_factory, "mevis")


# ---------------------------------------------------------------------------------------------
# the built reports
# ---------------------------------------------------------------------------------------------
def test_table3_reads_in_jf_and_matches_results_csv(ytvos):
    numbers, params = ytvos.numbers, ytvos.params
    results = pd.read_csv(params.outputs / "ablation/results.csv")
    for variant, g in results.groupby("variant"):
        for m in ("J&F", "J", "F"):
            mean, ci = g[f"test/{m}"].mean(), mean_ci(g[f"test/{m}"], params.report.confidence)
            assert numbers[f"table3/{variant}/test/{m}/mean"]["text"] == f"{mean:.1f}", (variant, m)
            assert f"{mean:.1f} ± {ci.half:.1f}" in ytvos.flat, (variant, m)
        assert f"table3/{variant}/test/mAP/mean" not in numbers  # Table 3 (a) is J&F / J / F
        assert f"paper/table3/{variant}/mAP" not in numbers  # the CVLS paper has no numbers here
    # every number recorded is printed, as recorded
    for key, entry in numbers.items():
        assert entry["value"] is None or float(entry["text"]) == entry["value"], key
        assert entry["text"] in ytvos.flat, key


def test_context_is_lbdt_labelled_as_another_method(ytvos, mevis):
    full = "CCL+RHIC+LCF"
    assert ytvos.numbers[f"context/table3/{full}/J&F"]["text"] == "49.4"
    assert ytvos.numbers[f"context/table3/{full}/J"]["text"] == "48.2"
    assert ytvos.numbers[f"context/table3/{full}/F"]["text"] == "50.6"
    assert ytvos.numbers["context/table3/Baseline/J&F"]["value"] is None  # LBDT is no ablation row
    assert ytvos.numbers["context/main/J&F"]["text"] == "49.4"
    assert "LBDT-4 (other method)" in ytvos.flat and "ANOTHER METHOD's published Ref-YouTube-VOS numbers" in ytvos.flat
    assert "measured on the real Ref-YouTube-VOS valid set" in ytvos.flat
    # MeViS: no context number, the dash
    assert mevis.numbers[f"context/table3/{full}/J&F"] == {"value": None, "text": "–"}
    assert mevis.numbers["context/main/J&F"]["text"] == "–"
    assert "LBDT" not in mevis.flat


def test_pages_name_the_dataset_and_never_a2d_format(ytvos, mevis):
    for built, name in ((ytvos, "Ref-YouTube-VOS"), (mevis, "MeViS")):
        assert "A2D-format" not in built.flat and "J-HMDB-format" not in built.flat
        assert (
            f"DATA IS SYNTHETIC: every number of ours in this report comes from the generated synthetic twin of {name}"
            in built.flat
        )
        assert "Table 3 reproduced" in built.flat and "Paired significance" in built.flat
        assert not [k for k in built.numbers if "jhmdb" in k or k.startswith(("paper/", "main/jhmdb"))]
    assert "offline test split (held-out Ref-YouTube-VOS train videos)" in ytvos.flat
    assert "MeViS valid_u, of the synthetic twin in the MeViS layout" in mevis.flat


def test_main_results_have_test_and_val_jf(ytvos):
    main = json.loads((ytvos.params.outputs / "eval/metrics.json").read_text())
    for split in ("test", "val"):
        for m in ("J", "F", "J&F", "mAP", "mean_iou"):
            assert ytvos.numbers[f"main/{split}/{m}"]["value"] == pytest.approx(round(main[split][m], 1))
        assert ytvos.numbers[f"main/{split}/n_expressions"]["value"] == main[split]["n_expressions"]
    assert "Main results vs LBDT-4's published Ref-YouTube-VOS numbers (another method)" in ytvos.flat


def test_significance_power_and_fig6_use_expressions(ytvos):
    numbers = ytvos.numbers
    steps = [k.split("/")[1] for k in numbers if k.startswith("significance/") and k.endswith("/J/diff")]
    assert len(steps) == 5
    assert numbers["significance/Baseline->CCL/expressions"]["value"] == EXPRESSIONS["test"]
    assert numbers["significance/Baseline->CCL/J&F/diff"]["text"]
    assert numbers["power/expressions"]["value"] == EXPRESSIONS["test"]
    assert "paired over 24 test expressions × 3 seeds): J " in ytvos.flat
    assert "power/J&F" in numbers and "power/seed/J&F" in numbers and "power/mAP" not in numbers
    assert "Fig. 6a — J&F" in ytvos.flat and "Fig. 6b — J" in ytvos.flat


def test_headroom_is_na_without_a_language_blind_jf(ytvos):
    results = pd.read_csv(ytvos.params.outputs / "ablation/results.csv")
    for v, g in results.groupby("variant"):
        share = 100 * (g["test/J"].mean() - BLIND_JF["J"]) / (ORACLE_JF["J"] - BLIND_JF["J"])
        assert ytvos.numbers[f"headroom/{v}/J"]["text"] == f"{share:.0f}"
        assert f"headroom/{v}/J&F" not in ytvos.numbers
    assert ytvos.numbers["bounds/test/oracle/J&F"]["value"] == ORACLE_JF["J&F"]
    assert ytvos.numbers["bounds/test/language_blind/J&F"]["value"] is None
    assert "Headroom closed: n/a for J&F" in ytvos.flat


def test_strata_page_in_j_and_jf_matches_each_runs_strata_json(ytvos):
    results = pd.read_csv(ytvos.params.outputs / "ablation/results.csv")
    for v, g in results.groupby("variant"):
        strata = [
            json.loads((ytvos.params.outputs / "runs" / h / "eval/strata.json").read_text())["test"]
            for h in g["run_hash"]
        ]
        for stratum in ("distractor", "attribute=colour"):
            for m in ("J", "J&F"):
                mean = np.mean([s[stratum][m] for s in strata])
                assert ytvos.numbers[f"strata/{v}/{stratum}/{m}/mean"]["text"] == f"{mean:.1f}", (v, stratum, m)
    assert ytvos.numbers["strata/n/distractor"]["value"] == sum(_labels(e)["distractor"] == "1" for e in range(24))
    assert "test expressions (n)" in ytvos.flat


# ---------------------------------------------------------------------------------------------
# hand example: 2 variants x 2 seeds x 3 expressions of 1, 2 and 3 frames
# ---------------------------------------------------------------------------------------------
# (iou, f) per frame of expressions 0, 1, 2 of variant A; Baseline scores 0 everywhere
HAND = {
    0: ([(0.6, 0.2)], [(0.2, 0.4), (0.4, 0.4)], [(1.0, 0.6), (1.0, 0.6), (0.4, 0.6)]),
    1: ([(0.8, 0.4)], [(0.4, 0.2), (0.4, 0.4)], [(0.9, 0.8), (0.9, 0.8), (0.9, 0.8)]),
}


def _hand() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, per-sample rows): A's J&F per seed from the rows, as evaluation computes it."""
    from reports.inputs import with_sample_map

    rows = []
    for seed, expressions in HAND.items():
        for variant in ("Baseline", "A"):
            pair = 0
            for e, frames in enumerate(expressions):
                for iou, f in frames:
                    if variant == "Baseline":
                        iou, f = 0.0, 0.0
                    rows.append(
                        {"variant": variant, "seed": seed, "split": "test", "pair": pair, "sample": e}
                        | {"inter": round(10 * iou), "union": 10, "iou": iou, "f": f}
                    )
                    pair += 1
    samples = with_sample_map(pd.DataFrame(rows))
    results = []
    for (v, seed), g in samples.groupby(["variant", "seed"], sort=False):
        jf = summarize_pairs(g.to_dict("records"))
        results.append({"variant": v, "seed": seed, "ccl": v == "A", "rhic": False, "lcf": False})
        results[-1] |= {f"test/{k}": jf[k] for k in ("J", "F", "J&F")}
    return pd.DataFrame(results), samples


def test_unit_scores_are_per_expression_and_average_to_the_split_jf():
    results, samples = _hand()
    a0 = samples[(samples["variant"] == "A") & (samples["seed"] == 0)]
    # J per expression: .6, (.2 + .4) / 2 = .3, (1 + 1 + .4) / 3 = .8; J&F: (.6 + .2) / 2 = .4, .35, .7
    assert YTVOS.unit_scores(a0, "J").tolist() == pytest.approx([0.6, 0.3, 0.8])
    assert YTVOS.unit_scores(a0, "J&F").tolist() == pytest.approx([0.4, 0.35, 0.7])
    for (v, seed), g in samples.groupby(["variant", "seed"]):
        split = summarize_pairs(g.to_dict("records"))
        for m in ("J", "F", "J&F"):
            assert 100 * YTVOS.unit_scores(g, m).mean() == pytest.approx(split[m], abs=1e-12), (v, seed, m)
    assert results.loc[1, "test/J&F"] == pytest.approx(100 * (0.4 + 0.35 + 0.7) / 3)
    # A2D's unit stays the pair: one score per row
    assert len(A2D.unit_scores(a0, "mean_iou")) == 6


def test_power_line_is_per_expression_hand_example():
    from reports.tables import Numbers, detectable_differences, paired_scores

    results, samples = _hand()
    num = Numbers()
    line = detectable_differences(results, samples, 0.95, num, proto=YTVOS)
    # seed-averaged per-expression differences (pp), J: (60+80)/2 = 70, (30+40)/2 = 35, (80+90)/2 = 85
    # -> sd 25.658, / sqrt(3) * (z_0.975 + z_0.8 = 2.801585) = 41.50; J&F: 50, 35, 77.5 -> sd 21.554 -> 34.86
    assert num.items["power/J"]["text"] == "41.5" and num.items["power/J&F"]["text"] == "34.9"
    assert detectable_difference([70, 35, 85], alpha=0.05, power=0.8) == pytest.approx(41.5017, abs=1e-4)
    # per pair it would be 31.0 over 6 pairs (d = 70, 30, 40, 95, 95, 65): not what the line states
    ia, ib = paired_scores(samples, "Baseline", "A", score="iou", unit="pair")
    assert (ib - ia).mean(axis=0).tolist() == pytest.approx([70, 30, 40, 95, 95, 65])
    assert detectable_difference([70, 30, 40, 95, 95, 65], alpha=0.05, power=0.8) == pytest.approx(30.99, abs=0.01)
    assert "paired over 3 test expressions × 2 seeds): J 41.5 pp, J&F 34.9 pp" in line
    assert num.items["power/expressions"]["value"] == 3


def test_significance_is_per_expression_hand_example():
    from reports.tables import Numbers, significance

    results, samples = _hand()
    num = Numbers()
    t = significance(results, samples, reps=200, confidence=0.95, num=num, proto=YTVOS)
    assert t.header[1].startswith("Δ J\n") and t.header[4].startswith("Δ J&F\n") and len(t.header) == 7
    # bootstrap on J over expressions: mean of 70, 35, 85 = 63.3 (per pair it would be 65.8)
    assert num.items["significance/Baseline->A/J/diff"]["text"] == "+63.3"
    assert num.items["significance/Baseline->A/expressions"]["value"] == 3
    # t over seeds on J&F: A's J&F is 48.33 (seed 0) and 60.0 (seed 1), Baseline's 0 -> +54.2
    assert num.items["significance/Baseline->A/J&F/diff"]["text"] == "+54.2"
    assert t.rows[0][3] == "3 × 2"


def test_point_intervals_bootstrap_expressions():
    from reports.sweeps import point_intervals

    _, samples = _hand()
    one = samples[(samples["variant"] == "A") & (samples["seed"] == 0)]
    df = pd.DataFrame({"point": ["1:3"], "run_hash": ["h"], "val/J&F": [math.nan], "test/J&F": [48.3]})
    iv = point_intervals(df, {"h": one}, metric="J&F", splits=("test",), reps=4000, confidence=0.95, proto=YTVOS)
    # 3 expressions scoring 40, 35, 70: a resample's mean is at least 35 and at most 70
    (row,) = iv.frame.itertuples()
    assert row.over == "samples" and row.lo == pytest.approx(35.0) and row.hi == pytest.approx(70.0)


def test_paper_keeps_the_cvls_numbers_and_lbdt_apart():
    assert paper.LBDT4_YTVOS == {"J": 48.18, "F": 50.57, "J&F": 49.38}
    assert "J&F" not in paper.TABLE3["CCL+RHIC+LCF"] and MEVIS.reference == {}
