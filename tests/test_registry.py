"""The dataset registry (core.data.registry): complete, every field of a spec read by a stage, and
a dataset registered here (a toy one, in a test) picked up by every lookup of data.dataset:
params validation, generate, extract, the report's protocol and the submission export."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml
from PIL import Image

from core.data import registry, spec
from core.data.extract import extract
from core.data.spec import DAVIS, DatasetSpec, ReportText
from core.data.store import open_split
from core.data.synthetic import generate
from core.data.types import Expression, Frame, SkipLedger, Video
from core.errors import ParamsError, UserError
from core.export import submission_spec
from core.identity import OPERATIONAL
from core.sections import DataParams
from reports.protocol import CONTEXTS, protocol

from .conftest import ROOT, tiny_params


def _roots(s: DatasetSpec) -> tuple[str, ...]:
    return (s.root, *s.extra_roots)


def test_every_registered_dataset_is_a_valid_data_dataset_and_nothing_else_is(tmp_path: Path) -> None:
    assert registry.names() == ("a2d", "ytvos", "mevis")
    for name, s in registry.DATASETS.items():
        assert s.name == name and registry.get(name) is s
        assert tiny_params(tmp_path, **{"data.dataset": name}).dataset_spec is s
        assert s.report.context in CONTEXTS and s.metrics.primary == s.metrics.table3[0]
    with pytest.raises(ParamsError, match=r"data\.dataset: Input should be 'a2d', 'ytvos' or 'mevis' \(got 'coco'\)"):
        tiny_params(tmp_path, **{"data.dataset": "coco"})
    with pytest.raises(KeyError, match="no dataset 'coco' is registered"):
        registry.get("coco")


def test_every_root_is_a_params_key_everywhere_a_root_key_must_be() -> None:
    """data.<root>_root: a field of DataParams, a key of params.yaml, operational in the identity
    (a machine may mount the data anywhere) and a parameter of dvc.yaml's extract stage."""
    params_yaml = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    extract_params = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["extract"]["params"][0]
    (extract_keys,) = extract_params.values()
    keys = {f"{r}_root" for s in registry.DATASETS.values() for r in _roots(s)}
    assert keys == {k for k in DataParams.model_fields if k.endswith("_root")}
    for key in sorted(keys):
        assert key in params_yaml and f"data.{key}" in OPERATIONAL and f"data.{key}" in extract_keys, key


def test_every_field_of_a_spec_is_read_by_a_stage() -> None:
    """No dead field: each field of the spec's dataclasses is read (`.field`) by code outside the
    registry, which only sets them (the stages: config, extract, generate, evaluate, export, the report)."""
    sources = [p for folder in ("core", "reports") for p in (ROOT / folder).rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources if p.name != "registry.py")
    for cls in (spec.DatasetSpec, spec.MetricFamily, spec.ReportText, spec.Submission):
        for f in dataclasses.fields(cls):
            assert re.search(rf"\.{f.name}\b", text), f"{cls.__name__}.{f.name} is read nowhere"


# ---------------------------------------------------------------- a toy dataset, registered here
H = W = 16
VIDEOS = {"t0": "train", "t1": "train", "t2": "train", "t3": "test"}


def _toy_frames(k: int) -> np.ndarray:
    """uint8 [2, H, W, 3]: a flat frame, a white square at a video-dependent place."""
    frames = np.full((2, H, W, 3), 40, np.uint8)
    frames[:, k : k + 6, 4:10] = 255
    return frames


def _write_toy(params, plan, root: Path) -> dict:
    for k, vid in enumerate(VIDEOS):
        (root / vid).mkdir(parents=True)
        for t, frame in enumerate(_toy_frames(k), start=1):
            Image.fromarray(frame).save(root / vid / f"{t:05d}.png")
    return {"source": "synthetic", "generated": True, "dataset": "toy", "videos": len(VIDEOS)}


def _read_toy(params, root: Path, ledger: SkipLedger, unions) -> Iterator[tuple[str, Video]]:
    for k, vid in enumerate(VIDEOS):
        mask = np.zeros((1, H, W), bool)
        mask[0, k : k + 6, 4:10] = True
        absent = np.zeros((0, H, W), bool)
        frames = (
            Frame(0, (1,), mask, f"{root}/{vid}"),
            Frame(1, (), absent, f"{root}/{vid}"),  # the square's mask is not annotated here
        )
        say = Expression("the white square", 1, f"toy:{vid}")
        yield VIDEOS[vid], Video(vid, VIDEOS[vid], root / vid, H, W, frames, (say,))


TOY = DatasetSpec(
    name="toy",
    title="Toy Squares",
    root="toy",
    read=_read_toy,
    write_twin=_write_toy,
    metrics=DAVIS,
    report=ReportText(test_split="toy test videos", test_short="toy test", real_strata_note="none"),
    test_split=lambda params, root: {"kind": "the last video"},
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> DatasetSpec:
    monkeypatch.setitem(registry.DATASETS, "toy", TOY)
    return TOY


def test_a_dataset_registered_in_a_test_is_what_data_dataset_picks(tmp_path: Path, toy: DatasetSpec) -> None:
    p = tiny_params(tmp_path, **{"data.dataset": "toy"})
    assert p.dataset_spec is toy and p.raw_dataset == tmp_path / "raw" / "toy"
    # generate writes the toy's twin; extract reads it with the toy's reader
    assert generate(p) == json.loads((tmp_path / "raw" / "synthetic_summary.json").read_text())
    assert sorted(q.name for q in p.raw_dataset.iterdir()) == sorted(VIDEOS)
    summary = extract(p)
    assert summary["dataset"] == "toy" and summary["toy_root"] == str(p.raw_dataset)
    assert summary["test_split"] == {"kind": "the last video"} and "virtual_instances" not in summary
    assert summary["splits"]["test"]["videos"] == 1 and "jhmdb" not in summary["splits"]
    test = open_split(p.processed, "test")
    assert [v["id"] for v in test.videos] == ["t3"]
    # its metric family: DAVIS scores every annotated frame, so the absent one is kept for evaluation
    (sample,) = test.samples
    assert len(sample.frames) == 1 and len(sample.absent) == 1
    # params check the family's metrics; the report speaks of it; it has no split to submit
    with pytest.raises(ParamsError, match="report.primary_metric: 'mAP' is not a Table-3 metric of data.dataset 'toy'"):
        p.replace(**{"report.primary_metric": "mAP"})
    proto = protocol(p)
    assert (proto.dataset, proto.primary, proto.unit_name, proto.test_short) == ("toy", "J&F", "expression", "toy test")
    assert "the CVLS paper reports no Toy Squares numbers" in proto.context_note
    assert proto.main_title == "Main results: J&F on Toy Squares toy test (no published context)"
    with pytest.raises(UserError, match=r"export is for data.dataset ytvos or mevis .* data.dataset is 'toy'"):
        submission_spec(p)


def test_an_unset_real_root_names_its_key(tmp_path: Path) -> None:
    for s in registry.DATASETS.values():
        p = tiny_params(tmp_path, **{"data.source": "real", f"data.{s.root_key}": "/data/x", "data.dataset": s.name})
        assert s.root_of(p) == Path("/data/x")
        others = [o for o in registry.DATASETS.values() if o.root != s.root]
        for o in others:
            with pytest.raises(ParamsError, match=rf"^data\.{o.root_key}: not set, but data.source is 'real'"):
                o.root_of(p)
