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
from reports.stats import detectable_difference, mean_ci, paired_bootstrap, paired_t

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_PAGES = ("title", "table3", "strata", "significance", "fig6", "main_results", "training", "qualitative")
SECTION_TITLES = (
    "CVLS ablation suite — report",
    "Table 3 reproduced",
    "Table 3 by stratum",
    "Paired significance",
    "Fig. 6",
    "Main results",
    "Training curves",
    "Qualitative",
)
EFFECT = {"Baseline": 0.0, "CCL": 0.06, "CCL+RHIC": 0.075, "CCL+LCF": 0.09, "CCL+RHIC+LCF": 0.10}
N_PAIRS = {"val": 40, "test": 90, "jhmdb": 50, "test_shuffled": 90}


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def make_params(outputs: Path, *overrides: str) -> Params:
    return load_params(ROOT / "params.yaml", [f"paths.outputs={outputs}", "report.bootstrap=300", *overrides])


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


def test_table3_numbers_match_results_csv(built):
    params, result = built.params, built.result
    numbers = json.loads(result.numbers.read_text())
    _, text = pdf_text(result.pdf)
    results = pd.read_csv(params.outputs / "ablation/results.csv")
    for variant, g in results.groupby("variant"):
        assert numbers[f"table3/{variant}/n_seeds"]["value"] == len(params.ablation.seeds)
        for m in ("mAP", "overall_iou", "mean_iou", "P@0.5", "P@0.9"):
            mean = g[f"test/{m}"].mean()
            ci = mean_ci(g[f"test/{m}"], params.report.confidence)
            entry = numbers[f"table3/{variant}/test/{m}/mean"]
            assert entry["text"] == f"{mean:.1f}" and entry["value"] == pytest.approx(round(mean, 1))
            assert f"{mean:.1f} ± {ci.half:.1f}" in text, (variant, m)
        for m, v in paper.TABLE3[variant].items():
            assert numbers[f"paper/table3/{variant}/{m}"]["value"] == v
    # every number recorded is printed in the PDF, as recorded
    for key, entry in numbers.items():
        assert entry["value"] is None or float(entry["text"]) == entry["value"], key
        assert entry["text"] in text, key


def test_significance_and_main_results_numbers(built):
    params, result = built.params, built.result
    numbers = json.loads(result.numbers.read_text())
    steps = [k.split("/")[1] for k in numbers if k.startswith("significance/") and k.endswith("/mean_iou/diff")]
    assert sorted(steps) == sorted(
        ["Baseline->CCL", "CCL->CCL+RHIC", "CCL->CCL+LCF", "CCL+RHIC->CCL+RHIC+LCF", "CCL+LCF->CCL+RHIC+LCF"]
    )
    # Baseline -> CCL is a clear shift in the fixture (+6 pp IoU): significant
    assert numbers["significance/Baseline->CCL/mean_iou/diff"]["value"] == pytest.approx(6, abs=2)
    assert numbers["significance/Baseline->CCL/mean_iou/p"]["value"] < 0.01
    assert numbers["significance/Baseline->CCL/seeds"]["value"] == len(params.ablation.seeds)
    main = json.loads((params.outputs / "eval/metrics.json").read_text())
    for m in paper.METRICS:
        assert numbers[f"main/test/{m}"]["value"] == pytest.approx(round(main["test"][m], 1))
        assert numbers[f"paper/table2/{m}"]["value"] == paper.TABLE2_JHMDB[m]


def test_table3_has_the_bounds_and_each_rows_share_of_the_headroom(built):
    numbers = json.loads(built.result.numbers.read_text())
    for m in ("mAP", "overall_iou", "mean_iou"):
        assert numbers[f"bounds/test/oracle/{m}"]["value"] == ORACLE[m]
        assert numbers[f"bounds/test/language_blind/{m}"]["value"] == BLIND[m]
    results = pd.read_csv(built.params.outputs / "ablation/results.csv")
    for v, g in results.groupby("variant"):
        for m in ("mAP", "mean_iou"):
            share = 100 * (g[f"test/{m}"].mean() - BLIND[m]) / (ORACLE[m] - BLIND[m])
            assert numbers[f"headroom/{v}/{m}"]["text"] == f"{share:.0f}", (v, m)
    _, text = pdf_text(built.result.pdf)
    flat = " ".join(text.split())
    assert "oracle ceiling" in flat and "language-blind bound" in flat and "headroom closed" in flat
    assert "Smallest detectable difference (80% power, α = 0.05 two-sided, paired over 90 test pairs × 3 seeds)" in flat
    assert numbers["power/pairs"]["value"] == N_PAIRS["test"] and numbers["power/seeds"]["value"] == 3


