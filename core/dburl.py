"""The one place a database URL gets its driver, for Optuna's storage and MLflow's store alike.

A bare `postgresql://` means psycopg2 to SQLAlchemy 2.0 and psycopg (v3) to SQLAlchemy 2.1, so
the same URL needs a different package depending on what pip resolved. The `postgres` extra
installs psycopg v3, and every engine here is opened on `postgresql+psycopg://`, whatever
SQLAlchemy's default. A URL that names its driver (`postgresql+psycopg2://...`) is kept.
"""

from __future__ import annotations

POSTGRES_DRIVER = "psycopg"  # what pyproject's `postgres` extra installs (psycopg[binary] v3)
_BARE_POSTGRES = ("postgresql", "postgres")  # 'postgres://' is the Heroku/libpq spelling


def driver_url(url: str) -> str:
    """`url` with the PostgreSQL driver made explicit; any other URL unchanged."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in _BARE_POSTGRES:
        return f"postgresql+{POSTGRES_DRIVER}://{rest}"
    return url
