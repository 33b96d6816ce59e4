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

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr, ValidationError, model_validator

from core import layers
from core.errors import ParamsError
from core.identity import identity
from core.sections import (
    AblationParams,
    CalibrationParams,
    DataParams,
    EvalParams,
    LossParams,
    ModelParams,
    PathParams,
    PretrainParams,
    ReportParams,
    Section,
    StudyParams,
    TrackingParams,
    TrainParams,
)

if TYPE_CHECKING:
    from core.data.spec import DatasetSpec


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
        metric, allowed = self.report.primary_metric, self.dataset_spec.metrics.table3
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

    def raw_root(self, name: str) -> Path | None:
        """The root of the layout `name` (a2d, jhmdb, ytvos, mevis): with data.source real, the
        folder at data.<name>_root (None when unset); with synthetic, <outputs>/raw/<name>, where
        the generate stage writes the twin."""
        if self.data.source != "real":
            return self.outputs / "raw" / name
        root = getattr(self.data, f"{name}_root")
        return None if root is None else self.resolve(root)

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The spec of data.dataset (core.data.registry): how each stage reads, scores and reports it."""
        from core.data.registry import get  # late: the readers and writers it names import this module

        return get(self.data.dataset)

    @property
    def raw_dataset(self) -> Path:
        """The root of the dataset extraction reads (data.dataset); a ParamsError naming its key
        when data.source is real and the key is not set."""
        return self.dataset_spec.root_of(self)

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
