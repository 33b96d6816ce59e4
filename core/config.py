"""params.yaml -> one validated, frozen config object (the single source of truth).

Every knob of the suite is a field below; an unknown key, a missing key, a wrong type or an
out-of-range value is a `ParamsError` naming the dotted key, raised before any work starts.
Command-line overrides (`--set loss.lcf=false`) go through the same validation.

params.yaml is the only place defaults live: the models below carry types, ranges and
cross-field checks but no default values, so every key and every section is required (a second
copy here had drifted from params.yaml: 48 vs 1200 training videos). Profiles are partial on
purpose: the layers params.yaml's `profiles:` lists are applied over it at load time
(core.layers), then the overrides, and the whole is validated.

Relative paths in params are resolved against the folder holding params.yaml (the project
root), never against the current directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from core import layers
from core.errors import ParamsError
from core.identity import identity

RATIO_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
SKIP_CLASSES = ("missing_video", "corrupt_video", "bad_h5", "mask_size", "bad_annotation", "empty_sentence")


def parse_ratio(text: str) -> tuple[float, float]:
    """'1:3' -> (1.0, 3.0): the RHIC hard:easy ratio h:e (Sec. 3.2, Eqs. 6-7)."""
    m = RATIO_RE.match(str(text))
    if not m:
        raise ValueError(f"expected 'h:e' such as '1:3', got {text!r}")
    h, e = float(m.group(1)), float(m.group(2))
    if h <= 0 or e <= 0:
        raise ValueError(f"both sides of the ratio must be > 0, got {text!r}")
    return h, e


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SyntheticParams(Section):
    """The embedded default benchmark, written in the A2D Sentences on-disk layout."""

    seed: int
    train_videos: int = Field(ge=2)
    test_videos: int = Field(ge=1)
    jhmdb_videos: int = Field(ge=1)
    frames_per_video: int = Field(ge=2, le=500)
    annotated_per_video: int = Field(ge=1)
    height: int = Field(ge=32, le=1080)
    width: int = Field(ge=32, le=1920)
    actors_min: int = Field(ge=2, le=8)
    actors_max: int = Field(ge=2, le=8)
    distractor_fraction: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> "SyntheticParams":
        if self.annotated_per_video > self.frames_per_video:
            raise ValueError("annotated_per_video must be <= frames_per_video")
        if self.actors_min > self.actors_max:
            raise ValueError("actors_min must be <= actors_max")
        if self.height % 2 or self.width % 2:
            raise ValueError("height and width must be even (H.264 yuv420p)")
        return self


class AugmentParams(Section):
    hflip: bool  # flips swap 'left'/'right' in the sentence, so position words stay true
    crop_scale_min: float = Field(gt=0.0, le=1.0)


DATASETS = ("a2d", "ytvos", "mevis")
# per dataset: its root key in `data` and its name in messages
DATASET_ROOTS = {"a2d": "a2d_root", "ytvos": "ytvos_root", "mevis": "mevis_root"}
DATASET_NAMES = {"a2d": "A2D Sentences", "ytvos": "Ref-YouTube-VOS", "mevis": "MeViS"}


class DataParams(Section):
    source: Literal["synthetic", "real"]
    # which benchmark extraction reads: a2d = A2D Sentences (+ J-HMDB zero-shot), ytvos =
    # Ref-YouTube-VOS (offline test split held out of train), mevis = MeViS (valid_u = test)
    dataset: Literal[DATASETS]  # type: ignore[valid-type]
    a2d_root: Path | None
    jhmdb_root: Path | None
    ytvos_root: Path | None
    mevis_root: Path | None
    offline_test_fraction: float = Field(ge=0.0, lt=1.0)  # ytvos: train videos held out as the test split
    offline_seed: int  # ytvos: seed of that hold-out (core.data.ytvos.offline_split)
    synthetic: SyntheticParams
    input_size: int = Field(ge=32, le=1024)
    clip_frames: int = Field(ge=1, le=64)
    window: int = Field(ge=0, le=32)
    vocab_size: int = Field(ge=2)
    max_tokens: int = Field(ge=1, le=200)
    val_fraction: float = Field(ge=0.0, lt=0.5)
    extract_workers: int = Field(ge=0, le=256)  # processes decoding videos in extraction; 0 = one per core
    allow_skip: tuple[Literal[SKIP_CLASSES], ...]  # type: ignore[valid-type]
    augment: AugmentParams

    @model_validator(mode="after")
    def _check(self) -> "DataParams":
        key = DATASET_ROOTS[self.dataset]  # only the chosen dataset's root is needed
        if self.source == "real" and getattr(self, key) is None:
            if self.dataset == "a2d":
                raise ValueError("source is 'real' but a2d_root is not set")
            raise ValueError(
                f"source is 'real' and dataset is {self.dataset!r} but data.{key} is not set "
                f"(the {DATASET_NAMES[self.dataset]} root)"
            )
        return self


class ModelParams(Section):
    backbone: Literal["resnet10", "resnet18", "resnet34", "resnet50"]
    # Res2..Res5 output channels of a BasicBlock ResNet (resnet10/18/34); None = torchvision's 64 128 256 512
    backbone_widths: tuple[int, int, int, int] | None
    # backbone initialisation: random, the language-free pretext stage (core/pretext.py), or a
    # local ImageNet state_dict file (pretrained_weights)
    init: Literal["scratch", "pretext", "imagenet"]
    pretrained_weights: Path | None
    # detectron2's FREEZE_AT: the first stages of the started backbone get no gradients
    # (0 none, 1 the stem, 2 + res2, ... 5 the whole ResNet)
    freeze_at: int = Field(ge=0, le=5)
    channels: int = Field(ge=8)
    # the multi-modal tensor the decoder reads ([open] around Eq. 3): conv([F ; tile(s)]) or conv(F ⊙ tile(s))
    fusion: Literal["concat", "product"]
    # F from the four levels ([open]): a 3x3 conv + GN + ReLU from their concatenation to C, or the
    # concatenation itself (len(levels) * C channels; s, LCF and g(.) then have that width)
    merge: Literal["conv", "concat"]
    lstm_hidden: int = Field(ge=8)
    proj_hidden: int = Field(ge=8)
    proj_dim: int = Field(ge=8)

    @model_validator(mode="after")
    def _check(self) -> "ModelParams":
        if self.init == "imagenet" and self.pretrained_weights is None:
            raise ValueError("init is 'imagenet' but pretrained_weights (a local state_dict file) is not set")
        if self.init != "imagenet" and self.pretrained_weights is not None:
            raise ValueError(f"pretrained_weights is set but init is {self.init!r}; set init: imagenet to use the file")
        if self.backbone_widths is not None:
            if self.backbone == "resnet50":
                raise ValueError("backbone_widths applies to resnet10/18/34 (BasicBlock); set it to null for resnet50")
            if self.init == "imagenet":
                raise ValueError(
                    "backbone_widths must be null with init: imagenet (the weights have torchvision's widths)"
                )
            if min(self.backbone_widths) < 8:
                raise ValueError(f"backbone_widths must each be >= 8, got {list(self.backbone_widths)}")
        return self


class LossParams(Section):
    ccl: bool
    rhic: bool
    lcf: bool
    lambda_seg: float = Field(ge=0.0, le=1.0, description="Eq. 4: weight of L_seg; L_ccl gets 1-lambda_seg")
    # Eq. 3's BCE over the pixels of a frame ([open]): their mean, or their sum (the inner-product form)
    seg_reduction: Literal["mean", "sum"]
    tau: float = Field(gt=0.0)
    rhic_ratio: str

    @field_validator("rhic_ratio")
    @classmethod
    def _ratio(cls, v: str) -> str:
        parse_ratio(v)
        return v


class TrainParams(Section):
    seed: int
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    lr_schedule: Literal["plateau", "cosine"]
    warmup_steps: int = Field(ge=0)  # cosine only
    plateau_patience: int = Field(ge=0)  # plateau only
    plateau_factor: float = Field(gt=0.0, lt=1.0)
    grad_clip: float | None = Field(gt=0.0)
    num_workers: int = Field(ge=0)
    deterministic: bool
    device: Literal["auto", "cpu", "cuda"]
    bf16: bool
    channels_last: bool
    cpu_bf16: bool | Literal["auto"]
    max_steps_per_epoch: int | None = Field(ge=1)
    # diagnostics that read a run and never change its weights (0 = off)
    grad_share_every: int = Field(ge=0)  # steps: Eq. 4's two terms' gradients on the shared encoders
    val_metrics_every: int = Field(ge=0)  # epochs: val mAP and mean IoU in the history (learning curves)


class PretrainParams(Section):
    """The language-free pretext that initialises the backbone when model.init is 'pretext'."""

    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    tau: float = Field(gt=0.0)  # temperature of the cross-frame instance InfoNCE
    seed: int


class EvalParams(Section):
    threshold: float = Field(gt=0.0, lt=1.0, description="theta: foreground if p > theta * max(p)")
    batch_size: int = Field(ge=1)
    qualitative_samples: int = Field(ge=0)


class TrackingParams(Section):
    uri: str | None  # None -> sqlite:///<outputs>/mlflow.db ; MLFLOW_TRACKING_URI overrides
    experiment: str


class Variant(Section):
    ccl: bool
    rhic: bool
    lcf: bool


class AblationParams(Section):
    seeds: tuple[int, ...] = Field(min_length=1)
    n_jobs: int = Field(ge=1)  # rows trained in parallel processes (threads split between them)
    variants: dict[str, Variant] = Field(min_length=1)


class StudyParams(Section):
    storage: str | None  # None -> sqlite:///<outputs>/optuna.db
    seeds: tuple[int, ...] = Field(min_length=1)
    rhic_ratios: tuple[str, ...]
    lambdas: tuple[float, ...]
    n_jobs: int = Field(ge=1)
    heartbeat_s: int = Field(ge=1)

    @field_validator("rhic_ratios")
    @classmethod
    def _ratios(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for r in v:
            parse_ratio(r)
        return v

    @field_validator("lambdas")
    @classmethod
    def _lambdas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for x in v:
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"lambda {x} outside [0, 1]")
        return v


TABLE3_METRICS = {"a2d": ("mAP", "overall_iou", "mean_iou"), "ytvos": ("J&F", "J", "F"), "mevis": ("J&F", "J", "F")}


class ReportParams(Section):
    confidence: float = Field(gt=0.5, lt=1.0)
    primary: Literal["steps", "vs_baseline"]  # the primary family: Table 3's steps, or each row vs Baseline
    primary_metric: Literal["mAP", "overall_iou", "mean_iou", "J&F", "J", "F"] | None  # None: the dataset's
    power: float = Field(gt=0.5, lt=1.0)
    simulations: int = Field(ge=100)


class CalibrationParams(Section):
    """ablations/calibration.py: one configuration at more seeds, for the A/A page."""

    variant: str  # a name of ablation.variants
    extra_seeds: int = Field(ge=1)  # seeds beyond ablation.seeds


class PathParams(Section):
    outputs: Path


class Params(Section):
    data: DataParams
    model: ModelParams
    loss: LossParams
    train: TrainParams
    pretrain: PretrainParams
    eval: EvalParams
    tracking: TrackingParams
    ablation: AblationParams
    studies: StudyParams
    report: ReportParams
    calibration: CalibrationParams
    paths: PathParams

    _root: Path = PrivateAttr(default_factory=Path.cwd)
    _profiles: tuple[str, ...] = PrivateAttr(default=())

    @property
    def profiles(self) -> tuple[str, ...]:
        """The profile files applied over params.yaml, in order (provenance; their values are in)."""
        return self._profiles

    @model_validator(mode="after")
    def _calibration_variant(self) -> "Params":
        if self.calibration.variant not in self.ablation.variants:
            raise ValueError(
                f"calibration.variant: {self.calibration.variant!r} is not a row of ablation.variants "
                f"({', '.join(self.ablation.variants)})"
            )
        return self

    @model_validator(mode="after")
    def _primary_metric_of_the_dataset(self) -> "Params":
        metric, allowed = self.report.primary_metric, TABLE3_METRICS[self.data.dataset]
        if metric is not None and metric not in allowed:
            raise ValueError(
                f"report.primary_metric: {metric!r} is not a Table-3 metric of data.dataset {self.data.dataset!r} "
                f"({', '.join(allowed)}, or null for {allowed[0]})"
            )
        return self

    # ---- paths derived from params (one place, so every stage agrees) ----
    def resolve(self, p: Path | str) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self._root / p).resolve()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def outputs(self) -> Path:
        return self.resolve(self.paths.outputs)

    @property
    def raw_a2d(self) -> Path:
        """A2D-layout root read by extraction: the real one, or the generated synthetic one."""
        if self.data.source == "real":
            return self.resolve(self.data.a2d_root)  # type: ignore[arg-type]
        return self.outputs / "raw" / "a2d"

    @property
    def raw_jhmdb(self) -> Path | None:
        if self.data.source == "real":
            return self.resolve(self.data.jhmdb_root) if self.data.jhmdb_root else None
        return self.outputs / "raw" / "jhmdb"

    @property
    def raw_ytvos(self) -> Path:
        """Ref-YouTube-VOS root read by extraction (data.dataset: ytvos): the real one, or <outputs>/raw/ytvos."""
        return self._raw_root("ytvos")

    @property
    def raw_mevis(self) -> Path:
        """MeViS root read by extraction (data.dataset: mevis): the real one, or <outputs>/raw/mevis."""
        return self._raw_root("mevis")

    @property
    def raw_dataset(self) -> Path:
        """The root of the dataset extraction reads (data.dataset)."""
        return self.raw_a2d if self.data.dataset == "a2d" else self._raw_root(self.data.dataset)

    def _raw_root(self, dataset: str) -> Path:
        if self.data.source != "real":
            return self.outputs / "raw" / dataset
        key = DATASET_ROOTS[dataset]
        root = getattr(self.data, key)
        if root is None:
            raise ParamsError(
                f"data.{key}: not set, but data.source is 'real' and the {DATASET_NAMES[dataset]} root is needed "
                f"(--set data.{key}=/path/to/it)"
            )
        return self.resolve(root)

    @property
    def processed(self) -> Path:
        return self.outputs / "processed"

    @property
    def pretext_weights(self) -> Path:
        """Where the pretext stage leaves the backbone state_dict (model.init: pretext)."""
        return self.outputs / "pretrain" / "backbone.pt"

    @property
    def backbone_weights(self) -> Path | None:
        """The state_dict file the backbone starts from; None = random init."""
        if self.model.init == "pretext":
            return self.pretext_weights
        if self.model.init == "imagenet":
            return self.resolve(self.model.pretrained_weights)  # type: ignore[arg-type]
        return None

    # ---- serialisation ----
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def flat(self) -> dict[str, Any]:
        """Flattened 'a.b.c' -> value, identical key names for every run (MLflow compare view)."""
        return flatten(self.to_dict())

    def replace(self, **dotted: Any) -> "Params":
        """A validated copy with dotted keys replaced: p.replace(**{'loss.lcf': False})."""
        data = self.to_dict()
        for key, value in dotted.items():
            layers.set_dotted(data, key, value)
        params = _validate(data, self._root, source="override")
        params._profiles = self._profiles
        return params

    def with_variant(self, name: str) -> "Params":
        """A copy with the loss switches of the Table-3 row `name` (ablation.variants)."""
        v = self.ablation.variants[name]
        return self.replace(**{"loss.ccl": v.ccl, "loss.rhic": v.rhic, "loss.lcf": v.lcf})

    def digest(self, keys: tuple[str, ...]) -> str:
        """The identity (`core.identity`) of the given keys: a stable short hash for caches."""
        return identity(self, keys)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _names_section(loc: tuple[Any, ...]) -> bool:
    """Whether a dotted location is a whole section (a nested model such as data.synthetic)."""
    cls: Any = Params
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(str(part))
        if field is None:
            return False
        cls = field.annotation
    return isinstance(cls, type) and issubclass(cls, Section)


def _format_error(err: ValidationError, source: str, origins: dict[str, str]) -> str:
    """Every problem on one line, each as 'dotted.key: what is wrong' after the file that set the
    key (`source`, or the profile in `origins` that set it): the CLI prints one line."""
    parts: list[tuple[str, str]] = []
    last_missing = -1
    for e in err.errors():
        loc_parts = tuple(x for x in e["loc"] if not str(x).startswith("function-after"))
        loc = ".".join(str(x) for x in loc_parts)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a parameter of the suite; check the spelling)"
        elif e["type"] == "missing":  # no defaults in the models: the file left the key out
            msg = "missing section" if _names_section(loc_parts) else "missing key"
            last_missing = len(parts)
        elif e["type"] != "value_error" and "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        text = f"{loc}: {msg}" if loc else msg  # a cross-section check names its keys itself
        parts.append((layers.origin(loc, origins, source), text))
    if last_missing >= 0:  # the hint once, after the last missing key, not after each of them
        where, text = parts[last_missing]
        parts[last_missing] = (where, text + " (params.yaml must list every key of the suite)")
    by_file: dict[str, list[str]] = {}
    for where, text in parts:
        by_file.setdefault(where, []).append(text)
    return "; ".join(f"{where}: " + "; ".join(texts) for where, texts in by_file.items())


def _validate(data: Any, root: Path, source: str, origins: dict[str, str] | None = None) -> Params:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        params = Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source, origins or {})) from None
    params._root = root
    return params


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read params.yaml, apply the profiles it lists (or `--set profiles=[...]`) as layers in
    order, then the other `--set` overrides, and validate the whole (core.layers)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    root = path.resolve().parent
    data = layers.read_yaml(path)
    data = {} if data is None else data
    source = str(path) + (" + --set " + " ".join(overrides) if overrides else "")
    sets = [layers.parse_override(item) for item in overrides]
    origins: dict[str, str] = {}
    applied: list[str] = []
    if isinstance(data, dict):
        for key, value in sets:
            if key == layers.KEY:
                data[key] = value
        for entry in layers.entries(data.pop(layers.KEY, None), source):
            file = layers.profile_file(entry, root, source)
            name = layers.label(file, root)
            layers.apply(data, layers.read_layer(file, name), name, origins, lambda k: _names_section(k.split(".")))
            applied.append(name)
        for key, value in sets:
            if key != layers.KEY:
                layers.set_dotted(data, key, value)
                layers.forget(origins, key)
    params = _validate(data, root, source, origins)
    params._profiles = tuple(applied)
    return params
