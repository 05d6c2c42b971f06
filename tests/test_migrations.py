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


# Columns of ``scoring_job`` that are nova-sink's bookkeeping, not part of Nova's result.
BOOKKEEPING = {"source", "first_seen_at", "updated_at", "delivery_count"}


def test_stored_result_fields_are_the_scoring_job_columns() -> None:
    """``ScoringResult`` declares the result's fields once: the table holds exactly those plus
    the bookkeeping, and the hot path's insert covers every one of them."""
    from dataclasses import fields

    from storage.records import ScoringResult
    from storage.store.dialect import RESULT_COLUMNS

    declared = {f.name for f in fields(ScoringResult)}
    columns = set(METADATA.tables["scoring_job"].columns.keys())
    assert columns - BOOKKEEPING == declared
    assert set(RESULT_COLUMNS) == declared
