"""The PostgreSQL test schemas are reused, so each test must still start from an empty,
current schema (``conftest.PostgresSchemas``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import schema
from storage.db import make_engine, transaction
from tests.factories import NOW, completed
from tests.pg_schemas import PostgresSchemas

pytestmark = pytest.mark.postgres


def test_a_schema_given_back_is_empty_with_its_ids_restarted(postgres_url: str) -> None:
    schemas = PostgresSchemas(postgres_url)
    try:
        name = schemas.take()
        engine = make_engine(schemas.engine_url(name))
        with transaction(engine) as store:
            store.apply_result(completed("sj_1"), source="webhook", now=NOW)
            store.conn.execute(
                sa.text(
                    "INSERT INTO delivery (delivery_key, outcome, signature_scheme,"
                    " secret_fingerprint, received_at, last_received_at, attempts)"
                    " VALUES ('k', 'applied', 'body', 'fp', :t, :t, 1)"
                ),
                {"t": NOW},
            )
        engine.dispose()
        schemas.give_back(name)

        assert schemas.take() == name
        engine = make_engine(schemas.engine_url(name))
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM scoring_job").scalar() == 0
            new_id = conn.exec_driver_sql(
                "INSERT INTO delivery (delivery_key, outcome, signature_scheme,"
                " secret_fingerprint, received_at, last_received_at, attempts)"
                " VALUES ('k2', 'applied', 'body', 'fp', now(), now(), 1) RETURNING id"
            ).scalar()
            assert new_id == 1
        engine.dispose()
    finally:
        schemas.close()


def test_a_schema_left_at_another_revision_is_replaced_by_a_new_one(postgres_url: str) -> None:
    from alembic import command

    schemas = PostgresSchemas(postgres_url)
    try:
        name = schemas.take()
        engine = make_engine(schemas.engine_url(name))
        with engine.begin() as conn:
            command.downgrade(schema._config(conn), "0001")  # type: ignore[arg-type]
        engine.dispose()
        schemas.give_back(name)

        replacement = schemas.take()
        assert replacement != name
        engine = make_engine(schemas.engine_url(replacement))
        assert schema.current(engine) == schema.HEAD
        engine.dispose()
    finally:
        schemas.close()
