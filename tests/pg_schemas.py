"""Migrated private PostgreSQL schemas for the tests, reused from test to test."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from storage import schema
from storage.db import make_engine


class PostgresSchemas:
    """Migrated private schemas on the test server, reused from test to test.

    Migrating a new schema for every test cost ~0.2 s each, about a third of the inner
    loop. A schema is migrated once and emptied after each test instead (``TRUNCATE … RESTART
    IDENTITY``: every table but ``alembic_version``). One the test left unusable (another
    revision, a lock still held so that it cannot be emptied in time) is dropped and the next
    test gets a new one.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.current: str | None = None

    def take(self) -> str:
        """A migrated, empty schema's name."""
        if self.current is None:
            name = f"t_{uuid.uuid4().hex[:16]}"
            with self.admin.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {name}")
            engine = make_engine(self.engine_url(name))
            try:
                schema.upgrade(engine)
            finally:
                engine.dispose()
            self.current = name
        return self.current

    def engine_url(self, name: str) -> str:
        # libpq "options" puts every pooled connection of an engine into the schema.
        return f"{self.url}?options=-csearch_path%3D{name}"

    def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test, or drop it when that cannot be done cleanly."""
        try:
            with self.admin.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                version = conn.exec_driver_sql(
                    f"SELECT version_num FROM {name}.alembic_version"  # noqa: S608
                ).scalar()
                if version != schema.HEAD:
                    raise LookupError(f"left at revision {version}")
                tables = conn.execute(
                    sa.text(
                        "SELECT tablename FROM pg_tables"
                        " WHERE schemaname = :name AND tablename <> 'alembic_version'"
                    ),
                    {"name": name},
                ).scalars()
                listed = ", ".join(f"{name}.{table}" for table in tables)
                conn.exec_driver_sql(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")
        except (sa.exc.DBAPIError, LookupError):
            self.drop(name)

    def drop(self, name: str) -> None:
        if self.current == name:
            self.current = None
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def close(self) -> None:
        if self.current is not None:
            self.drop(self.current)
        self.admin.dispose()
