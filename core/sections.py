"""The sections of params.yaml, one validated model each: types, ranges and checks, no defaults
(params.yaml is the only place defaults live; core.config assembles them into `Params`)."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


def _registry() -> ModuleType:
    """core.data.registry, imported when params are validated: the readers and writers it names
    import this module."""
    from core.data import registry

    return registry


class DataParams(Section):
    source: Literal["synthetic", "real"]
    # which benchmark extraction reads, by its name in core.data.registry: a2d = A2D Sentences (+ J-HMDB
    # zero-shot), ytvos = Ref-YouTube-VOS (offline test split held out of train), mevis = MeViS (valid_u = test)
    dataset: str
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

    @field_validator("dataset")
    @classmethod
    def _registered(cls, v: str) -> str:
        names = _registry().names()
        if v not in names:
            known = [repr(n) for n in names]
            choices = f"{', '.join(known[:-1])} or {known[-1]}" if len(known) > 1 else known[0]
            raise ValueError(f"Input should be {choices} (got {v!r})")
        return v

    @model_validator(mode="after")
    def _check(self) -> "DataParams":
        spec = _registry().get(self.dataset)  # only the chosen dataset's root is needed
        if self.source == "real" and getattr(self, spec.root_key) is None:
            raise ValueError(
                f"source is 'real' and dataset is {self.dataset!r} but data.{spec.root_key} is not set "
                f"(the {spec.title} root)"
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
