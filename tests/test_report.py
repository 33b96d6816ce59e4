"""reports/: the PDF report from realistic result tables written by a fixture (seeded RNG).

The fixture writes every input the report reads, in the formats the other stages write them;
set REPORT_REAL_OUTPUTS=<outputs folder> to also build the report from a real pipeline run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.config import Params, load_params
from core.errors import UserError
from core.metrics import summarize
from core.results import METRIC_KEYS, SPLITS
from core.scoring import summarize_rows
from reports import paper

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_PAGES = (
    "title",
    "table3",
    "verdicts",
    "strata",
    "grounding",
    "fig6",
    "fig6_tests",
    "main_results",
    "training",
    "calibration",
    "qualitative",
)
SECTION_TITLES = (
    "CVLS ablation suite — report",
    "Table 3 reproduced",
    "Verdicts: each step",
    "Table 3 by stratum",
    "Grounding by stratum",
    "Fig. 6: RHIC ratio",
    "Fig. 6: each point against the default",
    "Main results",
    "Training curves",
    "Calibration: how often",
    "Qualitative",
)
EFFECT = {"Baseline": 0.0, "CCL": 0.06, "CCL+RHIC": 0.075, "CCL+LCF": 0.09, "CCL+RHIC+LCF": 0.10}
N_PAIRS = {"val": 40, "test": 90, "jhmdb": 50, "test_shuffled": 90}


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def make_params(outputs: Path, *overrides: str) -> Params:
    return load_params(ROOT / "params.yaml", [f"paths.outputs={outputs}", "report.simulations=200", *overrides])


# ---------------------------------------------------------------------------------------------
# fixture: every input of the report, as the pipeline stages write them
# ---------------------------------------------------------------------------------------------
def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _samples(rng: np.random.Generator, base: np.ndarray, effect: float, noise: float) -> list[tuple[int, int]]:
    """(inter, union) per sample: a per-sample difficulty `base`, shifted by the variant's effect."""
    iou = np.clip(base + effect + rng.normal(0, noise, len(base)), 0, 1)
    union = rng.integers(200, 3000, len(base))
    return [(int(round(i * u)), int(u)) for i, u in zip(iou, union)]


def _run(rng, bases, effect, shuffled_effect=-0.35, labels=True):
    """One evaluated run: per-sample rows (`labels`: with the strata columns) and metrics per split
    (core.metrics.summarize)."""
    rows, metrics = [], {}
    for split in SPLITS:
        shift = effect + (shuffled_effect if split == "test_shuffled" else 0.0)
        iu = _samples(rng, bases[split], shift, 0.08)
        metrics[split] = summarize([i for i, _ in iu], [u for _, u in iu])
        for pair, (i, u) in enumerate(iu):
            rows.append(
                {
                    "split": split,
                    "pair": pair,
                    "sample": pair // 2,
                    "video": f"v{pair // 6:03d}",
                    "frame": pair % 6,
                    "inter": i,
                    "union": u,
                    "iou": 1.0 if u == 0 else i / u,
                    **(_labels(pair) | {"other_iou": _other_iou(pair)} if labels else {}),
                }
            )
    return rows, metrics


def _qualitative_png(path: Path, rng: np.random.Generator, rows: int = 3) -> None:
    """Like core.evaluate's figure: per sample, frame + ground truth | frame + prediction."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(rows, 2, figsize=(7, 2.9 * rows), squeeze=False)
    for r in range(rows):
        frame = np.full((48, 64, 3), 90, np.uint8)
        boxes = [(int(rng.integers(0, 34)), int(rng.integers(0, 44))) for _ in range(3)]
        for y, x in boxes:
            frame[y : y + 14, x : x + 12] = rng.integers(60, 255, 3)
        for c, colour in enumerate(((0, 200, 0), (230, 40, 40))):
            img = frame.copy()
            y, x = boxes[0 if c == 0 or rng.random() < 0.6 else 1]
            img[y : y + 14, x : x + 12] = (0.45 * img[y : y + 14, x : x + 12] + 0.55 * np.array(colour)).astype(
                np.uint8
            )
            axes[r, c].imshow(img)
            axes[r, c].set_title('ground truth: "the red dog on the left"' if c == 0 else "prediction", fontsize=8)
            axes[r, c].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


ATTRIBUTES = ("colour", "size", "position", "motion")
# the fixture's bounds.json values of the test split (percent), for the headroom shares
ORACLE = {"P@0.5": 99.0, "P@0.6": 98.0, "P@0.7": 96.0, "P@0.8": 92.0, "P@0.9": 80.0}
ORACLE |= {"mAP": 90.0, "overall_iou": 93.0, "mean_iou": 92.0, "n": N_PAIRS["test"]}
BLIND = {"P@0.5": 40.0, "P@0.6": 30.0, "P@0.7": 20.0, "P@0.8": 10.0, "P@0.9": 2.0}
BLIND |= {"mAP": 18.0, "overall_iou": 40.0, "mean_iou": 38.0, "n": N_PAIRS["test"]}


def _labels(pair: int) -> dict:
    """A sample's strata, as evaluation writes them: a distractor for 4 in 5 pairs, attributes in turn."""
    return {"distractor": "0" if pair % 5 == 0 else "1", "attribute": ATTRIBUTES[pair % 4]}