def test_strata_page_matches_each_runs_strata_json(built):
    """The page's per-stratum means over seeds are the means of what evaluation wrote per run."""
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
                assert numbers[f"strata/{v}/{stratum}/{m}/mean"]["text"] == f"{mean:.1f}", (v, stratum, m)
    test_pairs = range(N_PAIRS["test"])
    assert numbers["strata/n/distractor"]["value"] == sum(_labels(p)["distractor"] == "1" for p in test_pairs)
    assert numbers["strata/n/no_distractor"]["value"] == sum(_labels(p)["distractor"] == "0" for p in test_pairs)
    # the grounding table counts the pairs whose frame holds another actor
    with_other = [p for p in test_pairs if _other_iou(p) is not None]
    assert numbers["strata/n_grounding/distractor"]["value"] == sum(_labels(p)["distractor"] == "1" for p in with_other)


def test_fig6_intervals_contain_each_point_over_seeds_and_over_samples(built, tmp_path):
    from reports.inputs import load_inputs
    from reports.sweeps import point_intervals

    one_seed = make_params(tmp_path)  # studies.seeds: [0], the default: bootstrap over samples
    write_outputs(one_seed)
    for params, over in ((built.params, "seeds"), (one_seed, "samples")):
        inp = load_inputs(params)
        for df in (inp.rhic, inp.lam):
            for metric in ("mAP", "mean_iou"):
                iv = point_intervals(
                    df, inp.study_samples, metric=metric, splits=("val", "test"), reps=300, confidence=0.95
                )
                assert len(iv.frame) == 2 * df["point"].nunique() and set(iv.frame["over"]) == {over}
                means = (
                    df.assign(point=df["point"].astype(str))
                    .groupby("point")[[f"val/{metric}", f"test/{metric}"]]
                    .mean()
                )
                for r in iv.frame.itertuples():
                    # a point where every seed scored the same (mAP moves in coarse steps) has lo = hi
                    assert r.lo <= means.loc[r.point, f"{r.split}/{metric}"] <= r.hi, (metric, r)
                assert (iv.frame["hi"] > iv.frame["lo"]).mean() > 0.5  # but intervals, not points


@pytest.fixture(scope="module")
def built_older(tmp_path_factory):
    """A report from outputs written before the bounds and strata existed (one study seed)."""
    from reports.report import build_report

    params = make_params(tmp_path_factory.mktemp("report_older"))
    write_outputs(params, newer=False)
    return SimpleNamespace(params=params, result=build_report(params, track=False))


def test_report_from_older_outputs_says_what_is_missing(built_older):
    n_pages, text = pdf_text(built_older.result.pdf)
    assert n_pages == len(EXPECTED_PAGES)
    flat = " ".join(text.split())
    assert "Bounds: no Table-3 run has <run>/eval/bounds.json" in flat
    assert "Strata unavailable:" in flat and "has no distractor / attribute columns" in flat
    assert "8 of the 8 runs have no <run>/eval/per_sample.csv" in flat
    assert "6 of the 6 runs have no <run>/eval/per_sample.csv" in flat
    numbers = json.loads(built_older.result.numbers.read_text())
    assert not [k for k in numbers if k.startswith(("bounds/", "headroom/", "strata/"))]


def test_rendered_page_has_ink_everywhere_expected(built):
    """Every page PNG is A4 at 150 dpi and none is blank."""
    import matplotlib.image as mpimg

    params = built.params
    for name in EXPECTED_PAGES:
        img = mpimg.imread(params.outputs / "report" / f"{name}.png")
        assert abs(img.shape[0] - 11.69 * 150) <= 1 and abs(img.shape[1] - 8.27 * 150) <= 1, name
        assert img[..., :3].std() > 0.05, name


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def test_t_interval_hand_example():
    iv = mean_ci([1, 2, 3], 0.95)
    assert iv.mean == 2 and iv.n == 3
    assert iv.half == pytest.approx(2.484, abs=1e-3)  # t_{0.975,2} = 4.303, s/sqrt(3) = 0.577
    one = mean_ci([5.0], 0.95)
    assert one.mean == 5 and math.isnan(one.half)


