"""The benchmarks' own data: a generated raw set and its processed store per profile, and scratch
folders, all under outputs/bench/ (never the pipeline's outputs/, which another run may be using).

Benchmarks 4-7 read real files through the pipeline's own stages (generate, extract, train), so
their data is made here once, by those stages, and reused by every later run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from benchmarks.cli import PROFILES, ROOT, Context
from core.config import Params, load_params

BENCH_DATA = ROOT / "outputs" / "bench"  # the benchmarks' own data stores and scratch folders
# the data store a profile's loader/extraction/training benchmarks read: the default one is the
# default synthetic set; the full-size one is a small set rendered at A2D-like resolution, with a
# one-video validation split (validation of a full-size run on CPU would dominate short runs)
DATA_OVERRIDES: dict[str, tuple[str, ...]] = {
    "default": (),
    "full": (
        "data.synthetic.train_videos=24",
        "data.synthetic.test_videos=4",
        "data.synthetic.jhmdb_videos=2",
        "data.synthetic.height=240",
        "data.synthetic.width=320",
        "data.val_fraction=0.05",
    ),
}


def data_overrides(ctx: Context, *extra: str) -> list[str]:
    """The --set list of the profile pointed at its benchmark data folder outputs/bench/data-<profile>-<hash>
    (never the pipeline's outputs/, which another run may be using), with model.init=scratch:
    the start weights of the backbone change no timing (so the full profile needs no ImageNet
    file), and the pretext stage is not benchmarked."""
    base = [*PROFILES[ctx.args.profile], *DATA_OVERRIDES[ctx.args.profile]]
    folder = BENCH_DATA / f"data-{ctx.args.profile}-{load_params(ctx.args.params, base).digest(('data',))[:8]}"
    return [*base, f"paths.outputs={folder}", "model.init=scratch", "model.pretrained_weights=null", *extra]


def data_params(ctx: Context, *extra: str) -> Params:
    """The params of data_overrides (for code that takes Params rather than a --set list)."""
    return load_params(ctx.args.params, data_overrides(ctx, *extra))


def ensure_raw(params: Params) -> Params:
    """Generate the synthetic raw dataset under params.outputs when missing (the generate stage)."""
    from core.data.synthetic import generate

    if params.data.source == "synthetic" and not params.raw_dataset.is_dir():
        if params.outputs.parent == BENCH_DATA:  # drop this profile's data of an older params.yaml
            for stale in BENCH_DATA.glob(params.outputs.name.rsplit("-", 1)[0] + "-*"):
                shutil.rmtree(stale)
        print(f"benchmark data: generating the synthetic set into {params.outputs} (once) ...", flush=True)
        with quiet():
            generate(params)
    return params


def ensure_store(params: Params) -> Params:
    """The raw dataset and its processed store under params.outputs, made when missing (generate + extract)."""
    from core.data.extract import extract

    if not (params.processed / "summary.json").is_file():
        ensure_raw(params)
        print(f"benchmark data: extracting into {params.processed} (once) ...", flush=True)
        with quiet():
            extract(params)
    return params


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stderr (progress bars, log lines) of the pipeline code a benchmark drives."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        yield


def tracking_set(folder: Path) -> str:
    """The --set pointing a training run's MLflow at a SQLite store in `folder` (the benchmark's own)."""
    return f"tracking.uri=sqlite:///{folder.resolve()}/mlflow.db"


def child_env(ctx: Context) -> dict[str, str]:
    """The environment of a training run in a child process: ctx's thread count (OMP_NUM_THREADS), and
    no MLFLOW_TRACKING_URI, which would override the run's tracking.uri and log into the caller's store."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": str(ctx.threads)}


def fresh_dir(path: Path) -> Path:
    """An empty scratch folder at `path` (a run's leftovers would change what the next one does)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