def _other_iou(pair: int) -> float | None:
    """A pair's best IoU with another actor (grounding): none in every third pair's frame."""
    return None if pair % 3 == 0 else (pair * 37 % 100) / 100


def _write_bound_pairs(path: Path, rng: np.random.Generator, blind: bool) -> None:
    """eval/bound_pairs.csv as the evaluate stage writes it: each test pair's oracle and (`blind`)
    language-blind scores, the blind one below the rows (IoU ~0.3)."""
    rows = []
    for pair in range(N_PAIRS["test"]):
        for bound, iou in (("oracle", 0.9), *((("language_blind", 0.3),) if blind else ())):
            union = float(rng.integers(200, 3000))
            x = float(np.clip(iou + rng.normal(0, 0.15), 0, 1))
            rows.append(
                {"split": "test", "pair": pair, "sample": pair // 2, "video": f"v{pair // 6:03d}", "bound": bound}
                | {"inter": x * union, "union": union, "iou": x, "map": float(np.mean(x >= np.arange(0.5, 0.96, 0.05)))}
                | {"f": ""}
            )
    _write_csv(path, rows)


def _write_run_eval(folder: Path, rows: list[dict], blind: bool = True) -> None:
    """<run>/eval/per_sample.csv (with the text), bounds.json and strata.json, as evaluation writes them."""
    _write_csv(folder / "per_sample.csv", [{**r, "text": "the red dog on the left"} for r in rows])
    bounds = {"test": {"oracle": ORACLE} | ({"language_blind": BLIND} if blind else {})}
    (folder / "bounds.json").write_text(json.dumps(bounds))
    test = [r for r in rows if r["split"] == "test"]
    strata = {"distractor": [r for r in test if r["distractor"] == "1"]}
    strata |= {f"attribute={a}": [r for r in test if r["attribute"] == a] for a in ATTRIBUTES}
    summaries = {k: summarize_rows(v, jf=False) for k, v in strata.items()}
    (folder / "strata.json").write_text(json.dumps({"test": summaries}))


def _metric_cols(metrics: dict) -> dict:
    return {f"{s}/{k}": metrics.get(s, {}).get(k, math.nan) for s in SPLITS for k in METRIC_KEYS}


def study_points(params: Params) -> list[tuple[str, list[tuple[str, float]]]]:
    """Each study's (point, x) pairs, as the study tables hold them."""
    ratios = [(r, (lambda h, e: h / e)(*map(float, r.split(":")))) for r in params.studies.rhic_ratios]
    return [("rhic_ratio", ratios), ("lambda_sensitivity", [(str(x), x) for x in params.studies.lambdas])]


def write_outputs(params: Params, seed: int = 0, newer: bool = True, blind: bool = True) -> None:
    """Realistic inputs under params.outputs: summaries, main run, ablation and study tables.
    `newer`: with what evaluation added later, the strata columns of the per-sample rows and each
    run's eval/per_sample.csv, bounds.json (`blind`: with the language-blind bound) and strata.json;
    without, the outputs of runs evaluated before those existed."""
    out = params.outputs
    rng = np.random.default_rng(seed)
    bases = {s: rng.beta(4, 3, n) * 0.8 for s, n in N_PAIRS.items()}
    fp = "fp" + "%014x" % rng.integers(0, 2**56)
    (out / "processed").mkdir(parents=True, exist_ok=True)
    (out / "processed/summary.json").write_text(
        json.dumps(
            {
                "source": "synthetic",
                "fingerprint": fp,
                "input_size": 64,
                "vocab_words": 112,
                "splits": {
                    "train": {
                        "videos": 40,
                        "sentences": 120,
                        "frames": 320,
                        "annotated_frames": 120,
                        "eval_pairs": 360,
                    },
                    "val": {"videos": 7, "sentences": 20, "frames": 56, "annotated_frames": 21, "eval_pairs": 40},
                    "test": {"videos": 15, "sentences": 45, "frames": 120, "annotated_frames": 45, "eval_pairs": 90},
                    "jhmdb": {"videos": 12, "sentences": 12, "frames": 96, "annotated_frames": 96, "eval_pairs": 50},
                },
                "skipped": {"missing_video": {"count": 1, "examples": ["raw/a2d/Release/clips320H/xyz.mp4"]}},
            }
        )
    )
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "raw/synthetic_summary.json").write_text(
        json.dumps(
            {
                "source": "synthetic",
                "generated": True,
                "seed": 0,
                "same_class_fraction": 0.83,
                "distractor_fraction": 0.85,
            }
        )
    )

    def run_dir(h: str) -> Path:
        return out / "runs" / h

    # main run (full model, params.yaml as is)
    main_hash = "main" + "%012x" % rng.integers(0, 2**48)
    _, main_metrics = _run(rng, bases, EFFECT["CCL+RHIC+LCF"])
    (out / "eval").mkdir(parents=True, exist_ok=True)
    (out / "eval/metrics.json").write_text(json.dumps(main_metrics))
    if newer:
        _write_bound_pairs(out / "eval/bound_pairs.csv", rng, blind)
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e} for e in range(1, 4)]
    run_dir(main_hash).mkdir(parents=True)
    (run_dir(main_hash) / "run.json").write_text(
        json.dumps({"run_id": "r-main", "run_hash": main_hash, "pretrained": False, "history": history})
    )
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "train/run.json").write_text(
        json.dumps({"run_id": "r-main", "run_hash": main_hash, "run_dir": str(run_dir(main_hash))})
    )

    # ablation
    results, per_sample, histories = [], [], []
    qualitative: Path | None = None
    for name, variant in params.ablation.variants.items():
        for s in params.ablation.seeds:
            h = f"{name.replace('+', '_').lower()}-s{s}"
            rows, metrics = _run(rng, bases, EFFECT.get(name, 0.05) + rng.normal(0, 0.01), labels=newer)
            results.append(
                {
                    "variant": name,
                    "seed": s,
                    "ccl": variant.ccl,
                    "rhic": variant.rhic,
                    "lcf": variant.lcf,
                    "run_id": f"id-{h}",
                    "run_hash": h,
                    "reused": False,
                    **_metric_cols(metrics),
                }
            )
            per_sample += [{"variant": name, "seed": s, **r} for r in rows]
            if newer:
                _write_run_eval(run_dir(h) / "eval", rows, blind)
            for e in range(1, params.train.epochs + 1):
                tl = 0.9 * np.exp(-0.25 * e) + 0.1 * variant.ccl + rng.normal(0, 0.01)
                histories.append(
                    {
                        "variant": name,
                        "seed": s,
                        "epoch": e,
                        "train_loss": tl,
                        "train_seg": tl * 0.8,
                        "train_ccl": tl * 0.2 * variant.ccl,
                        "val_loss": tl + 0.05 + rng.normal(0, 0.01),
                        "lr": params.train.lr,
                        "clips_per_s": 40.0 + rng.normal(0, 2),
                    }
                )
            png = run_dir(h) / "eval" / "qualitative.png"
            if not qualitative:
                _qualitative_png(png, rng, params.eval.qualitative_samples)
                qualitative = png
            else:  # one drawn figure serves every run (fast fixture)
                png.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(qualitative, png)
    _write_csv(out / "ablation/results.csv", results)
    for r in per_sample:
        r.pop("text", None)
    _write_csv(out / "ablation/per_sample.csv", per_sample)
    _write_csv(out / "ablation/histories.csv", histories)

    # studies
    for study, points in study_points(params):
        rows = []
        for trial, (point, x) in enumerate(points):
            drop = 0.02 * max(0.0, np.log2(x)) if study == "rhic_ratio" else 0.01 * abs(x - 0.8)
            for s in params.studies.seeds:
                sample_rows, metrics = _run(rng, bases, EFFECT["CCL+RHIC+LCF"] - drop, labels=newer)
                if newer:
                    _write_run_eval(run_dir(f"{study}-{trial}-s{s}") / "eval", sample_rows, blind)
                rows.append(
                    {
                        "study": study,
                        "trial": trial,
                        "point": point,
                        "x": x,
                        "seed": s,
                        "run_id": f"id-{study}-{trial}",
                        "run_hash": f"{study}-{trial}-s{s}",
                        "reused": False,
                        **_metric_cols(metrics),
                    }
                )
        _write_csv(out / "studies" / f"{study}.csv", rows)


