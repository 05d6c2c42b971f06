"""Every dialect-specific statement of the store, in one place.

The statements of the webhook hot path are built once per dialect and executed with
parameters: building ``insert().values(...)`` per request cost more than the SQL itself.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from storage.store.tables import DELIVERIES, JOBS, d, j


def dialect_insert(dialect: str) -> Any:
    """The dialect's ``insert``, which knows ``ON CONFLICT``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


@functools.cache
def job_insert(dialect: str) -> Any:
    """Insert a result unless its scoring job is stored; returns the ids inserted."""
    return (
        dialect_insert(dialect)(JOBS)
        .on_conflict_do_nothing(index_elements=["scoring_job_id"])
        .returning(j.scoring_job_id)
    )


@functools.cache
def delivery_upsert(dialect: str) -> Any:
    """Insert an inbox row, or count one more attempt on it; returns the attempts."""
    stmt = dialect_insert(dialect)(DELIVERIES)
    return stmt.on_conflict_do_update(
        index_elements=["delivery_key"],
        set_={
            "attempts": d.attempts + stmt.excluded.attempts,
            "last_received_at": stmt.excluded.last_received_at,
        },
    ).returning(d.attempts)


def body_contains(dialect: str, needle: bytes) -> sa.ColumnElement[bool]:
    """Whether a delivery's raw body contains ``needle`` (a byte substring search)."""
    literal = sa.literal(needle, sa.LargeBinary)
    if dialect == "postgresql":
        return sa.func.position(literal.op("IN")(d.raw_body)) > 0
    return sa.func.instr(d.raw_body, literal) > 0
