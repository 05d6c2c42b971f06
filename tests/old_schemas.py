"""A database left at an older revision, for the migration tests (SQLite file or a fresh
PostgreSQL schema, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import schema
from storage.db import make_engine

# Both databases; PostgreSQL's tests carry its marker.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def database_at(
    revision: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Engine]:
    """An engine on a new database migrated up to ``revision`` only."""
    admin, name = None, f"t_{uuid.uuid4().hex[:16]}"
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        url: str = request.getfixturevalue("postgres_url")
        admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        engine = make_engine(f"{url}?options=-csearch_path%3D{name}")
    try:
        schema.upgrade(engine, revision)
        yield engine
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            admin.dispose()
