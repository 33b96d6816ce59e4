"""core/ablation.py (ablations/components.py), the studies' base config: what each row trains, the rows' queue."""

from __future__ import annotations

import pytest

from core.ablation import variant_params
from core.config import load_params
from core.identity import config_hash
from core.runtime import pin_round_robin
from core.study import ABLATION, RHIC_RATIO, grid, study_name, trial_params
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
    assert config_hash(trial.replace(**{"train.seed": 0}), "fp") == config_hash(row, "fp")
    # and the main run itself (seed 0 of train.seed): the suite trains no config twice
    assert config_hash(row, "fp") == config_hash(p.replace(**{"train.seed": 0}), "fp")


def test_the_ablation_queue_is_every_variant_by_seed_in_the_params_order(params):
    p = params.replace(**{"ablation.seeds": [2, 0, 2]})
    pairs = [(gp.point, gp.x, gp.seed) for gp in grid(ABLATION, p)]
    variants = list(p.ablation.variants)
    assert pairs == [(v, float(i), s) for i, v in enumerate(variants) for s in (2, 0)]  # repeats dropped
    gp = grid(ABLATION, p)[3]  # CCL, seed 0
    assert trial_params(ABLATION, base_params(ABLATION, p), gp) == variant_params(p, "CCL", 0)


def test_the_ablation_study_name_follows_the_variants_not_the_switches_they_set(params):
    name = study_name(ABLATION, base_params(ABLATION, params), "fp")
    assert name.startswith("ablation-")
    # the top-level switches are what each row sets: they do not start another queue
    assert study_name(ABLATION, params.replace(**{"loss.lcf": False, "loss.ccl": False}), "fp") == name
    # a row's definition, the budget or the data do
    changed = params.ablation.variants["CCL"].model_copy(update={"lcf": True})
    variants = {**params.ablation.variants, "CCL": changed}
    assert study_name(ABLATION, params.replace(**{"ablation.variants": variants}), "fp") != name
    assert study_name(ABLATION, params.replace(**{"train.epochs": 8}), "fp") != name
    assert study_name(ABLATION, params, "other") != name
    # the seed is a trial's, not the queue's; the sweeps keep their own names
    assert study_name(ABLATION, params.replace(**{"train.seed": 9}), "fp") == name
    assert study_name(RHIC_RATIO, base_params(RHIC_RATIO, params), "fp") != name


@pytest.mark.parametrize(
    ("workers", "devices", "want"),
    [
        (3, ["0", "1"], ["0", "1", "0"]),
        (2, ["4", "6", "7"], ["4", "6"]),  # CUDA_VISIBLE_DEVICES=4,6,7: its ids, in its order
        (2, ["0"], [None, None]),  # one GPU: both share it, nothing to pin
        (1, [], [None]),  # CPU
    ],
)
def test_local_workers_are_pinned_one_gpu_each(workers, devices, want):
    assert pin_round_robin(workers, devices) == want


def test_calibration_trains_one_configuration_at_more_seeds_and_reports_its_aa_rates(tiny_store, tmp_path, capsys):
    import json
    import shutil

    import yaml

    from ablations.calibration import calibration_params, main

    for folder in ("processed", "pretrain", "raw"):
        shutil.copytree(tiny_store.outputs / folder, tmp_path / "outputs" / folder)
    fast = {"train.epochs": 1, "train.max_steps_per_epoch": 2, "ablation.n_jobs": 1, "calibration.extra_seeds": 2}
    p = tiny_store.replace(**fast, **{"paths.outputs": str(tmp_path / "outputs"), "ablation.seeds": [0, 1]})
    cal = calibration_params(p)
    assert list(cal.ablation.variants) == ["Baseline"] and cal.ablation.seeds == (0, 1, 2, 3)
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(p.to_dict(), sort_keys=False))
    assert main(["--params", str(pfile), "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"]) == 0
    out = capsys.readouterr().out
    assert "Baseline at 4 seeds" in out and "A/A over 500 random splits into 2 rows of 2 seeds" in out
    folder = p.outputs / "calibration"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2, 3] and set(summary["components"]) == {"seed", "video", "seed × video", "unit"}
    rows = (folder / "per_sample.csv").read_text().splitlines()
    assert len(rows) - 1 == 4 * sum(1 for r in rows[1:] if r.split(",")[1] == "0")  # every seed's test pairs
    # rerun: every seed is COMPLETE in the queue, nothing trains again
    assert main(["--params", str(pfile), "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"]) == 0
    assert "every trial is already COMPLETE" in capsys.readouterr().out
