"""What the suite writes into MLflow, and in what form: its tag names, the config artifact, and
names and values made acceptable to MLflow.

MLflow only accepts names made of alphanumerics, '_', '-', '.', ' ', ':' and '/', so other
characters in params/metric/tag names are replaced by '_' (variant 'CCL+RHIC' -> 'CCL_RHIC').
Every params key is logged flattened ('loss.lcf', identical names in every run, so the MLflow
compare view lines them up), its value YAML-readable.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from core.config import Params

TAG_CONFIG_HASH = "cvls.config_hash"  # the run's identity (core.identity.config_hash): what reuse looks up
TAG_PARENT_KEY = "cvls.parent_key"  # what a resumed suite or study finds its parent run by
TAG_ERROR = "error"  # why a run ended FAILED or KILLED, one line
TAG_OWNER = "cvls.owner"  # host:pid:process-start of the process that created the run (core.procs)
TAG_REPLACES = "cvls.replaces"  # the stale RUNNING runs of the same config this run marked KILLED
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # what the MLflow UI nests runs by
CONFIG_ARTIFACT = "config/params.resolved.yaml"

_BAD_NAME_CHARS = re.compile(r"[^\w./\- :]")


def mlflow_name(key: str) -> str:
    """A params/metric/tag name MLflow accepts: other characters become '_' ('CCL+RHIC' -> 'CCL_RHIC')."""
    return _BAD_NAME_CHARS.sub("_", key)


def _param_value(v: Any) -> str:
    # YAML-readable, so a logged value can be pasted back as `--set key=value`
    return v if isinstance(v, str) else json.dumps(v)


def flat_params(params: Params) -> dict[str, str]:
    """Every params key as an MLflow param: 'section.key' -> its value as text."""
    out: dict[str, str] = {}
    for key, value in params.flat().items():
        name = mlflow_name(key)
        if name in out:  # two keys that differ only in forbidden characters
            name = f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:6]}"
        out[name] = _param_value(value)
    return out


def quoted(value: str) -> str:
    """A value for an MLflow filter string (which has no escape for quotes)."""
    if "'" in value:
        raise ValueError(f"cannot search MLflow for a value containing a quote: {value!r}")
    return f"'{value}'"


def one_line(err: BaseException) -> str:
    """An exception as the one line a run's 'error' tag holds."""
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:1000]