# ---------------------------------------------------------------------------------------------
# one build shared by the content tests (no MLflow: fast)
# ---------------------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One report from the fixture's outputs; `warnings`: what the layout logged (overflows)."""
    from reports.report import build_report

    params = make_params(tmp_path_factory.mktemp("report_out"), "studies.seeds=[0, 1]")
    write_outputs(params)
    records = _Records()
    logging.getLogger("cvls").addHandler(records)
    try:
        result = build_report(params, track=False)
    finally:
        logging.getLogger("cvls").removeHandler(records)
    return SimpleNamespace(params=params, result=result, warnings=records.messages)


def test_layout_fits_the_page(built):
    assert not built.warnings  # no table wider than the page, no page overflowing its margin


def pdf_text(path: Path) -> tuple[int, str]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def test_pdf_pages_figures_and_sections(built):
    params, result = built.params, built.result
    assert result.pdf == params.outputs / "report" / "report.pdf"
    n_pages, text = pdf_text(result.pdf)
    assert n_pages == len(EXPECTED_PAGES)
    for name in EXPECTED_PAGES:
        for ext in ("png", "svg"):
            f = params.outputs / "report" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    flat = " ".join(text.split())
    for title in SECTION_TITLES:
        assert title in flat, title
    assert "paper row order as reconstructed" in flat
    assert "DATA IS SYNTHETIC" in flat and "real A2D Sentences" in flat
    m, loss = params.model, params.loss  # the title page prints the [open] readings it ran with
    assert f"L_seg {loss.seg_reduction}, fusion {m.fusion}, F {m.merge}" in flat
    assert not list((params.outputs / "report").glob("*.tmp"))  # atomic writes left nothing behind