def test_paired_bootstrap_identical_and_shifted():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (3, 200))
    same = paired_bootstrap(a, a.copy(), reps=500, confidence=0.95)
    assert same.diff == 0 and same.p == pytest.approx(1.0) and same.lo == same.hi == 0
    shifted = paired_bootstrap(a, a + 0.05 + rng.normal(0, 0.05, a.shape), reps=500, confidence=0.95)
    assert shifted.diff == pytest.approx(0.05, abs=0.01)
    assert shifted.lo < shifted.diff < shifted.hi and shifted.lo > 0
    assert shifted.p < 0.01
    noise = paired_bootstrap(a, a + rng.normal(0, 0.05, a.shape), reps=500, confidence=0.95)
    assert noise.p > 0.05 and noise.lo < 0 < noise.hi


def test_paired_t_over_seeds():
    r = paired_t([30.0, 31.0, 29.5], [33.0, 34.5, 32.0], 0.95)
    assert r.diff == pytest.approx(3.0) and r.p < 0.05 and r.lo < 3.0 < r.hi
    assert math.isnan(paired_t([30.0], [33.0], 0.95).p)


def test_detectable_difference_hand_example():
    # d = 1, 2, 3, 4: sd = sqrt(5/3) = 1.29099, sd / sqrt(4) = 0.645497
    # z_0.975 + z_0.8 = 1.959964 + 0.841621 = 2.801585 -> 1.808415
    assert detectable_difference([1, 2, 3, 4], alpha=0.05, power=0.8) == pytest.approx(1.808415, abs=1e-6)
    # t_{0.975,3} + t_{0.8,3} = 3.182446 + 0.978472 = 4.160918 -> 2.685861
    assert detectable_difference([1, 2, 3, 4], alpha=0.05, power=0.8, t=True) == pytest.approx(2.685861, abs=1e-6)
    assert math.isnan(detectable_difference([3.0], alpha=0.05, power=0.8))


def _hand_samples() -> pd.DataFrame:
    """Variant A over seeds 0, 1 and Baseline (IoU 0) on 4 test pairs of union 10; the strata of
    the pairs: distractor 1, 1, 0, 0 and attribute colour, size, colour, unknown."""
    from reports.inputs import with_sample_map

    rows = []
    for seed, inters in ((0, (2, 4, 6, 10)), (1, (4, 4, 8, 10))):
        for variant, inter in (("Baseline", (0, 0, 0, 0)), ("A", inters)):
            for pair, (i, d, a) in enumerate(zip(inter, (1, 1, 0, 0), ("colour", "size", "colour", None))):
                rows.append(
                    {"variant": variant, "seed": seed, "split": "test", "pair": pair, "inter": i, "union": 10}
                    | {"iou": i / 10, "distractor": d, "attribute": a}
                )
    return with_sample_map(pd.DataFrame(rows))


def test_power_line_hand_example():
    from reports.tables import Numbers, detectable_differences

    results = pd.DataFrame({"variant": ["Baseline", "A"], "seed": [0, 0], "ccl": [False, True]})
    results = results.assign(rhic=False, lcf=False)
    num = Numbers()
    line = detectable_differences(results, _hand_samples(), 0.95, num)
    # seed-averaged IoU differences (pp): 30, 40, 70, 100 -> sd sqrt(1000) = 31.623, / 2 * 2.801585 = 44.297
    # their mAP shares (pp): seed 0 0, 0, 30, 100; seed 1 0, 0, 70, 100 -> 0, 0, 50, 100: sd 47.871 -> 67.057
    assert num.items["power/mean_iou"]["text"] == "44.3" and num.items["power/mAP"]["text"] == "67.1"
    assert (
        "paired over 4 test pairs × 2 seeds" in line and "the median over the variants paired with Baseline (1)" in line
    )


def test_power_over_seeds_hand_example():
    from reports.tables import Numbers, seed_detectable_differences

    results = pd.DataFrame(
        {
            "variant": ["Baseline"] * 3 + ["A"] * 3,
            "seed": [0, 1, 2] * 2,
            "test/mean_iou": [30.0, 31.0, 29.0, 31.0, 33.0, 32.0],
            "test/mAP": [10.0, 11.0, 9.0, 12.0, 11.0, 13.0],
            "ccl": [False] * 3 + [True] * 3,
        }
    ).assign(rhic=False, lcf=False)
    num = Numbers()
    line = seed_detectable_differences(results, 0.05, num)
    # Mean IoU d = 1, 2, 3: sd 1, / sqrt(3) = 0.577350; t_{0.975,2} + t_{0.8,2} = 4.302653 + 1.060660
    # = 5.363313 -> 3.0965; mAP d = 2, 0, 4: sd 2 -> 6.1930
    assert num.items["power/seed/mean_iou"]["text"] == "3.1" and num.items["power/seed/mAP"]["text"] == "6.2"
    assert "paired t" in line
    one_seed = results[results["seed"] == 0]
    assert "fewer than 2 seeds" in seed_detectable_differences(one_seed, 0.05, Numbers())


