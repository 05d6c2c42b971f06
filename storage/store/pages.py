"""Keyset pages of results, batches and deliveries for the read API.

Each listing is ordered by a key no update changes (first seen, tracked at, inbox row id)
plus a unique tie-breaker, and a page starts strictly after the last key of the previous
one. Rows inserted meanwhile never shift a page (as ``OFFSET`` would), and a row updated
meanwhile keeps its place: paging visits every row present at the start exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.store.reads import ResultFilter
from storage.store.results import ResultQueries
from storage.store.tables import BATCHES, DELIVERIES, JOBS, b, d, j

ResultKey = tuple[datetime, str]
BatchKey = tuple[datetime, str]


class PageQueries(ResultQueries):
    def page_results(
        self, flt: ResultFilter, *, after: ResultKey | None, limit: int
    ) -> list[RowMapping]:
        """Newest first by first seen, then by scoring job id (descending)."""
        query = self._filtered(flt)
        if after is not None:
            query = query.where(
                sa.tuple_(j.first_seen_at, j.scoring_job_id) < sa.tuple_(*_bind_key(after))
            )
        query = query.order_by(j.first_seen_at.desc(), j.scoring_job_id.desc()).limit(limit)
        return list(self.conn.execute(query).mappings())

    def page_batches(
        self,
        *,
        status: str | None,
        after: BatchKey | None,
        limit: int,
        job_id: str | None = None,
    ) -> list[RowMapping]:
        """Newest tracked first, then by batch id (descending)."""
        query = sa.select(BATCHES)
        if status is not None:
            query = query.where(b.status == status)
        if job_id is not None:
            query = query.where(b.job_id == job_id)
        if after is not None:
            query = query.where(sa.tuple_(b.tracked_at, b.batch_id) < sa.tuple_(*_bind_key(after)))
        query = query.order_by(b.tracked_at.desc(), b.batch_id.desc()).limit(limit)
        return list(self.conn.execute(query).mappings())

    def page_deliveries(
        self,
        *,
        event: str | None,
        outcome: str | None,
        scoring_job_id: str | None,
        after: int | None,
        limit: int,
    ) -> list[RowMapping]:
        """Newest first by inbox row id, without the raw bodies."""
        columns = [c for c in DELIVERIES.c if c.name != "raw_body"]
        query = sa.select(*columns)
        if event is not None:
            query = query.where(d.event == event)
        if outcome is not None:
            query = query.where(d.outcome == outcome)
        if scoring_job_id is not None:
            query = query.where(d.scoring_job_id == scoring_job_id)
        if after is not None:
            query = query.where(d.id < after)
        return list(self.conn.execute(query.order_by(d.id.desc()).limit(limit)).mappings())

    def results_by_id(self, scoring_job_ids: Sequence[str]) -> dict[str, RowMapping]:
        """The stored results among ``scoring_job_ids`` (one query for a page of changes)."""
        if not scoring_job_ids:
            return {}
        query = sa.select(JOBS).where(j.scoring_job_id.in_(set(scoring_job_ids)))
        return {row["scoring_job_id"]: row for row in self.conn.execute(query).mappings()}


def _bind_key(
    key: tuple[datetime, str],
) -> tuple[sa.BindParameter[datetime], sa.BindParameter[str]]:
    """Typed binds: the timestamp goes through the UTC column type, as stored."""
    at, ident = key
    return sa.bindparam(None, at, type_=j.first_seen_at.type), sa.bindparam(None, ident, sa.String)