def analysis_of(params):
    from reports.analysis import analyze
    from reports.inputs import load_inputs

    return analyze(params, load_inputs(params))


def test_table3_numbers_match_results_csv(built):
    params, result = built.params, built.result
    numbers = json.loads(result.numbers.read_text())
    _, text = pdf_text(result.pdf)
    results = pd.read_csv(params.outputs / "ablation/results.csv")
    for variant, g in results.groupby("variant"):
        assert numbers[f"table3/{variant}/n_seeds"]["value"] == len(params.ablation.seeds)
        for m in ("mAP", "overall_iou", "mean_iou", "P@0.5", "P@0.9"):
            # results.csv holds each run's metric rounded to 0.1; the table, the mean of the exact ones
            entry, ci = numbers[f"table3/{variant}/test/{m}/mean"], numbers[f"table3/{variant}/test/{m}/ci"]
            assert entry["value"] == pytest.approx(g[f"test/{m}"].mean(), abs=0.1), (variant, m)
            assert f"{entry['text']} ± {ci['text']}" in text, (variant, m)
        for m, v in paper.TABLE3[variant].items():
            assert numbers[f"paper/table3/{variant}/{m}"]["value"] == v
    # every number recorded is printed in the PDF, as recorded
    for key, entry in numbers.items():
        assert entry["value"] is None or float(entry["text"]) == entry["value"], key
        assert entry["text"] in text, key


def test_a_rows_interval_counts_the_seeds_and_the_test_videos(built):
    """Each row's half-width is t * sqrt(seed term + video term): wider than either alone."""
    an = analysis_of(built.params)
    for (variant, metric), e in an.rows.items():
        if metric not in ("mAP", "overall_iou", "mean_iou"):
            continue  # P@0.8 of a row whose every pair misses 0.8: no spread over the videos
        assert e.seed_term > 0 and e.video_term > 0, (variant, metric)
        assert e.hi - e.lo > 2 * 1.96 * max(e.seed_term, e.video_term) ** 0.5 * 0.99, (variant, metric)


def test_verdicts_and_main_results_numbers(built):
    params, result = built.params, built.result
    numbers = json.loads(result.numbers.read_text())
    _, text = pdf_text(result.pdf)
    steps = ["Baseline->CCL", "CCL->CCL+RHIC", "CCL->CCL+LCF", "CCL+RHIC->CCL+RHIC+LCF", "CCL+LCF->CCL+RHIC+LCF"]
    for step in steps:  # the primary family: every step on mAP, Holm-adjusted, with its d
        for field in ("diff", "lo", "hi", "p", "holm", "d"):
            assert f"step/{step}/test/mAP/{field}" in numbers, (step, field)
        assert f"step/{step}/test/mean_iou/q" in numbers  # the rest: exploratory, BH q
    # Baseline -> CCL is a clear shift in the fixture (+6 pp IoU): it helps after Holm
    assert numbers["step/Baseline->CCL/test/mean_iou/diff"]["value"] == pytest.approx(6, abs=2)
    assert numbers["step/Baseline->CCL/test/mAP/holm"]["value"] < 0.05
    assert "Baseline → CCL" in text and "helps" in text and "no evidence" in text
    for v in ("CCL+RHIC", "CCL+LCF", "CCL+RHIC+LCF"):
        assert f"vs_baseline/Baseline->{v}/test/mAP/q" in numbers
    main = json.loads((params.outputs / "eval/metrics.json").read_text())
    for m in paper.METRICS:
        assert numbers[f"main/test/{m}"]["value"] == pytest.approx(round(main["test"][m], 1))
        assert numbers[f"paper/table2/{m}"]["value"] == paper.TABLE2_JHMDB[m]


