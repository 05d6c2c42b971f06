"""Reads that need no table model: the results (``results list|show|export``) and the schema
probe, for the CLI's start-up.

Importing the table models costs SQLModel, ``sqlalchemy.orm`` and pydantic, most of a
read-only command's run time. ``RESULTS`` describes ``scoring_job`` as a lightweight Core
table with the model's column types (``UTCDateTime``, JSON), so rows read through it are
the rows ``Store`` reads; a test holds its columns equal to the model's. ``Store`` runs the
same queries on the model's table (``ResultQueries``), where its other statements join them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.types import UTCDateTime, json_column_type


def _text(name: str) -> sa.ColumnClause[Any]:
    return sa.column(name, sa.String())


def _time(name: str) -> sa.ColumnClause[Any]:
    return sa.column(name, UTCDateTime())


def _int(name: str) -> sa.ColumnClause[Any]:
    return sa.column(name, sa.Integer())


# Column for column (and in order) ``storage.models.ScoringJob``.
RESULTS = sa.table(
    "scoring_job",
    _text("scoring_job_id"),
    _text("job_id"),
    _text("application_id"),
    _text("batch_id"),
    _text("tenant_id"),
    _text("status"),
    _text("nova_status"),
    sa.column("is_rescore", sa.Boolean()),
    _text("criteria_version_id"),
    _int("score"),
    _text("verdict"),
    sa.column("strengths", json_column_type()),
    sa.column("concerns", json_column_type()),
    sa.column("interview_focus", json_column_type()),
    _text("error_type"),
    _text("error_code"),
    _text("error_message"),
    _time("queued_at"),
    _time("started_at"),
    _time("completed_at"),
    _time("failed_at"),
    _text("source"),
    _time("first_seen_at"),
    _time("updated_at"),
    _int("delivery_count"),
)


@dataclass(frozen=True, slots=True)
class ResultFilter:
    """Filters shared by ``results list`` and ``results export`` and the read API."""

    job_id: str | None = None
    batch_id: str | None = None
    application_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # updated before (exclusive)


class ResultReads:
    """The result reads, on ``_jobs``: ``RESULTS`` here, the model's table in ``Store``."""

    conn: sa.Connection
    _jobs: ClassVar[sa.TableClause] = RESULTS

    def get_result(self, scoring_job_id: str) -> RowMapping | None:
        j = self._jobs.c
        query = sa.select(self._jobs).where(j.scoring_job_id == scoring_job_id)
        return self.conn.execute(query).mappings().first()

    def _filtered(self, flt: ResultFilter) -> sa.Select[Any]:
        j = self._jobs.c
        query = sa.select(self._jobs)
        if flt.job_id is not None:
            query = query.where(j.job_id == flt.job_id)
        if flt.batch_id is not None:
            query = query.where(j.batch_id == flt.batch_id)
        if flt.application_id is not None:
            query = query.where(j.application_id == flt.application_id)
        if flt.status is not None:
            query = query.where(j.status == flt.status)
        if flt.since is not None:
            query = query.where(j.updated_at >= flt.since)
        if flt.until is not None:
            query = query.where(j.updated_at < flt.until)
        return query

    def list_results(self, flt: ResultFilter, *, limit: int | None = 50) -> list[RowMapping]:
        """Newest first (by last update)."""
        j = self._jobs.c
        query = self._filtered(flt).order_by(j.updated_at.desc(), j.scoring_job_id).limit(limit)
        return list(self.conn.execute(query).mappings())

    def iter_results(self, flt: ResultFilter) -> Iterator[RowMapping]:
        """Every matching result, streamed in id order (for export)."""
        query = self._filtered(flt).order_by(self._jobs.c.scoring_job_id)
        result = self.conn.execution_options(yield_per=500).execute(query)
        yield from result.mappings()

    def results_for_batch(self, batch_id: str) -> list[RowMapping]:
        j = self._jobs.c
        query = sa.select(self._jobs).where(j.batch_id == batch_id).order_by(j.scoring_job_id)
        return list(self.conn.execute(query).mappings())


class ResultReader(ResultReads):
    """The result reads on one open connection (and its transaction), without ``Store``."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn


def schema_revision(conn: sa.Connection) -> str | None:
    """The alembic revision stamped in the database, or None if it has no schema."""
    try:
        with conn.begin_nested():
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:
        return None
