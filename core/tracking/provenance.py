"""Where a run came from, as tags: the suite, the profiles, the git commit, the data source, the
user and the command (the standard MLflow tags, so the UI shows them as for `mlflow.start_run`),
and a training run's environment."""

from __future__ import annotations

import functools
import getpass
import subprocess
import sys
from pathlib import Path

from core.config import Params

SUITE = "cvls"
TAG_SUITE = "cvls.suite"
TAG_GIT_COMMIT = "cvls.git_commit"
TAG_DATA_SOURCE = "cvls.data_source"
TAG_PROFILES = "cvls.profiles"  # the profile files layered over params.yaml (their values are the params)
TAG_ENV = "cvls.env."  # + torch, torchvision, cpu, isa, threads, precision[, gpu] (core.runtime.environment)


@functools.lru_cache(maxsize=16)
def git_commit(root: Path) -> str:
    """`git rev-parse HEAD` in `root`; 'unknown' when it is not a git checkout (or git is absent)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def base_tags(params: Params) -> dict[str, str]:
    """The tags every run of the suite carries."""
    commit = git_commit(params.root)
    return {
        TAG_SUITE: SUITE,
        TAG_PROFILES: " ".join(params.profiles) or "none",
        TAG_GIT_COMMIT: commit,
        TAG_DATA_SOURCE: params.data.source,
        "mlflow.user": getpass.getuser(),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": sys.argv[0] or "python",
        "mlflow.source.git.commit": commit,
    }


def env_tags(env: dict[str, str]) -> dict[str, str]:
    """A training run's environment (core.runtime.environment) as its MLflow tags."""
    return {TAG_ENV + k: v for k, v in env.items()}