def test_table3_has_the_references_and_each_rows_share_of_the_headroom(built):
    numbers = json.loads(built.result.numbers.read_text())
    pairs = pd.read_csv(built.params.outputs / "eval/bound_pairs.csv")
    levels = {}
    for bound in ("oracle", "language_blind"):
        b = pairs[pairs["bound"] == bound]
        levels[bound] = {"mAP": 100 * b["map"].mean(), "mean_iou": 100 * b["iou"].mean()}
        levels[bound]["overall_iou"] = 100 * b["inter"].sum() / b["union"].sum()
        for m in ("mAP", "overall_iou", "mean_iou"):
            assert numbers[f"bounds/test/{bound}/{m}/mean"]["value"] == pytest.approx(levels[bound][m], abs=0.05)
            assert numbers[f"bounds/test/{bound}/{m}/ci"]["value"] > 0  # the test videos' variance alone
    expected, oracle = levels["language_blind"], levels["oracle"]
    results = pd.read_csv(built.params.outputs / "ablation/results.csv")
    for v, g in results.groupby("variant"):
        for m in ("mAP", "mean_iou"):
            row, ref = numbers[f"table3/{v}/test/{m}/mean"]["value"], expected[m]
            share = numbers[f"headroom/{v}/{m}"]
            q = numbers[f"blind/language-blind->{v}/test/{m}/q"]["value"]
            if q < 0.05 and row > ref:  # above the reference: the share of the gap to the ceiling
                assert share["value"] == pytest.approx(100 * (row - ref) / (oracle[m] - ref), abs=1.5), (v, m)
            else:
                assert share["value"] is None, (v, m)
    _, text = pdf_text(built.result.pdf)
    flat = " ".join(text.split())
    assert "oracle ceiling" in flat and "language-blind reference" in flat and "headroom closed" in flat
    assert "Detectable difference (80% power, both variances): the primary family on mAP" in flat
    assert "Seeds per row for 80% power on mAP" in flat
    assert numbers["power/primary"]["value"] > numbers["power/mAP"]["value"]  # read at α / m, not α


def test_strata_pages_match_each_runs_strata_json(built):
    """The per-stratum means over seeds are the means of what evaluation wrote per run (those are
    rounded to 0.1), with the units each stratum counts."""
    numbers = json.loads(built.result.numbers.read_text())
    results = pd.read_csv(built.params.outputs / "ablation/results.csv")
    for v, g in results.groupby("variant"):
        strata = [
            json.loads((built.params.outputs / "runs" / h / "eval/strata.json").read_text())["test"]
            for h in g["run_hash"]
        ]
        for stratum in ("distractor", "attribute=colour", "attribute=motion"):
            for m in ("mean_iou", "mAP", "grounding", "committed"):
                mean = np.mean([s[stratum][m] for s in strata])
                assert numbers[f"strata/{v}/{stratum}/{m}/mean"]["value"] == pytest.approx(mean, abs=0.1)
    test_pairs = range(N_PAIRS["test"])
    assert numbers["strata/n/distractor"]["value"] == sum(_labels(p)["distractor"] == "1" for p in test_pairs)
    assert numbers["strata/n/no_distractor"]["value"] == sum(_labels(p)["distractor"] == "0" for p in test_pairs)
    # the grounding table counts the pairs whose frame holds another actor
    with_other = [p for p in test_pairs if _other_iou(p) is not None]
    assert numbers["strata/n_grounding/distractor"]["value"] == sum(_labels(p)["distractor"] == "1" for p in with_other)
    for stratum in ("distractor", "attribute=colour"):  # the full model against the Baseline, per stratum
        for m in ("mAP", "grounding"):
            assert f"stratum/{stratum}/Baseline->CCL+RHIC+LCF/test/{m}/q" in numbers


def test_fig6_intervals_count_both_variances_with_one_seed_or_two(built, tmp_path):
    from reports.inference import within_rows
    from reports.inputs import with_sample_map
    from reports.scores import run_table

    one_seed = make_params(tmp_path)  # studies.seeds: [0], the default: Table 3's seed variance
    write_outputs(one_seed)
    for params, borrowed in ((built.params, False), (one_seed, True)):
        an = analysis_of(params)
        results = pd.read_csv(params.outputs / "ablation/results.csv")
        per_sample = with_sample_map(pd.read_csv(params.outputs / "ablation/per_sample.csv"))
        for study, sw in an.sweeps.items():
            assert sw.borrowed is borrowed and sw.default in sw.points
            df = pd.read_csv(params.outputs / "studies" / f"{study}.csv")
            for (point, split, metric), e in sw.cells.items():
                seeds = df[df["point"].astype(str) == point][f"{split}/{metric}"]
                assert e.lo <= seeds.mean() <= e.hi, (study, point, split, metric)
                if borrowed:  # the seed term is Table 3's pooled within-row seed variance on that split
                    t3 = run_table(
                        per_sample[per_sample["split"] == split], metric, list(dict.fromkeys(results["variant"]))
                    )
                    assert e.seed_term == pytest.approx(float(within_rows(t3.y).var), rel=1e-9)
            tests = an.of("fig6", scope=study)
            assert len(tests) == 2 * (len(sw.points) - 1)  # every point but the default, on val and test
            assert all(t.a == sw.default and math.isfinite(t.p_adj) for t in tests)


@pytest.fixture(scope="module")
def built_older(tmp_path_factory):
    """A report from outputs written before the bounds and strata existed (one study seed)."""
    from reports.report import build_report

    params = make_params(tmp_path_factory.mktemp("report_older"))
    write_outputs(params, newer=False)
    return SimpleNamespace(params=params, result=build_report(params, track=False))


