"""Schema migrations (alembic), and the check that the schema is current.

The head revision is a constant so that the hot checks (``readyz``, CLI start-up) read one
row instead of importing alembic; a test keeps it equal to alembic's head.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from storage.db import connection
from storage.errors import SchemaOutOfDate
from storage.store.reads import schema_revision

HEAD = "0007"
_MIGRATIONS = Path(__file__).with_name("migrations")


def current(engine: Engine) -> str | None:
    """The revision stamped in the database, None when it has no schema yet."""
    with connection(engine, write=False) as conn:
        return schema_revision(conn)


def check(engine: Engine) -> None:
    """Raise ``SchemaOutOfDate`` unless the database is at ``HEAD``."""
    revision = current(engine)
    if revision != HEAD:
        raise SchemaOutOfDate(revision, HEAD)


def _config(connection: object) -> object:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; returns the revision now stamped."""
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Building an index on a large table may take longer than a webhook statement may.
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        command.upgrade(_config(connection), revision)  # type: ignore[arg-type]
    return current(engine)


def script_head() -> str | None:
    """Alembic's own idea of the head revision (tests compare it with ``HEAD``)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(_MIGRATIONS)).get_current_head()
