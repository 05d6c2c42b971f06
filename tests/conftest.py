"""Shared fixtures: databases (SQLite files and PostgreSQL schemas), the app, a fixed clock.

The ``engine`` fixture runs a test once on a fresh SQLite file and once on a fresh
PostgreSQL schema. PostgreSQL is expected at 127.0.0.1:5432 (trust auth, database
``test``); its tests are skipped, with the reason, only when that server is unreachable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from receiver.app import create_app
from receiver.settings import Settings
from storage import schema
from storage.db import make_engine, transaction
from tests.cli_inproc import InProcessCli, default_env
from tests.factories import NOW, SECRET
from tests.pg_schemas import PostgresSchemas
from tests.servers import migrated_database

# CI replays the same examples every run (a red build must be reproducible); local runs
# keep exploring new ones, and the failures they find become fixed regression cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_PROBE_TIMEOUT_SECONDS = 2


@pytest.fixture(name="postgres_url", scope="session")
def fixture_postgres_url() -> str:
    """The server URL, or a skip (probed once per session) when nothing answers on 5432."""
    import psycopg

    try:
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test",
            connect_timeout=_PROBE_TIMEOUT_SECONDS,
        ):
            pass
    except psycopg.OperationalError as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (database 'test') is unreachable: {detail}")
    return POSTGRES_URL


@pytest.fixture(name="anyio_backend")
def fixture_anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, like uvicorn and the CLI."""
    return "asyncio"


def migrated_sqlite_engine(path: Path, **kwargs: Any) -> Engine:
    """A migrated SQLite engine on ``path``, built the way the app builds its own."""
    engine = make_engine(f"sqlite:///{path}", **kwargs)
    schema.upgrade(engine)
    return engine


@pytest.fixture(name="migrated_sqlite_template", scope="session")
def fixture_migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head per test session (the migrations run once here,
    and on PostgreSQL for every test); each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "sink.db"
    engine = migrated_sqlite_engine(path)
    engine.dispose()  # the last connection checkpoints the WAL: the file alone is whole
    return path


@pytest.fixture(name="sqlite_engine")
def fixture_sqlite_engine(tmp_path: Path, migrated_sqlite_template: Path) -> Iterator[Engine]:
    """A migrated SQLite file in ``tmp_path`` (a copy of the session's migrated template)."""
    path = tmp_path / "sink.db"
    shutil.copyfile(migrated_sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(name="postgres_schemas", scope="session")
def fixture_postgres_schemas(postgres_url: str) -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas(postgres_url)
    yield schemas
    schemas.close()


@pytest.fixture(name="postgres_engine")
def fixture_postgres_engine(postgres_schemas: PostgresSchemas) -> Iterator[Engine]:
    """A migrated, empty, private PostgreSQL schema (emptied again after the test)."""
    name = postgres_schemas.take()
    engine = make_engine(postgres_schemas.engine_url(name))
    try:
        yield engine
    finally:
        engine.dispose()
        postgres_schemas.give_back(name)


@pytest.fixture(
    name="engine", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fixture_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL schema."""
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    return engine


@pytest.fixture(name="fixed_clock")
def fixture_fixed_clock() -> Callable[[], datetime]:
    """The app's clock, stopped at ``factories.NOW``."""
    return lambda: NOW


@pytest.fixture(name="make_app")
def fixture_make_app(
    sqlite_engine: Engine, fixed_clock: Callable[[], datetime]
) -> Callable[..., Starlette]:
    """Build the receiver on the test's SQLite file; keyword arguments override settings."""

    def build(
        *,
        secrets: str = SECRET,
        engine: Engine | None = None,
        check_schema: bool = True,
        **overrides: Any,
    ) -> Starlette:
        db = engine if engine is not None else sqlite_engine
        settings = Settings(
            _env_file=None,
            nova_webhook_secrets=secrets,
            database_url=str(db.url),
            **overrides,
        )
        return create_app(settings, engine=db, now=fixed_clock, check_schema=check_schema)

    return build


@pytest.fixture(name="client")
def fixture_client(make_app: Callable[..., Starlette]) -> Iterator[Any]:
    """A started receiver (lifespan run, writer thread up) with the default test secret."""
    from starlette.testclient import TestClient

    with TestClient(make_app()) as client:
        yield client


@pytest.fixture(name="count_rows")
def fixture_count_rows(sqlite_engine: Engine) -> Callable[[str], int]:
    """Rows in a table of the test's SQLite file."""

    def count(table: str, engine: Engine | None = None) -> int:
        with transaction(engine or sqlite_engine, write=False) as store:
            query = sa.select(sa.func.count()).select_from(sa.table(table))
            return int(store.conn.execute(query).scalar_one())

    return count


@pytest.fixture(name="cli")
def fixture_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> InProcessCli:
    """The CLI in process on a migrated SQLite file (a module may define its own ``cli``)."""
    url = migrated_database(tmp_path / "sink.db")
    return InProcessCli(capsys, monkeypatch, tmp_path, default_env(url))