def test_report_from_older_outputs_says_what_is_missing(built_older):
    n_pages, text = pdf_text(built_older.result.pdf)
    assert n_pages == len(EXPECTED_PAGES) - 1  # no grounding page: the per-sample table has no other_iou
    flat = " ".join(text.split())
    assert "No per-pair bounds (eval/bound_pairs.csv" in flat
    assert "Strata unavailable:" in flat and "has no distractor / attribute columns" in flat
    assert "8 run(s) have no per-sample table" in flat and "6 run(s) have no per-sample table" in flat
    numbers = json.loads(built_older.result.numbers.read_text())
    assert not [k for k in numbers if k.startswith(("bounds/", "headroom/", "strata/", "blind/", "fig6/"))]


def test_rendered_page_has_ink_everywhere_expected(built):
    """Every page PNG is A4 at 150 dpi and none is blank."""
    import matplotlib.image as mpimg

    params = built.params
    for name in EXPECTED_PAGES:
        img = mpimg.imread(params.outputs / "report" / f"{name}.png")
        assert abs(img.shape[0] - 11.69 * 150) <= 1 and abs(img.shape[1] - 8.27 * 150) <= 1, name
        assert img[..., :3].std() > 0.05, name


# ---------------------------------------------------------------------------------------------
# hand examples
# ---------------------------------------------------------------------------------------------
def test_shuffled_control_is_paired_by_seed_and_video_hand_example():
    from reports.analysis import shuffled_tests
    from reports.inputs import with_sample_map

    # own - shuffled per (seed, video), one pair a video: [[1, 2, 6], [3, 2, 10]] pp, as in
    # tests/test_inference.py: Δ 4, se² = 1 + 22/6 (one row: its own seed variance, 1 df)
    d = np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 10.0]])
    rows = []
    for split, shift in (("test", d), ("test_shuffled", np.zeros_like(d))):
        for s in range(2):
            for v in range(3):
                iou = 0.4 + shift[s, v] / 100
                rows.append(
                    {"variant": "A", "seed": s, "split": split, "pair": v, "sample": v, "video": f"v{v}"}
                    | {"inter": round(iou * 1000), "union": 1000, "iou": iou}
                )
    (t,) = shuffled_tests(with_sample_map(pd.DataFrame(rows)), ["A"], "mean_iou", 0.95)
    assert (t.kind, t.b) == ("shuffled", "A") and t.est.value == pytest.approx(4.0)
    assert t.est.se == pytest.approx(math.sqrt(1 + 22 / 6))


def test_a_one_seed_sweep_point_borrows_table3s_seed_variance_hand_example(tmp_path):
    from reports.inference import within_rows
    from reports.sweeps import analyze_study

    params = make_params(tmp_path)
    # Table 3: two rows at seeds 0, 1 on test mAP: 10 / 12 and 20 / 20 -> seed means 15 / 16
    results = pd.DataFrame(
        {"variant": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1], "test/mAP": [10.0, 12.0, 20.0, 20.0]}
    )
    borrowed = within_rows(np.array([[10.0, 12.0], [20.0, 20.0]]))
    # MS_seed = 2 * var(15, 16) = 1, MS_int = 1 -> (1 + 1 * 1) / 2 = 1 with Satterthwaite df 2
    assert borrowed.var == pytest.approx(1.0) and borrowed.df == pytest.approx(2.0)
    # one point, one seed, 4 videos of one pair: mAP shares 0, .5, .5, 1 -> 50 pp, MS_video = var = 1666.7
    samples = pd.DataFrame(
        {
            "split": "test",
            "pair": range(4),
            "sample": range(4),
            "video": ["a", "b", "c", "d"],
            "inter": 0,
            "union": 1,
            "iou": 0.0,
            "map": [0.0, 0.5, 0.5, 1.0],
            "f": math.nan,
        }
    )
    df = pd.DataFrame({"point": ["1:3"], "seed": [0], "run_hash": ["h"], "test/mAP": [50.0], "val/mAP": [math.nan]})
    no_samples = pd.DataFrame({"split": []})  # Table 3 without per-sample rows: its run scores alone
    sw = analyze_study(params, "rhic_ratio", df, {"h": samples}, results, no_samples)
    e = sw.cells[("1:3", "test", "mAP")]
    assert sw.borrowed and e.value == pytest.approx(50.0)
    assert e.seed_term == pytest.approx(1.0) and e.video_term == pytest.approx(np.var([0, 50, 50, 100], ddof=1) / 4)


def test_environment_note_counts_runs_per_environment_hand_example():
    from reports.pages import environment_note
    from reports.tables import Numbers

    a = {
        "torch": "2.14.1",
        "torchvision": "0.29.1",
        "cpu": "AMD EPYC",
        "isa": "AVX512",
        "threads": "1",
        "precision": "bf16",
    }
    num = Numbers()
    assert environment_note([a, a | {"threads": "2"}, a], num) == (
        "Environment of the runs (their run.json): 3 runs: torch 2.14.1, torchvision 0.29.1, AMD EPYC (AVX512), "
        "bf16; torch threads 1-2.",
        False,
    )
    assert num.items["environments"]["value"] == 1
    b = a | {"cpu": "Intel Xeon", "isa": "AVX2", "gpu": "NVIDIA H200", "precision": "fp32"}
    text, mixed = environment_note([a, b, {}, b, b], num := Numbers())
    assert mixed and num.items["environments"]["value"] == 2
    assert text.startswith(
        "Environment of the runs (their run.json): 3 runs: torch 2.14.1, torchvision 0.29.1, Intel Xeon (AVX2), "
        "NVIDIA H200, fp32; 1 run: torch 2.14.1, torchvision 0.29.1, AMD EPYC (AVX512), bf16; 1 run: not recorded; "
        "torch threads 1. 3 different"
    )
    assert environment_note([{}, {}], Numbers())[0].endswith(
        "not recorded (2 runs trained before the suite recorded it)."
    )


