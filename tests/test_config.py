import subprocess
import sys

import pytest
import yaml

from core.config import load_params, merge_profile, parse_ratio
from core.errors import ParamsError

from .conftest import ROOT, TINY


def test_params_yaml_states_every_key():
    """params.yaml is the single source of truth: it spells out every field of the schema."""
    from core.config import flatten

    file_keys = set(flatten(yaml.safe_load((ROOT / "params.yaml").read_text())))
    assert file_keys == set(load_params(ROOT / "params.yaml").flat())


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
        ("data.source=real", "data: source is 'real' but a2d_root is not set"),
        ("studies.lambdas=[0.5, 2]", "lambda 2"),
        ("data.allow_skip=[nonsense]", "data.allow_skip.0"),
        ("model.init=imagenet", "model: init is 'imagenet' but pretrained_weights"),
        ("model.pretrained_weights=r50.pth", "model: pretrained_weights is set but init is 'pretext'"),
        ("model.init=coco", "model.init"),
        ("pretrain.steps=0", "pretrain.steps"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ParamsError) as err:
        load_params(ROOT / "params.yaml", [override])
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_backbone_weights_follow_model_init(tmp_path):
    p = load_params(ROOT / "params.yaml", ["paths.outputs=out"])
    assert p.model.init == "pretext" and p.backbone_weights == ROOT / "out" / "pretrain" / "backbone.pt"
    assert p.replace(**{"model.init": "scratch"}).backbone_weights is None
    imagenet = p.replace(**{"model.init": "imagenet", "model.pretrained_weights": "w/r10.pth"})
    assert imagenet.backbone_weights == ROOT / "w" / "r10.pth"  # relative to params.yaml's folder


def test_unknown_key_in_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("loss:\n  lamda: 0.5\n")
    with pytest.raises(ParamsError, match=r"params.yaml: loss.lamda: unknown key"):
        load_params(p)


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


def test_merge_profile_roundtrip(tmp_path):
    out = tmp_path / "params.yaml"
    merge_profile(ROOT / "params.yaml", TINY, out)
    p = load_params(out)
    assert p.data.input_size == 32 and p.ablation.seeds == (0, 1)
    assert p.loss.lambda_seg == 0.8  # untouched keys keep the params.yaml value


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "core.data.extract", "--params", str(ROOT / "params.yaml"), "--set", "loss.lamda=1"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # exactly one line
    assert "loss.lamda: unknown key" in r.stderr and "Traceback" not in r.stderr
