"""ablations/sensitivity.py: which readings it trains, and its table on hand-computed numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ablations.sensitivity import readings, sensitivity_table
from core.config import load_params

from .conftest import ROOT

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom


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


def test_the_table_has_seed_intervals_and_differences_paired_over_seeds():
    rows = []
    for seed, (base, ccl) in enumerate([(10.0, 11.0), (12.0, 15.0), (14.0, 14.0)]):
        rows.append({"reading": "r", "variant": "Baseline", "seed": seed, "test/mAP": base, "test/mean_iou": 30.0})
        rows.append({"reading": "r", "variant": "CCL", "seed": seed, "test/mAP": ccl, "test/mean_iou": 30.0 + seed})
    table = sensitivity_table(pd.DataFrame(rows), 0.95).set_index("variant")
    ccl = table.loc["CCL"]
    assert ccl["test/mAP"] == pytest.approx(40 / 3)
    # Δ per seed 1, 3, 0: mean 4/3, sd sqrt(7/3)
    assert ccl["Δ test/mAP"] == pytest.approx(4 / 3)
    assert ccl["Δ test/mAP ±"] == pytest.approx(T_975_2 * math.sqrt(7 / 3) / math.sqrt(3))
    assert ccl["Δ test/mean_iou"] == pytest.approx(1.0) and ccl["seeds"] == 3
    base = table.loc["Baseline"]
    assert base["Δ test/mAP"] == 0 and base["Δ test/mAP ±"] == 0
    assert base["test/mAP ±"] == pytest.approx(T_975_2 * 2.0 / math.sqrt(3))  # sd of 10, 12, 14 is 2