def test_strata_by_hand_and_the_runs_without_labels(tmp_path):
    from reports.strata import analyze, stratum_masks

    rows = pd.DataFrame(
        {
            "variant": "A",
            "seed": 0,
            "split": "test",
            "pair": range(4),
            "sample": range(4),
            "video": ["a", "a", "b", "c"],
            "inter": [2, 4, 6, 10],
            "union": 10,
            "iou": [0.2, 0.4, 0.6, 1.0],
            "distractor": [1, 1, 0, None],
            "attribute": ["colour", "size", "colour", None],
        }
    )
    masks = stratum_masks(rows)
    assert list(masks) == ["distractor", "no_distractor", "attribute=colour", "attribute=size"]
    assert [int(m.sum()) for m in masks.values()] == [2, 1, 2, 1]
    unlabelled = rows.assign(variant="B", distractor=None, attribute=None)
    from reports.inputs import with_sample_map

    both = with_sample_map(pd.concat([rows, rows.assign(seed=1), unlabelled, unlabelled.assign(seed=1)]))
    s = analyze(make_params(tmp_path), both, ["A", "B"], "A", "B")
    assert s.unlabelled == ["B seed 0", "B seed 1"]
    assert s.cells[("distractor", "A", "mean_iou")].value == pytest.approx(30.0)  # (20 + 40) / 2, both seeds
    assert s.units[("attribute=colour", "mean_iou")] == 2
    older = analyze(make_params(tmp_path), both.drop(columns=["distractor", "attribute"]), ["A"], "A", "A")
    assert not older.available and not older.columns


def test_table3_page_without_a_language_blind_bound_has_no_reference_and_no_share(tmp_path):
    import matplotlib.pyplot as plt

    from reports.ablation_pages import table3_page
    from reports.inputs import load_inputs
    from reports.tables import Numbers

    params = make_params(tmp_path)
    write_outputs(params, blind=False)
    num = Numbers()
    page = table3_page(params, load_inputs(params), analysis_of(params), num)
    plt.close(page.fig)
    assert 70 < num.items["bounds/test/oracle/mAP/mean"]["value"] < 95  # from bound_pairs.csv
    assert not [k for k in num.items if k.startswith(("headroom/", "bounds/test/language_blind", "blind/"))]


def test_strata_unavailable_on_real_data_says_why(tmp_path):
    import matplotlib.pyplot as plt

    from reports.ablation_pages import strata_page
    from reports.inputs import load_inputs

    params = make_params(tmp_path)
    write_outputs(params)
    real = params.replace(**{"data.source": "real", "data.a2d_root": str(tmp_path)})
    inp = load_inputs(params)
    inp.per_sample["distractor"], inp.per_sample["attribute"] = math.nan, None
    from reports.tables import Numbers

    an = analysis_of(params)
    from reports.strata import analyze

    an.strata = analyze(real, inp.per_sample, inp.variants, "Baseline", "CCL+RHIC+LCF")
    page = strata_page(real, inp, an, Numbers())
    texts = " ".join(" ".join(t.get_text().split()) for t in page.fig.texts)
    plt.close(page.fig)
    assert "Strata unavailable: Real A2D Sentences has no class labels in its sentence h5 files" in texts


# ---------------------------------------------------------------------------------------------
# errors, MLflow, real outputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rel", ["ablation/per_sample.csv", "studies/lambda_sensitivity.csv", "eval/metrics.json", "processed/summary.json"]
)
def test_missing_input_is_one_line_user_error(tmp_path, rel):
    from reports.report import build_report

    params = make_params(tmp_path)
    write_outputs(params)
    (params.outputs / rel).unlink()
    with pytest.raises(UserError) as err:
        build_report(params, track=False)
    msg = str(err.value)
    assert "\n" not in msg and str(params.outputs / rel) in msg


def test_missing_qualitative_image_names_it(tmp_path):
    from reports.report import build_report

    params = make_params(tmp_path)
    write_outputs(params)
    png = params.outputs / "runs" / "baseline-s0" / "eval" / "qualitative.png"
    png.unlink()
    with pytest.raises(UserError, match=re.escape(str(png))):
        build_report(params, track=False)