def test_shuffled_control_is_a_paired_test_per_variant_hand_example():
    from reports.tables import DASH, Numbers, shuffled_control

    own = _hand_samples()
    own = own[own["variant"] == "A"]
    # the same pairs, each with another sample's sentence: seed 0 I = 1 1 3 5, seed 1 I = 2 2 4 4 (union 10)
    shuffled = own.assign(split="test_shuffled", inter=[1, 1, 3, 5, 2, 2, 4, 4])
    samples = pd.concat([own, shuffled.assign(iou=shuffled["inter"] / 10)])
    results = pd.DataFrame(
        {
            "variant": ["Baseline", "A", "A"],
            "seed": [0, 0, 1],
            "test/mAP": [0.0, 20.0, 30.0],
            "test_shuffled/mAP": [0.0, 5.0, 10.0],
        }
    )
    main = {"test": {"mAP": 9.0}, "test_shuffled": {"mAP": 4.0}}
    num = Numbers()
    t = shuffled_control(results, samples, main, reps=200, confidence=0.95, num=num)
    # IoU own - shuffled (pp), seed 0: 10 30 30 50, seed 1: 20 20 40 60 -> per pair 15 25 35 55, mean 32.5;
    # every difference is positive, so no resample mean is as far from 32.5 as 0: p = 1 / (200 + 1)
    assert num.items["shuffled/A/mean_iou/diff"]["text"] == "+32.5"
    assert num.items["shuffled/A/mean_iou/p"]["text"] == "0.005"
    assert 15 <= num.items["shuffled/A/mean_iou/lo"]["value"] < 32.5 < num.items["shuffled/A/mean_iou/hi"]["value"]
    assert t.rows[1][:4] == ["A", "25.0", "7.5", "17.5"] and t.rows[1][-1] == "4 × 2"
    # a variant without shuffled per-sample rows has no test; the main run row its metrics only
    assert t.rows[0][4:] == [DASH, DASH, "0"]
    assert t.rows[2] == ["main run", "9.0", "4.0", "5.0", DASH, DASH, DASH]


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


def test_headroom_share_hand_example():
    from reports.tables import NA, Numbers, headroom

    results = pd.DataFrame({"variant": ["A", "A"], "test/mAP": [40.0, 50.0], "test/mean_iou": [60.0, 62.0]})
    bounds = {"oracle": {"mAP": 90.0, "mean_iou": 92.0}, "language_blind": {"mAP": 18.0, "mean_iou": 38.0}}
    # mAP: (45 - 18) / (90 - 18) = 0.375; Mean IoU: (61 - 38) / (92 - 38) = 0.4259
    assert headroom(results, bounds, Numbers()).rows == [["A", "38", "43"]]
    assert headroom(results, {"oracle": bounds["oracle"]}, Numbers()).rows == [["A", NA, NA]]


def test_strata_table_hand_example():
    from reports.strata import strata_scores, strata_table
    from reports.tables import Numbers

    samples = _hand_samples()
    samples = samples[samples["variant"] == "A"]
    unknown = samples[samples["seed"] == 0].assign(variant="B", distractor=None, attribute=None)
    results = pd.DataFrame({"variant": ["A", "A", "B"], "seed": [0, 1, 0]})
    found = strata_scores(results, pd.concat([samples, unknown]))
    assert found.unlabelled == ["B seed 0"]
    # IoU of A: seed 0 .2 .4 .6 1, seed 1 .4 .4 .8 1; t_{0.975,1} = 12.706, sd/sqrt(2) = |x0 - x1| / 2
    t = strata_table(found.scores, "mean_iou", 0.95, Numbers())
    assert t.header == ["Variant", "seeds", "distractor", "no_distractor", "attribute=\ncolour", "attribute=\nsize"]
    assert t.rows == [
        ["A", "2", "35.0 ± 63.5", "85.0 ± 63.5", "50.0 ± 127.1", "40.0 ± 0.0"],
        ["test pairs (n)", "", "2", "2", "2", "1"],
    ]
    # mAP shares: seed 0 0 0 .3 1, seed 1 0 0 .7 1
    t = strata_table(found.scores, "mAP", 0.95, Numbers())
    assert t.rows[0] == ["A", "2", "0.0 ± 0.0", "75.0 ± 127.1", "25.0 ± 127.1", "0.0 ± 0.0"]
    older = strata_scores(results, samples.drop(columns=["distractor", "attribute"]))
    assert not older.available and not older.columns


