"""The SQLModel tables and the alembic migrations describe the same schema, on both databases."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from storage.models import METADATA


def schema_drift(engine: Engine, metadata: sa.MetaData) -> list[Any]:
    """What autogenerate would write to make the migrated database match ``metadata``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_match_the_models(engine: Engine) -> None:
    """A column, index or type in the models that no migration creates (or vice versa) fails."""
    assert schema_drift(engine, METADATA) == []


def test_drift_check_notices_a_column_missing_from_the_migrations(engine: Engine) -> None:
    """The comparison is not vacuous: a model column no migration made shows up as drift."""
    extended = sa.MetaData()
    for table in METADATA.tables.values():
        table.to_metadata(extended)
    extended.tables["scoring_job"].append_column(sa.Column("model_version", sa.String()))
    drift = schema_drift(engine, extended)
    assert [(op[0], op[3].name) for op in drift] == [("add_column", "model_version")]
