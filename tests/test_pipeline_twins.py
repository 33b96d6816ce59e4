"""`dvc repro` on the synthetic twins of Ref-YouTube-VOS and MeViS (data.dataset ytvos | mevis),
from a copy of the tracked tree with the tiny profile, as a user runs it. Its own file so that
pytest-xdist (`--dist loadfile`) can run it next to test_pipeline.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .pipeline_clone import STAGES, TWIN_VARIANTS, clone_project, run_env, run_ok

# CI time: the stages after `evaluate` do not depend on the dataset's reader (they read the
# processed store and the runs' metrics), so MeViS runs the whole pipeline to its J&F report and
# Ref-YouTube-VOS the dataset-specific part, `dvc repro evaluate` (its report: test_report_vos.py)
TWIN_TARGETS = {"ytvos": "evaluate", "mevis": "report"}


@pytest.mark.parametrize("dataset", sorted(TWIN_TARGETS))
def test_dvc_repro_on_a_synthetic_twin_reports_jf_and_exports_valid(tmp_path_factory, dataset):
    """`data.dataset: ytvos | mevis` and `dvc repro`: the twin is written in that dataset's layout
    and read by its reader, every run is scored in J, F and J&F (the split's J&F recomputed here
    from the per-sample file, per expression first), Table 3 is in J&F (MeViS: the whole
    pipeline), and `python -m core.evaluate --export` zips the valid split's masks in the
    submission layout."""
    import csv
    import zipfile

    project = clone_project(tmp_path_factory, dataset)
    target = TWIN_TARGETS[dataset]
    out = run_ok([str(Path(sys.executable).parent / "dvc"), "repro", target], project)
    stages = STAGES[: STAGES.index(target) + 1]
    for stage in STAGES:
        assert (f"Running stage '{stage}'" in out) == (stage in stages), stage
    outputs = project / "outputs"
    metrics = json.loads((outputs / "eval" / "metrics.json").read_text())
    assert "jhmdb" not in metrics and {"val", "test", "test_shuffled"} <= set(metrics)
    with open(outputs / "eval" / "per_sample.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    per_expression: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        per_expression.setdefault(r["sample"], []).append((float(r["iou"]), float(r["f"])))
    j = 100 * sum(sum(x for x, _ in v) / len(v) for v in per_expression.values()) / len(per_expression)
    f_ = 100 * sum(sum(y for _, y in v) / len(v) for v in per_expression.values()) / len(per_expression)
    test = metrics["test"]
    assert test["J"] == pytest.approx(j) and test["F"] == pytest.approx(f_)
    assert test["J&F"] == pytest.approx((j + f_) / 2) and test["n_expressions"] == len(per_expression)
    if target == "report":
        _check_jf_report(outputs)

    run_ok([sys.executable, "-m", "core.evaluate", "--export"], project)
    (zip_path,) = (outputs / "runs").glob("*/export/*.zip")
    with zipfile.ZipFile(zip_path) as z:
        names = [n for n in z.namelist() if n.endswith(".png")]
    assert names and all(n.count("/") == (3 if dataset == "ytvos" else 2) for n in names)
    if dataset == "ytvos":  # CI time: the command is the same for both (tests/test_export.py: each dataset)
        _check_incomplete_export(project, dataset, zip_path, len(names))


def _check_incomplete_export(project: Path, dataset: str, zip_path: Path, complete: int) -> None:
    """A listed frame's JPEG gone: `--export` fails in one line (how many masks are missing, the
    first) and keeps the zip; `--allow-incomplete` writes the partial zip and says so last."""
    import subprocess
    import zipfile

    from core.data import mevis, ytvos

    raw = project / "outputs" / "raw" / dataset
    meta = ytvos.meta_expressions_path(raw, "valid") if dataset == "ytvos" else mevis.meta_path(raw, "valid")
    vid, entry = next(iter(json.loads(meta.read_text())["videos"].items()))
    frame, n_exps = entry["frames"][0], len(entry["expressions"])
    jpeg = ytvos.frame_path(raw, "valid", vid, frame) if dataset == "ytvos" else mevis.frames_dir(raw, "valid", vid)
    jpeg = jpeg if dataset == "ytvos" else jpeg / mevis.jpeg_name(frame)
    jpeg.unlink()
    before = zip_path.read_bytes()
    cmd = [sys.executable, "-m", "core.evaluate", "--export"]
    r = subprocess.run(cmd, cwd=project, env=run_env(), capture_output=True, text=True, timeout=600)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith(f"error: {meta}: submission not written: {n_exps} of the "), last
    assert "(the first: " in last and f"no JPEG {jpeg}" in last and last.endswith("pass --allow-incomplete")
    assert zip_path.read_bytes() == before
    r = subprocess.run([*cmd, "--allow-incomplete"], cwd=project, env=run_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].startswith(f"INCOMPLETE (--allow-incomplete): {n_exps} of the ")
    with zipfile.ZipFile(zip_path) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == complete - n_exps


def _check_jf_report(outputs: Path) -> None:
    """Table 3 of a J&F dataset: every row scored in J&F, the report's means equal results.csv's,
    the paired tests over expressions (the Baseline -> CCL step, each row vs its shuffled control)."""
    import csv

    with open(outputs / "ablation" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(TWIN_VARIANTS) * 2 and all(r["test/J&F"] for r in table)
    numbers = json.loads((outputs / "report" / "report_numbers.json").read_text())
    for variant in {r["variant"] for r in table}:
        mean = sum(float(r["test/J&F"]) for r in table if r["variant"] == variant) / 2
        assert numbers[f"table3/{variant}/test/J&F/mean"]["value"] == pytest.approx(mean, abs=0.051)
    assert "step/Baseline->CCL/test/J/diff" in numbers  # the step on J, over the expressions of the test videos
    for variant in TWIN_VARIANTS:
        assert f"shuffled/shuffled->{variant}/test/J&F/q" in numbers, variant
    assert (outputs / "report" / "report.pdf").stat().st_size > 10_000