def test_table3_page_without_a_language_blind_bound_says_na(tmp_path):
    import matplotlib.pyplot as plt

    from reports import pages
    from reports.inputs import load_inputs
    from reports.tables import Numbers

    params = make_params(tmp_path)
    write_outputs(params, blind=False)
    num = Numbers()
    page = pages.table3_page(params, load_inputs(params), num)
    texts = [" ".join(t.get_text().split()) for t in page.fig.texts]
    plt.close(page.fig)
    assert pages.NO_BLIND_NOTE in texts
    assert num.items["bounds/test/oracle/mAP"]["value"] == ORACLE["mAP"]
    assert not [k for k in num.items if k.startswith(("headroom/", "bounds/test/language_blind"))]


def test_strata_unavailable_on_real_data_says_why(tmp_path):
    from reports.pages import strata_unavailable
    from reports.strata import StrataScores

    real = make_params(tmp_path, "data.source=real", f"data.a2d_root={tmp_path}")
    why = strata_unavailable(real, StrataScores(pd.DataFrame(), unlabelled=["A seed 0"]))
    assert "Real A2D Sentences has no class labels in its sentence h5 files" in why


def test_point_intervals_hand_example():
    from reports.sweeps import point_intervals

    nan = math.nan
    df = pd.DataFrame(
        {
            "point": ["1:3", "1:1", "1:1"],
            "run_hash": ["h1", "h2", "h3"],
            "val/mAP": [nan, nan, nan],
            "test/mAP": [50.0, 10.0, 12.0],
        }
    )
    # one seed at 1:3: its run's two samples score 0 and 1, so a resample's mean is 0, 50 or 100
    # (1/4, 1/2, 1/4): the 2.5% and 97.5% quantiles are 0 and 100
    samples = {"h1": pd.DataFrame({"split": ["test", "test"], "map": [0.0, 1.0], "iou": [0.0, 1.0]})}
    iv = point_intervals(df, samples, metric="mAP", splits=("val", "test"), reps=2000, confidence=0.95)
    got = {(r.point, r.split): (r.lo, r.hi, r.over) for r in iv.frame.itertuples()}
    assert got.keys() == {("1:3", "test"), ("1:1", "test")}  # no val scores: no interval
    assert got["1:3", "test"] == (0.0, 100.0, "samples")
    # two seeds at 1:1: 11 ± t_{0.975,1} * sd / sqrt(2) = 11 ± 12.706 * 1 (sd = sqrt(2))
    lo, hi, over = got["1:1", "test"]
    assert (
        over == "seeds" and lo == pytest.approx(11 - 12.7062, abs=1e-4) and hi == pytest.approx(11 + 12.7062, abs=1e-4)
    )
    assert iv.label == "95% CI (t over seeds, bootstrap over samples)"


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
    from ablations.sensitivity import sensitivity_table
    from core.io import write_csv
    from reports.report import build_report

    params = make_params(tmp_path)
    write_outputs(params)
    rows = [
        {"reading": r, "variant": v, "seed": s, "test/mAP": m + s, "test/mean_iou": 30.0 + s}
        for r, shift in (("as params", 0.0), ("loss.seg_reduction=sum", 5.0))
        for v, m in (("Baseline", 10.0 + shift), ("CCL", 12.0 + shift))
        for s in (0, 1, 2)
    ]
    table = sensitivity_table(pd.DataFrame(rows), params.report.confidence)
    write_csv(params.outputs / "sensitivity" / "table.csv", table.to_dict("records"))
    result = build_report(params, track=False)
    n_pages, text = pdf_text(result.pdf)
    assert n_pages == len(EXPECTED_PAGES) + 1
    assert "Reconstruction sensitivity" in " ".join(text.split())
    numbers = json.loads(result.numbers.read_text())
    assert numbers["sensitivity/loss.seg_reduction=sum/CCL/mAP/mean"]["value"] == 18.0  # 17, 18, 19
    assert numbers["sensitivity/loss.seg_reduction=sum/CCL/delta_mAP/mean"]["value"] == 2.0
    assert numbers["sensitivity/as params/Baseline/n_seeds"]["value"] == 3


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
