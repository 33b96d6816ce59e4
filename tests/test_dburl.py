"""core.dburl: every PostgreSQL URL is opened with psycopg 3, the driver the `postgres` extra installs."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from core.dburl import driver_url


def test_bare_postgres_urls_name_psycopg_and_others_are_kept():
    assert driver_url("postgresql://u:p@h:5/db?sslmode=require") == "postgresql+psycopg://u:p@h:5/db?sslmode=require"
    assert driver_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert driver_url("POSTGRESQL://u@h/db") == "postgresql+psycopg://u@h/db"
    for kept in ("postgresql+psycopg2://u@h/db", "sqlite:////x/optuna.db", "mysql://u@h/d", "http://127.0.0.1:5000"):
        assert driver_url(kept) == kept


def test_sqlalchemy_loads_that_driver():
    pytest.importorskip("psycopg", reason="the postgres / test extra installs psycopg")
    url = driver_url("postgresql://u@127.0.0.1:1/db")
    assert make_url(url).get_dialect().driver == "psycopg"
    engine = create_engine(url)  # imports the DBAPI module; connects only when used
    assert engine.dialect.dbapi.__name__ == "psycopg"
