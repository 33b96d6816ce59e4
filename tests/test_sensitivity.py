"""ablations/sensitivity.py: which readings it trains, and its analysis on hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablations.sensitivity import format_table, readings
from core.config import load_params
from reports.inputs import with_sample_map
from reports.sweeps import analyze_readings

from .conftest import ROOT


def test_each_open_choice_is_changed_alone_from_the_params_reading(tmp_path):
    p = load_params(ROOT / "params.yaml", [f"paths.outputs={tmp_path}"])
    assert readings(p) == [
        ("as params", {}),
        ("loss.seg_reduction=mean", {"loss.seg_reduction": "mean"}),
        ("model.fusion=product", {"model.fusion": "product"}),
        ("model.merge=conv", {"model.merge": "conv"}),
    ]
    other = p.replace(**{"loss.seg_reduction": "mean"})
    assert [name for name, _ in readings(other)] == [
        "as params",
        "loss.seg_reduction=sum",
        "model.fusion=product",
        "model.merge=conv",
    ]


def test_each_reading_is_analysed_like_table3_and_printed(tmp_path):
    p = load_params(ROOT / "params.yaml", [f"paths.outputs={tmp_path}"])
    # two readings of the same two runs a seed; one pair a video: CCL - Baseline per (seed, video) is
    # [[1, 2, 6], [3, 2, 10]] pp, the table of tests/test_inference.py: Δ 4, se² = 1 + 22/6
    d = np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 10.0]])
    results, samples = [], {}
    for reading in ("as params", "model.merge=conv"):
        for variant, shift, flags in (("Baseline", 0 * d, (False,) * 3), ("CCL", d, (True, False, False))):
            for seed in range(2):
                h = f"{reading}-{variant}-{seed}"
                iou = 0.5 + shift[seed] / 100
                samples[h] = with_sample_map(
                    pd.DataFrame(
                        {"split": "test", "pair": range(3), "sample": range(3), "video": ["a", "b", "c"]}
                    ).assign(inter=np.round(iou * 1000).astype(int), union=1000, iou=iou, f=math.nan)
                )
                results.append(
                    {"reading": reading, "variant": variant, "seed": seed, "run_hash": h}
                    | dict(zip(("ccl", "rhic", "lcf"), flags))
                )
    table = analyze_readings(p, (pd.DataFrame(results), samples))
    assert table.readings == ["as params", "model.merge=conv"] and table.seeds == {
        "as params": 2,
        "model.merge=conv": 2,
    }
    (step,) = [t for t in table.tests if t.scope == "model.merge=conv" and t.metric == "mean_iou"]
    assert (step.a, step.b) == ("Baseline", "CCL") and step.est.value == pytest.approx(4.0)
    assert step.est.se == pytest.approx(math.sqrt(1 + 22 / 6))
    assert table.cells[("as params", "CCL", "mean_iou")].value == pytest.approx(54.0)
    text = format_table(table)
    assert "model.merge=conv" in text and "54.0 ±" in text and "  5.0 ±" in text  # Δ mAP: 15 - 10