def test_cli_prints_one_line_error(tmp_path, capsys):
    from core.cli import run_main
    from reports.build import main

    params_file = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params_file)  # outputs: tmp_path/outputs, empty
    with pytest.raises(SystemExit) as exit_:
        run_main(main, ["--params", str(params_file), "--no-mlflow"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "summary.json" in lines[0]


def test_report_logged_to_mlflow_parent_run(tmp_path):
    from mlflow import MlflowClient

    from core import tracking
    from reports.report import build_report, log_report

    params = make_params(tmp_path)
    write_outputs(params)
    result = build_report(params, track=True)
    client = MlflowClient(tracking_uri=tracking.tracking_uri(params))
    run = client.get_run(result.run_id)
    fingerprint = json.loads((params.outputs / "processed/summary.json").read_text())["fingerprint"]
    assert run.data.tags[tracking.TAG_PARENT_KEY] == "report:" + fingerprint
    assert run.info.run_name == "report"
    logged = {Path(a.path).name for a in client.list_artifacts(result.run_id, "report")}
    assert {"report.pdf", "report_numbers.json"} <= logged
    assert {f"{p}.{e}" for p in EXPECTED_PAGES for e in ("png", "svg")} <= logged
    # a rebuild logs into the same parent run (found by its key)
    assert log_report(params, fingerprint, [result.numbers]) == result.run_id


@pytest.mark.skipif(not os.environ.get("REPORT_REAL_OUTPUTS"), reason="set REPORT_REAL_OUTPUTS=<outputs folder>")
def test_build_from_real_pipeline_outputs(tmp_path):
    """The report from a real pipeline run's outputs (copied, so the real folder is not written)."""
    from reports.report import build_report

    real = Path(os.environ["REPORT_REAL_OUTPUTS"]).resolve()
    params_file = real.parent / "params.yaml"
    params = load_params(params_file, [f"paths.outputs={real}"]) if params_file.is_file() else make_params(real)
    out = tmp_path / "outputs"
    keep = ("processed/summary.json", "raw/synthetic_summary.json", "eval", "train", "ablation", "studies", "runs")
    for rel in keep:
        src = real / rel
        if src.is_dir():
            shutil.copytree(src, out / rel, ignore=shutil.ignore_patterns("*.pt", "*.npy"))
        elif src.is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, out / rel)
    params = params.replace(**{"paths.outputs": str(out)})
    result = build_report(params, track=False)
    n_pages, text = pdf_text(result.pdf)
    assert n_pages == len(EXPECTED_PAGES)
    numbers = json.loads(result.numbers.read_text())
    results = pd.read_csv(out / "ablation/results.csv")
    for variant, g in results.groupby("variant"):
        assert numbers[f"table3/{variant}/test/mAP/mean"]["text"] == f"{g['test/mAP'].mean():.1f}"
    assert "paper row order as reconstructed" in " ".join(text.split())


def test_the_sensitivity_page_appears_once_the_readings_ran(tmp_path):
    from core.io import write_csv
    from reports.report import build_report

    params = make_params(tmp_path)
    write_outputs(params)
    results = pd.read_csv(params.outputs / "ablation/results.csv")
    rows = [
        {"reading": reading, **r}
        for reading in ("as params", "loss.seg_reduction=mean")  # the second reading: the same runs, for the test
        for r in results[["variant", "seed", "ccl", "rhic", "lcf", "run_hash", "test/mAP", "test/mean_iou"]].to_dict(
            "records"
        )
    ]
    write_csv(params.outputs / "sensitivity" / "results.csv", rows)
    result = build_report(params, track=False)
    n_pages, text = pdf_text(result.pdf)
    assert n_pages == len(EXPECTED_PAGES) + 1
    assert "Reconstruction sensitivity" in " ".join(text.split())
    numbers = json.loads(result.numbers.read_text())
    for reading in ("as params", "loss.seg_reduction=mean"):
        ccl = numbers[f"sensitivity/{reading}/CCL/mAP/mean"]["value"]
        assert ccl == numbers["table3/CCL/test/mAP/mean"]["value"]  # the same runs, the same level
        assert f"sensitivity/{reading}/Baseline->CCL/test/mAP/q" in numbers
        assert numbers[f"sensitivity/{reading}/Baseline/n_seeds"]["value"] == 3


def test_title_page_names_the_backbone_widths_and_the_lr_schedule():
    from reports.pages import backbone_name, lr_schedule_name

    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    narrow = p.replace(**{"model.backbone_widths": [32, 64, 128, 256]})
    assert backbone_name(narrow) == "resnet10 (32/64/128/256 ch)"
    assert backbone_name(p.replace(**{"model.backbone_widths": None})) == "resnet10"
    cosine = p.replace(**{"train.lr_schedule": "cosine", "train.warmup_steps": 50})
    assert lr_schedule_name(cosine) == "cosine, 50 warm-up steps"
    plateau = p.replace(**{"train.lr_schedule": "plateau", "train.plateau_patience": 2, "train.plateau_factor": 0.1})
    assert lr_schedule_name(plateau) == "plateau (patience 2, x0.1)"
