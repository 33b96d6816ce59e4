"""ablations/components.py and the studies' base config: which params each row trains with."""

from __future__ import annotations

import pytest

from ablations.components import variant_params
from core import tracking
from core.config import load_params
from core.study import RHIC_RATIO
from core.study.grid import base_params

from .conftest import ROOT


@pytest.fixture
def params(tmp_path):
    return load_params(ROOT / "params.yaml", [f"paths.outputs={tmp_path}", "train.epochs=7"])


def test_rows_are_the_table3_switches_at_the_main_runs_budget(params):
    p = variant_params(params, "CCL+LCF", seed=2)
    assert (p.loss.ccl, p.loss.rhic, p.loss.lcf, p.train.seed, p.train.epochs) == (True, False, True, 2, 7)
    base = variant_params(params, "Baseline", seed=0)
    assert (base.loss.ccl, base.loss.rhic, base.loss.lcf, base.train.epochs) == (False, False, False, 7)
    assert base.train == params.train.model_copy(update={"seed": 0})  # every train.* key as the main run


def test_study_trials_share_the_full_model_row_of_the_ablation(params):
    p = params
    trial = base_params(RHIC_RATIO, p)
    assert (trial.loss.ccl, trial.loss.rhic, trial.loss.lcf, trial.train.epochs) == (True, True, True, 7)
    # the same run identity as the ablation's full-model row (ratio 1:3, seed 0): one run serves both
    row = variant_params(p, "CCL+RHIC+LCF", seed=0)
    assert tracking.config_hash(trial.replace(**{"train.seed": 0}), "fp") == tracking.config_hash(row, "fp")
    # and the main run itself (seed 0 of train.seed): the suite trains no config twice
    assert tracking.config_hash(row, "fp") == tracking.config_hash(p.replace(**{"train.seed": 0}), "fp")
