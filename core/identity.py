"""One identity rule for everything the suite reuses or shares: a run, a study's queue, the
pretext's backbone, a cache keyed by params (`Params.digest`).

An identity is sha256 over the JSON (keys sorted) of the params keys in its scope that say WHAT
is computed, plus what else decides it (the data's fingerprint, the start weights' digest). The
keys in OPERATIONAL say how fast or where it is computed, or how it is reported: never part of
an identity, so two machines whose params differ only in them join the same queue and reuse each
other's runs. Thread counts are no params key (they follow the cores); each run records them.

Not operational, although they sound so: `train.num_workers` (each loader process draws its
clips' augmentation from its own RNG, so their number changes what is trained), `train.device`,
`train.bf16`, `train.cpu_bf16`, `train.channels_last`, `train.deterministic` (they change the
floating-point results), `eval.qualitative_samples` (its figure is kept with a run's evaluation).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from core.config import Params

OPERATIONAL: tuple[str, ...] = (
    # where the inputs live: their content is in the data fingerprint (the processed store's hash)
    # and in the run fingerprint (the start weights' digest), so a machine may mount them anywhere
    "data.a2d_root",
    "data.jhmdb_root",
    "data.ytvos_root",
    "data.mevis_root",
    "model.pretrained_weights",
    # how fast
    "data.extract_workers",  # extraction writes the same store (the same fingerprint) with any number
    "eval.batch_size",  # a pair's scores are the same at any batch size (tests/test_scoring.py)
    "ablation.n_jobs",  # worker processes on a queue
    "studies.n_jobs",
    # where results and the queue are kept, and how its workers stay alive
    "tracking",
    "studies.storage",
    "studies.heartbeat_s",
    "paths",
    # read by the report alone, once every run is done
    "report",
)

RUN: tuple[str, ...] = ("data", "model", "loss", "train", "eval")  # what decides a trained, evaluated model


def identity(
    params: Params,
    scope: Sequence[str] | None = None,
    *,
    leave_out: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    digits: int = 16,
) -> str:
    """`digits` hex digits of sha256 over {"params": the keys of `scope` (dotted: sections or single
    keys; None = every key) without OPERATIONAL and `leave_out`, **extra} as sorted-key JSON."""
    full = params.to_dict()
    what: dict[str, Any] = {}
    for key in full if scope is None else scope:
        _copy(full, what, key.split("."), key)
    for key in (*OPERATIONAL, *leave_out):
        _drop(what, key.split("."))
    blob = json.dumps({"params": what, **(extra or {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:digits]


def config_hash(params: Params, fingerprint: str) -> str:
    """A run's identity: `RUN`'s keys (no operational one) + its fingerprint
    (`core.train.run_fingerprint`: the data and the start weights)."""
    return identity(params, RUN, extra={"data_fingerprint": fingerprint})


def _copy(src: dict[str, Any], dst: dict[str, Any], parts: list[str], key: str) -> None:
    if not isinstance(src, dict) or parts[0] not in src:
        raise KeyError(f"identity scope names no params key: {key}")
    if len(parts) == 1:
        dst[parts[0]] = src[parts[0]]
    else:
        _copy(src[parts[0]], dst.setdefault(parts[0], {}), parts[1:], key)


def _drop(d: dict[str, Any], parts: list[str]) -> None:
    if len(parts) == 1:
        d.pop(parts[0], None)
    elif isinstance(d.get(parts[0]), dict):
        _drop(d[parts[0]], parts[1:])
