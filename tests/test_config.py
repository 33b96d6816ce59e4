import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import flatten, load_params
from core.data import registry
from core.errors import ParamsError
from core.sections import parse_ratio

from .conftest import ROOT


def test_params_yaml_states_every_key():
    """params.yaml is the single source of truth: it spells out every field of the schema (and
    `profiles`, the layers it applies, which is no parameter: tests/test_profiles.py)."""
    file_keys = set(flatten(yaml.safe_load((ROOT / "params.yaml").read_text())))
    assert file_keys == set(load_params(ROOT / "params.yaml").flat()) | {"profiles"}


@pytest.mark.parametrize(
    "override, needle",
    [
        ("loss.lambda_seg=1.5", "loss.lambda_seg: Input should be less than or equal to 1"),
        ("loss.lambda_seg=-0.1", "loss.lambda_seg"),
        ("loss.lamda=0.3", "loss.lamda: unknown key"),
        ("loss.rhic_ratio=0:3", "loss.rhic_ratio: both sides of the ratio must be > 0"),
        ("loss.rhic_ratio=abc", "loss.rhic_ratio: expected 'h:e'"),
        ("train.epochs=abc", "train.epochs: Input should be a valid integer"),
        ("train.epochs=0", "train.epochs"),
        ("nosuch.key=1", "nosuch: unknown key"),
        ("data.source=real", "data: source is 'real' and dataset is 'a2d' but data.a2d_root is not set"),
        ("studies.lambdas=[0.5, 2]", "lambda 2"),
        ("data.allow_skip=[nonsense]", "data.allow_skip.0"),
        ("model.init=imagenet", "model: init is 'imagenet' but pretrained_weights"),
        ("model.pretrained_weights=r50.pth", "model: pretrained_weights is set but init is 'pretext'"),
        ("model.init=coco", "model.init"),
        ("model.backbone_widths=[32, 64, 128]", "model.backbone_widths"),
        ("model.backbone_widths=[4, 64, 128, 256]", "model: backbone_widths must each be >= 8"),
        ("pretrain.steps=0", "pretrain.steps"),
        ("data.dataset=coco", "data.dataset: Input should be 'a2d', 'ytvos' or 'mevis'"),
        ("data.offline_test_fraction=1", "data.offline_test_fraction: Input should be less than 1"),
        ("data.offline_seed=x", "data.offline_seed: Input should be a valid integer"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ParamsError) as err:
        load_params(ROOT / "params.yaml", [override])
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_backbone_widths_only_for_basicblock_resnets_without_imagenet_weights():
    widths = "model.backbone_widths=[32, 64, 128, 256]"
    with pytest.raises(ParamsError, match=r"model: backbone_widths applies to resnet10/18/34"):
        load_params(ROOT / "params.yaml", [widths, "model.backbone=resnet50"])
    imagenet = ["model.init=imagenet", "model.pretrained_weights=r18.pth", "model.backbone=resnet18"]
    with pytest.raises(ParamsError, match=r"model: backbone_widths must be null with init: imagenet"):
        load_params(ROOT / "params.yaml", [widths, *imagenet])
    assert load_params(ROOT / "params.yaml", [widths]).model.backbone_widths == (32, 64, 128, 256)


@pytest.mark.parametrize("dataset", ["ytvos", "mevis"])
def test_real_source_needs_the_root_of_the_chosen_dataset_only(dataset):
    key = f"data.{dataset}_root"
    with pytest.raises(ParamsError) as err:
        load_params(ROOT / "params.yaml", ["data.source=real", f"data.dataset={dataset}"])
    msg = str(err.value)
    assert f"data: source is 'real' and dataset is '{dataset}' but {key} is not set" in msg and "\n" not in msg
    p = load_params(ROOT / "params.yaml", ["data.source=real", f"data.dataset={dataset}", f"{key}=raw/{dataset}"])
    assert p.data.a2d_root is None and p.raw_dataset == ROOT / "raw" / dataset  # no A2D root needed
    assert registry.get(dataset).root_of(p) == ROOT / "raw" / dataset
    other = "mevis" if dataset == "ytvos" else "ytvos"
    with pytest.raises(ParamsError, match=rf"^data\.{other}_root: not set"):
        registry.get(other).root_of(p)


def test_default_dataset_is_a2d_and_synthetic_roots_live_under_outputs():
    p = load_params(ROOT / "params.yaml", ["paths.outputs=out"])
    assert p.data.dataset == "a2d" and p.raw_dataset == p.raw_root("a2d") == ROOT / "out" / "raw" / "a2d"
    assert [p.raw_root(n) for n in ("ytvos", "mevis")] == [ROOT / "out" / "raw" / n for n in ("ytvos", "mevis")]
    assert p.data.offline_test_fraction == 0.15 and p.data.offline_seed == 0


def test_backbone_weights_follow_model_init(tmp_path):
    p = load_params(ROOT / "params.yaml", ["paths.outputs=out"])
    assert p.model.init == "pretext" and p.backbone_weights == ROOT / "out" / "pretrain" / "backbone.pt"
    assert p.replace(**{"model.init": "scratch"}).backbone_weights is None
    imagenet = p.replace(
        **{"model.init": "imagenet", "model.pretrained_weights": "w/r10.pth", "model.backbone_widths": None}
    )
    assert imagenet.backbone_weights == ROOT / "w" / "r10.pth"  # relative to params.yaml's folder


def params_copy(tmp_path: Path, edit) -> Path:
    """params.yaml, changed by `edit(data)`, written to tmp_path/params.yaml."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_unknown_key_in_file(tmp_path):
    p = params_copy(tmp_path, lambda d: d["loss"].update(lamda=0.5))
    with pytest.raises(ParamsError, match=r"params.yaml: loss.lamda: unknown key"):
        load_params(p)


HINT = "(params.yaml must list every key of the suite)"


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d["data"]["synthetic"].pop("seed"), f"data.synthetic.seed: missing key {HINT}"),
        (lambda d: d["train"].pop("grad_clip"), f"train.grad_clip: missing key {HINT}"),  # null is a value
        (lambda d: d["ablation"]["variants"]["CCL"].pop("lcf"), f"ablation.variants.CCL.lcf: missing key {HINT}"),
        (lambda d: d.pop("eval"), f"eval: missing section {HINT}"),
        (lambda d: d["data"].pop("augment"), f"data.augment: missing section {HINT}"),
    ],
)
def test_missing_key_or_section_is_one_line_naming_it_and_the_file(tmp_path, edit, expected):
    """No defaults in core/config.py: a key left out of params.yaml is an error, never a silent value."""
    p = params_copy(tmp_path, edit)
    with pytest.raises(ParamsError) as err:
        load_params(p)
    assert str(err.value) == f"{p}: {expected}"


def test_missing_hint_once_and_other_problems_kept(tmp_path):
    def edit(d):
        del d["loss"]["lambda_seg"], d["loss"]["tau"]
        d["loss"]["lamda"] = 0.5  # a typo shows up as both: the key it replaced is missing

    with pytest.raises(ParamsError) as err:
        load_params(params_copy(tmp_path, edit))
    msg = str(err.value)
    assert msg.endswith(
        f"loss.lambda_seg: missing key; loss.tau: missing key {HINT}; loss.lamda: unknown key "
        "(not a parameter of the suite; check the spelling)"
    )
    assert msg.count(HINT) == 1 and "\n" not in msg


def test_empty_params_file_names_every_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("# nothing\n")
    with pytest.raises(ParamsError) as err:
        load_params(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: data: missing section; model: missing section;")
    assert msg.endswith(f"paths: missing section {HINT}")


def test_set_override_can_supply_a_missing_key_and_validates_it(tmp_path):
    p = params_copy(tmp_path, lambda d: d["data"]["synthetic"].pop("seed"))
    assert load_params(p, ["data.synthetic.seed=7"]).data.synthetic.seed == 7
    with pytest.raises(ParamsError, match=r"seed=x: data.synthetic.seed: Input should be a valid integer"):
        load_params(p, ["data.synthetic.seed=x"])
    with pytest.raises(ParamsError, match=rf"--set train.lr=0.1: data.synthetic.seed: missing key {re.escape(HINT)}$"):
        load_params(p, ["train.lr=0.1"])


def test_models_carry_no_defaults():
    """Every field of every section is required: params.yaml is the only place a default lives."""
    from pydantic import BaseModel

    from core.config import Params

    def walk(model: type[BaseModel], prefix: str = ""):
        for name, field in model.model_fields.items():
            yield prefix + name, field
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{name}.")

    with_default = [key for key, field in walk(Params) if not field.is_required()]
    assert with_default == []
    schema = json.dumps(Params.model_json_schema())
    assert '"default":' not in schema  # nothing for docs to print but params.yaml


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("loss:\n  ccl: true\n  lcf: [\n")
    with pytest.raises(ParamsError, match=r"params.yaml:\d+: not valid YAML"):
        load_params(p)


def test_override_types_and_relative_paths(tmp_path):
    p = load_params(ROOT / "params.yaml", ["loss.lcf=false", "train.lr=3e-4", "paths.outputs=out"])
    assert p.loss.lcf is False and p.train.lr == pytest.approx(3e-4)
    assert p.outputs == ROOT / "out"  # relative to params.yaml, not the cwd


def test_replace_validates_and_digest_tracks_changes():
    p = load_params(ROOT / "params.yaml")
    q = p.replace(**{"loss.lambda_seg": 0.5})
    assert q.loss.lambda_seg == 0.5 and p.loss.lambda_seg == 0.8
    assert p.digest(("loss",)) != q.digest(("loss",))
    assert p.digest(("model",)) == q.digest(("model",))
    with pytest.raises(ParamsError):
        p.replace(**{"loss.tau": 0})


def test_parse_ratio():
    assert parse_ratio("1:3") == (1.0, 3.0)
    assert parse_ratio(" 4 : 1 ") == (4.0, 1.0)
    with pytest.raises(ValueError):
        parse_ratio("1/3")


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "core.data.extract", "--params", str(ROOT / "params.yaml"), "--set", "loss.lamda=1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # exactly one line
    assert "loss.lamda: unknown key" in r.stderr and "Traceback" not in r.stderr
