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
from core.data import registry
from core.metrics import summarize
from core.results import METRIC_KEYS, SPLITS
from core.strata import strata_metrics
from core.vos_metrics import summarize_pairs
from reports import paper
from reports.protocol import protocol_of
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
    bound_rows, _ = _vos_run(rng, {"test": bases["test"] * 0.5, "val": bases["val"], "test_shuffled": bases["test"]}, 0)
    _write_csv(
        out / "eval/bound_pairs.csv",  # a language-blind predictor below the rows; no oracle rows (older file)
        [
            {k: r[k] for k in ("split", "pair", "sample", "video", "inter", "union", "iou", "f")}
            | {"bound": "language_blind", "map": float(np.mean(r["iou"] >= np.arange(0.5, 0.96, 0.05)))}
            for r in bound_rows
            if r["split"] == "test"
        ],
    )
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
            entry, ci = numbers[f"table3/{variant}/test/{m}/mean"], numbers[f"table3/{variant}/test/{m}/ci"]
            assert entry["value"] == pytest.approx(g[f"test/{m}"].mean(), abs=0.05), (variant, m)
            assert f"{entry['text']} ± {ci['text']}" in ytvos.flat, (variant, m)
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
        assert "Table 3 reproduced" in built.flat and "Verdicts: each step" in built.flat
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


def test_verdicts_power_and_fig6_are_in_jf(ytvos):
    numbers = ytvos.numbers
    steps = [k for k in numbers if k.startswith("step/") and k.endswith("/test/J&F/holm")]
    assert len(steps) == 5  # the primary family: the steps on J&F, Holm
    assert "step/Baseline->CCL/test/J/q" in numbers and "step/Baseline->CCL/test/F/q" in numbers
    assert "power/primary" in numbers and "power/J" in numbers and "power/mAP" not in numbers
    assert "the primary family on J&F" in ytvos.flat
    assert "Fig. 6a — J&F" in ytvos.flat and "Fig. 6b — J" in ytvos.flat


def test_the_language_blind_reference_in_jf_averages_its_pairs_per_expression(ytvos):
    pairs = pd.read_csv(ytvos.params.outputs / "eval/bound_pairs.csv")
    per_expression = pairs.assign(jf=(pairs["iou"] + pairs["f"]) / 2).groupby("sample")["jf"].mean()
    expected = 100 * per_expression.mean()
    assert ytvos.numbers["bounds/test/language_blind/J&F/mean"]["value"] == pytest.approx(expected, abs=0.05)
    assert ytvos.numbers["bounds/test/oracle/J&F"]["value"] == ORACLE_JF["J&F"]  # bounds.json's: no oracle pairs
    results = pd.read_csv(ytvos.params.outputs / "ablation/results.csv")
    for v in results["variant"].unique():
        assert f"blind/language-blind->{v}/test/J&F/q" in ytvos.numbers


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
                assert ytvos.numbers[f"strata/{v}/{stratum}/{m}/mean"]["value"] == pytest.approx(mean, abs=0.1)
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
                        | {"video": "a" if e < 2 else "b", "inter": round(10 * iou), "union": 10, "iou": iou, "f": f}
                    )
                    pair += 1
    samples = with_sample_map(pd.DataFrame(rows))
    results = []
    for (v, seed), g in samples.groupby(["variant", "seed"], sort=False):
        jf = summarize_pairs(g.to_dict("records"))
        results.append({"variant": v, "seed": seed, "ccl": v == "A", "rhic": False, "lcf": False})
        results[-1] |= {f"test/{k}": jf[k] for k in ("J", "F", "J&F")}
    return pd.DataFrame(results), samples


def test_expression_metrics_average_per_expression_hand_example():
    from reports.scores import run_table, unit_scores

    results, samples = _hand()
    a0 = samples[(samples["variant"] == "A") & (samples["seed"] == 0)]
    # J per expression: .6, (.2 + .4) / 2 = .3, (1 + 1 + .4) / 3 = .8; J&F: (.6 + .2) / 2 = .4, .35, .7
    assert unit_scores(a0, "J")["x"].tolist() == pytest.approx([0.6, 0.3, 0.8])
    assert unit_scores(a0, "J&F")["x"].tolist() == pytest.approx([0.4, 0.35, 0.7])
    for m in ("J", "F", "J&F"):
        t = run_table(samples, m, ["Baseline", "A"])
        assert t.y[1].tolist() == pytest.approx(list(results[results["variant"] == "A"][f"test/{m}"]))
    assert len(unit_scores(a0, "mean_iou")) == 6  # the A2D-style metrics stay per pair


def test_a_step_in_j_is_over_expressions_clustered_by_video_hand_example(tmp_path):
    from reports.analysis import table3_tests
    from reports.scores import run_table

    results, samples = _hand()
    tables = {m: run_table(samples, m, ["Baseline", "A"]) for m in ("J&F", "J", "F")}
    p = make_params(tmp_path, "data.dataset=ytvos")
    (step_j,) = [t for t in table3_tests(results, tables, p, protocol_of(registry.get("ytvos"))) if t.metric == "J"]
    # per expression J differences, averaged over the seeds: 70, 35, 85 -> 63.3 (per pair it would be 65.8);
    # expressions 0 and 1 share video a: two videos, not three expressions, are what a rerun would redraw
    assert step_j.est.value == pytest.approx((70 + 35 + 85) / 3) and step_j.est.videos == 2


def test_paper_keeps_the_cvls_numbers_and_lbdt_apart():
    assert paper.LBDT4_YTVOS == {"J": 48.18, "F": 50.57, "J&F": 49.38}
    assert "J&F" not in paper.TABLE3["CCL+RHIC+LCF"] and protocol_of(registry.get("mevis")).reference == {}
