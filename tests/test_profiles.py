"""Profiles as layers (core.layers): each profile resolves to its values over params.yaml, the
paper's builds the paper's model, layers apply in order under --set, every bad layer is a
one-line error naming its file and key, and nothing writes params.yaml."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.cli import PROFILES as BENCH_PROFILES
from core.config import Params, flatten, load_params
from core.errors import ParamsError, UserError
from core.model import CVLS
from core.profile import main as profile_main
from core.train import run_fingerprint

from .conftest import ROOT

PARAMS = ROOT / "params.yaml"
NAMES = sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))

# what the paper gives or the method spec chose for it (docs: the method's [choice] and [open] keys)
PAPER = {
    "data.input_size": 320,
    "data.vocab_size": 1000,
    "data.max_tokens": 20,
    "model.backbone": "resnet50",
    "model.backbone_widths": None,
    "model.init": "imagenet",
    "model.freeze_at": 0,
    "model.channels": 256,
    "model.fusion": "concat",
    "model.merge": "concat",
    "model.lstm_hidden": 1000,
    "model.proj_hidden": 2048,
    "model.proj_dim": 128,
    "loss.lambda_seg": 0.8,
    "loss.seg_reduction": "sum",
    "loss.tau": 0.07,
    "loss.rhic_ratio": "1:3",
    "train.batch_size": 8,
    "train.lr": 1e-4,
    "train.weight_decay": 0.0,
    "train.lr_schedule": "plateau",
    "train.plateau_patience": 2,
    "train.plateau_factor": 0.1,
    "train.warmup_steps": 0,
    "eval.threshold": 0.5,
}
DATASETS = {
    "a2d": {"data.source": "real", "data.dataset": "a2d", "data.a2d_root": "/data/a2d_sentences"},
    "ytvos": {"data.source": "real", "data.dataset": "ytvos", "data.ytvos_root": "/data/ref-youtube-vos"},
    "mevis": {"data.source": "real", "data.dataset": "mevis", "data.mevis_root": "/data/mevis"},
}


def loaded(*entries: str, path: Path = PARAMS, sets: tuple[str, ...] = ()) -> Params:
    return load_params(path, [f"profiles=[{','.join(entries)}]", *sets])


def test_params_yaml_applies_no_profile_by_default():
    p = load_params(PARAMS)
    assert yaml.safe_load(PARAMS.read_text())["profiles"] == [] and p.profiles == ()
    assert p.model.backbone == "resnet10" and p.data.source == "synthetic"


@pytest.mark.parametrize("name", NAMES)
def test_each_profile_sets_its_keys_and_leaves_the_rest_to_params_yaml(name):
    p = loaded(name)
    assert p.profiles == (f"profiles/{name}.yaml",)
    layer = flatten(yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text()))
    base = load_params(PARAMS).flat()
    got = p.flat()
    assert set(layer) <= set(got)  # every key a profile sets is a params key
    for key, value in got.items():
        assert value == layer.get(key, base[key]), key


def test_the_paper_and_dataset_profiles_hold_the_papers_values():
    paper = loaded("paper").flat()
    assert {k: paper[k] for k in PAPER} == PAPER
    assert paper["model.pretrained_weights"]  # a placeholder the user points at the weights file
    for name, expected in DATASETS.items():
        got = loaded("paper", name).flat()
        assert {k: got[k] for k in expected} == expected and got["data.extract_workers"] == 0
        assert {k: got[k] for k in PAPER} == PAPER  # a dataset's profile leaves the method alone
    assert loaded("paper", "a2d").data.jhmdb_root == Path("/data/jhmdb_sentences")
    ytvos = loaded("ytvos").data
    assert (ytvos.offline_test_fraction, ytvos.offline_seed) == (0.15, 0)
    assert loaded("long").train.epochs == 24 and loaded("tiny").model.channels == 16


def test_the_paper_profile_builds_the_papers_model(tmp_path):
    p = loaded("paper", sets=(f"paths.outputs={tmp_path}",))
    model = CVLS(p.model, p.loss, p.data.vocab_size)  # a ResNet-50 at random init: no weights read
    assert model.visual.backbone.channels == (256, 512, 1024, 2048)  # ResNet-50's Res2..Res5
    assert {sem.proj.out_channels for sem in model.visual.sem} == {256}  # C
    assert model.visual.width == 4 * 256  # F: the four levels concatenated (merge: concat)
    assert model.text.fwd.hidden_size == model.text.bwd.hidden_size == 1000  # per direction
    assert model.text.fwd.input_size == 1001  # one-hot over 1000 words + <pad>
    assert model.text.out.out_features == model.visual.width  # s at F's width
    first, _, last = model.head.net
    assert (first.in_features, first.out_features, last.out_features) == (1024, 2048, 128)  # g(.)
    assert model.decoder.net[-1].in_channels == 256
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "summary.json").write_text('{"fingerprint": "f"}')
    with pytest.raises(UserError, match=r"^model\.pretrained_weights: .*resnet50-imagenet\.pth: file not found$"):
        run_fingerprint(p)  # the placeholder path: one line naming the key before a run or a queue starts


def test_the_paper_on_real_a2d_is_one_line_of_params_yaml(tmp_path):
    for name in ("profiles", "params.yaml"):
        src, dst = ROOT / name, tmp_path / name
        if src.is_dir():
            dst.mkdir()
            for f in src.glob("*.yaml"):
                (dst / f.name).write_text(f.read_text())
        else:
            dst.write_text(src.read_text().replace("\nprofiles: []", "\nprofiles: [paper, a2d]", 1))
    before = (tmp_path / "params.yaml").read_text()
    p = load_params(tmp_path / "params.yaml")
    assert (tmp_path / "params.yaml").read_text() == before  # never written back
    assert p.profiles == ("profiles/paper.yaml", "profiles/a2d.yaml")
    assert p.flat() == loaded("paper", "a2d").flat()  # the same as --set profiles=[paper,a2d]
    assert p.raw_root("a2d") == Path("/data/a2d_sentences") and p.model.channels == 256


def test_layers_apply_in_order_and_set_overrides_win():
    assert loaded("paper", "tiny").model.channels == 16 and loaded("tiny", "paper").model.channels == 256
    both = loaded("paper", "long")
    assert (both.train.epochs, both.train.lr) == (24, 1e-4)
    over = load_params(PARAMS, ["model.channels=64", "profiles=[paper]"])  # --set order does not matter
    assert over.model.channels == 64 and over.model.lstm_hidden == 1000
    assert load_params(PARAMS, ["profiles=paper"]).profiles == ("profiles/paper.yaml",)  # one name alone


def test_a_layer_replaces_a_list_or_the_variants_and_merges_sections(tmp_path):
    layer = tmp_path / "rows.yaml"
    layer.write_text("ablation:\n  variants:\n    Baseline: {ccl: false, rhic: false, lcf: false}\n  seeds: [5]\n")
    p = loaded(str(layer))
    assert list(p.ablation.variants) == ["Baseline"] and p.ablation.seeds == (5,)
    assert p.ablation.n_jobs == load_params(PARAMS).ablation.n_jobs  # the section's other keys stay
    assert p.profiles == (str(layer),)  # outside the project: named by its path


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "model:\n  chanels: 3\n",
            "{f}: model.chanels: unknown key (not a parameter of the suite; check the spelling)",
        ),
        ("modle:\n  channels: 3\n", "{f}: modle: unknown key"),
        ("loss:\n  tau: -1\n", "{f}: loss.tau: Input should be greater than 0 (got -1)"),
        ("model:\n  init: imagenet\n", "{f}: model: init is 'imagenet' but pretrained_weights"),
        ("model: [\n", "{f}:2: not valid YAML"),
        ("- 1\n", "{f}: expected a mapping of sections, got list"),
        ("profiles: [tiny]\n", "{f}: profiles: a profile cannot list profiles"),
    ],
)
def test_a_bad_layer_is_one_line_naming_its_file_and_key(tmp_path, text, expected):
    layer = tmp_path / "bad.yaml"
    layer.write_text(text)
    with pytest.raises(ParamsError) as err:
        loaded(str(layer))
    msg = str(err.value)
    assert msg.startswith(expected.format(f=layer)) and "\n" not in msg


def test_profile_list_errors_and_set_fixes(tmp_path):
    with pytest.raises(ParamsError, match=r"profiles: no profile 'papr' \(.*papr.yaml not found; in profiles/: a2d, "):
        loaded("papr")
    with pytest.raises(ParamsError, match=r"profiles: expected a list of profile names or paths"):
        load_params(PARAMS, ["profiles={a: 1}"])
    # a key a layer sets and --set sets again is --set's: so are its errors, and its fixes
    layer = tmp_path / "bad.yaml"
    layer.write_text("train:\n  epochs: 0\n")
    assert loaded(str(layer), sets=("train.epochs=3",)).train.epochs == 3
    with pytest.raises(
        ParamsError, match=rf"^{re.escape(str(PARAMS))} \+ --set .*: train.epochs: Input should be greater"
    ):
        load_params(PARAMS, ["profiles=[tiny]", "train.epochs=0"])


def test_core_profile_prints_the_resolved_params_and_writes_nothing_else(tmp_path):
    before = PARAMS.read_text()
    out = io.StringIO()
    with redirect_stdout(out):
        assert profile_main(["--params", str(PARAMS), "--set", "profiles=[paper,a2d]", "--set", "train.epochs=5"]) == 0
    text = out.getvalue()
    assert text.startswith(f"# {PARAMS} + profiles/paper.yaml + profiles/a2d.yaml, resolved")
    expected = loaded("paper", "a2d", sets=("train.epochs=5",))
    assert Params.model_validate(yaml.safe_load(text)).flat() == expected.flat()  # every key, validated
    assert PARAMS.read_text() == before
    profile_main(["--params", str(PARAMS), "--set", "profiles=[tiny]", "--out", str(tmp_path / "r.yaml")])
    assert yaml.safe_load((tmp_path / "r.yaml").read_text()) == loaded("tiny").to_dict()


def test_the_benchmarks_full_size_is_the_paper_profile():
    full = load_params(PARAMS, BENCH_PROFILES["full"]).flat()
    assert {k: full[k] for k in PAPER} == PAPER


def test_a_paper_sized_forward_runs_on_cpu():
    """The paper's model on one small clip: shapes through the whole forward (no weights read)."""
    p = loaded("paper", sets=("data.input_size=64",))
    model = CVLS(p.model, p.loss, p.data.vocab_size).eval()
    frames = torch.randn(1, 1, 3, 64, 64)  # normalised frames (core.data.dataset.to_device)
    with torch.no_grad():
        out = model(frames, torch.tensor([[3, 4, 5]]), torch.tensor([3]))
    assert out.logits.shape[-2:] == (64, 64)
