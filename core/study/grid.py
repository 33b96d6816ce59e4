"""What a study sweeps: the kinds, the grid of (point, seed) pairs, the study name.

Three kinds share one queue (core.study): the two sweeps of the full model (Fig. 6a/6b: one
params key over a grid) and the component ablation (Table 3: the points are the variants of
params.ablation.variants, each a set of loss switches, over params.ablation.seeds)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from core.config import Params
from core.identity import RUN, identity
from core.sections import parse_ratio

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
# {"worker": host:pid:index, "trial": number, "owner": host:pid:start (core.procs)}, set once
# the first heartbeat is stored
ATTR_CLAIM = "claim"
SEED_RANGE = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class StudyKind:
    """What a study sweeps: its grid, its Optuna parameter, how a point configures a run, how to plot it."""

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
    seeds_of: Callable[[Params], Sequence[int]] = lambda p: p.studies.seeds
    sets: tuple[str, ...] = ()  # the loss keys a variant sets (left out of the study name); sweeps: ()
    sweeps_full_model: bool = True  # every trial is the full model (CCL + RHIC + LCF) but the swept key

    def configure(self, base: Params, point: str) -> Params:
        """The run a point trains (its seed still to set): the swept key, or the variant's switches."""
        if self.sweeps_full_model:
            return base.replace(**{self.key: self.value_of(point)})
        return base.with_variant(point)

    def variant_of(self, point: str) -> str:
        return FULL_VARIANT if self.sweeps_full_model else point


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
ABLATION = StudyKind(
    name="ablation",
    key="ablation.variants",
    param="variant",  # the variant's position in params.ablation.variants
    param_range=(0.0, 1e9),
    title="Component ablation (Table 3)",
    x_label="variant",
    categorical=True,
    grid_values=lambda p: list(p.ablation.variants),
    point_text=str,
    x_of=lambda t: float("nan"),  # set by position in `grid`: the variants keep the params order
    value_of=str,
    seeds_of=lambda p: p.ablation.seeds,
    sets=("ccl", "rhic", "lcf"),
    sweeps_full_model=False,
)
KINDS = {k.name: k for k in (RHIC_RATIO, LAMBDA_SENSITIVITY, ABLATION)}


@dataclass(frozen=True)
class GridPoint:
    point: str  # '1:3' or '0.8'
    x: float
    seed: int

    @property
    def pair(self) -> tuple[str, int]:
        return (self.point, self.seed)


def grid(kind: StudyKind, params: Params) -> list[GridPoint]:
    """Every (point, seed) pair of the study, no repeats: the sweeps' points in ascending x (the
    paper's order), the ablation's variants in the params order (x = their position)."""
    points: list[str] = []
    for v in kind.grid_values(params):
        text = kind.point_text(v)
        if text not in points:
            points.append(text)
    if kind.sweeps_full_model:
        points.sort(key=kind.x_of)  # stable: ties keep the params order
        xs = [kind.x_of(pt) for pt in points]
    else:
        xs = [float(i) for i in range(len(points))]
    seeds = list(dict.fromkeys(kind.seeds_of(params)))
    return [GridPoint(pt, x, s) for pt, x in zip(points, xs) for s in seeds]


def base_params(kind: StudyKind, params: Params) -> Params:
    """The config every trial shares, trained like the main run: for a sweep, the full model
    (CCL + RHIC + LCF); for the ablation, params itself (each variant sets its switches)."""
    return params.replace(**FULL_MODEL) if kind.sweeps_full_model else params


def trial_params(kind: StudyKind, base: Params, gp: GridPoint) -> Params:
    return kind.configure(base, gp.point).replace(**{"train.seed": gp.seed})


def study_name(kind: StudyKind, base: Params, fingerprint: str) -> str:
    """'<kind>-<10 hex>': the identity (`core.identity`) of what every trial of the queue shares -
    a run's keys but what a point sets and the seed, the ablation's variants - and the run
    fingerprint (`core.train.run_fingerprint`): the same params resume the same queue on any
    machine, changed ones do not."""
    scope = RUN if kind.sweeps_full_model else (*RUN, "ablation.variants")
    varies = (kind.key,) if kind.sweeps_full_model else tuple(f"loss.{k}" for k in kind.sets)
    extra = {"kind": kind.name, "fingerprint": fingerprint}
    return f"{kind.name}-{identity(base, scope, leave_out=(*varies, 'train.seed'), extra=extra, digits=10)}"


def pair_of(trial: Any) -> tuple[str, int] | None:
    attrs = trial.user_attrs
    if ATTR_POINT not in attrs or ATTR_SEED not in attrs:
        return None
    return (str(attrs[ATTR_POINT]), int(attrs[ATTR_SEED]))
