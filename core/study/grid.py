"""What a study sweeps: the kinds, the grid of (point, seed) pairs, the study name."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from core.config import Params, parse_ratio

log = logging.getLogger("cvls")

FULL_MODEL = {"loss.ccl": True, "loss.rhic": True, "loss.lcf": True}
FULL_VARIANT = "CCL+RHIC+LCF"
OBJECTIVE = ("val", "mAP")
MAX_RETRY = 3
LOCK_TIMEOUT_S = 600
ATTR_ROW = "row"
ATTR_POINT = "point"
ATTR_SEED = "seed"
ATTR_DUPLICATE = "duplicate_of"
ATTR_CLAIM = "claim"  # {"worker": host:pid:index, "trial": number}, set once the first heartbeat is stored
SEED_RANGE = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class StudyKind:
    """One swept params key: its grid, its Optuna parameter and how to plot it."""

    name: str  # 'rhic_ratio' -> study '<name>-<digest>', outputs <name>.csv/.png/.json
    key: str  # dotted params key set per trial
    param: str  # Optuna parameter name (numeric x)
    param_range: tuple[float, float]
    title: str
    x_label: str
    categorical: bool  # plotted as evenly spaced categories (ratios) or on a numeric axis
    grid_values: Callable[[Params], Sequence[Any]]
    point_text: Callable[[Any], str]  # grid value -> the 'point' column
    x_of: Callable[[str], float]  # point text -> numeric x
    value_of: Callable[[str], Any]  # point text -> the params value

    @property
    def leaf(self) -> str:
        return self.key.split(".")[-1]


def _ratio_x(text: str) -> float:
    h, e = parse_ratio(text)
    return h / e


RHIC_RATIO = StudyKind(
    name="rhic_ratio",
    key="loss.rhic_ratio",
    param="h_over_e",
    param_range=(0.0, 1e9),
    title="RHIC hard:easy ratio (Fig. 6a)",
    x_label="RHIC hard:easy ratio h:e",
    categorical=True,
    grid_values=lambda p: p.studies.rhic_ratios,
    point_text=lambda v: str(v).strip(),
    x_of=_ratio_x,
    value_of=lambda t: t,
)
LAMBDA_SENSITIVITY = StudyKind(
    name="lambda_sensitivity",
    key="loss.lambda_seg",
    param="lambda_seg",
    param_range=(0.0, 1.0),
    title="Loss weight λ sensitivity (Eq. 4)",
    x_label="λ = loss.lambda_seg (weight of L_seg; L_ccl gets 1 − λ)",
    categorical=False,
    grid_values=lambda p: p.studies.lambdas,
    point_text=lambda v: repr(float(v)),
    x_of=float,
    value_of=float,
)
KINDS = {k.name: k for k in (RHIC_RATIO, LAMBDA_SENSITIVITY)}


@dataclass(frozen=True)
class GridPoint:
    point: str  # '1:3' or '0.8'
    x: float
    seed: int

    @property
    def pair(self) -> tuple[str, int]:
        return (self.point, self.seed)


def grid(kind: StudyKind, params: Params) -> list[GridPoint]:
    """Every (point, seed) pair of the study, points in ascending x (the paper's order), no repeats."""
    points: list[str] = []
    for v in kind.grid_values(params):
        text = kind.point_text(v)
        if text not in points:
            points.append(text)
    points.sort(key=kind.x_of)  # stable: ties keep the params order
    seeds = list(dict.fromkeys(params.studies.seeds))
    return [GridPoint(pt, kind.x_of(pt), s) for pt in points for s in seeds]


def base_params(kind: StudyKind, params: Params) -> Params:
    """The config every trial shares: the full model (CCL + RHIC + LCF), trained like the main run."""
    return params.replace(**FULL_MODEL)


def trial_params(kind: StudyKind, base: Params, gp: GridPoint) -> Params:
    return base.replace(**{kind.key: kind.value_of(gp.point), "train.seed": gp.seed})


def study_name(kind: StudyKind, base: Params, data_fingerprint: str) -> str:
    """'<kind>-<10 hex>' over data, model, loss (but the swept key), train (but the seed), eval
    and the data fingerprint: the same params.yaml resumes the same study, a changed one does not."""
    d = base.to_dict()
    shared = {k: d[k] for k in ("data", "model", "loss", "train", "eval")}
    shared["loss"] = {k: v for k, v in shared["loss"].items() if k != kind.leaf}
    shared["train"] = {k: v for k, v in shared["train"].items() if k != "seed"}
    blob = json.dumps({"kind": kind.name, "shared": shared, "data_fingerprint": data_fingerprint}, sort_keys=True)
    return f"{kind.name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def pair_of(trial: Any) -> tuple[str, int] | None:
    attrs = trial.user_attrs
    if ATTR_POINT not in attrs or ATTR_SEED not in attrs:
        return None
    return (str(attrs[ATTR_POINT]), int(attrs[ATTR_SEED]))
