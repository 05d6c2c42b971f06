"""The dashboard's read queries: pages of batches, results and deliveries, and the overview.

Every list is keyset-paged (``after`` is the last key of the previous page), so a page
costs the same on the first and the thousandth screen. Each statement rides an index the
schema already has: ``scoring_job.batch_id`` / ``job_id``, ``delivery.received_at`` /
``event`` / ``scoring_job_id`` and the primary keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.store._base import StoreBase
from storage.store.tables import BATCHES, DELIVERIES, JOBS, b, d, j

# Enough deliveries to say which secret and construction are in use, few enough to stay cheap.
RECENT_DELIVERIES = 1000
SCORE_EVENTS = ("score.completed", "score.failed")


@dataclass(frozen=True, slots=True)
class Verification:
    """How a group of recent deliveries was verified."""

    secret_fingerprint: str
    signature_scheme: str
    deliveries: int
    last_received_at: datetime


@dataclass(frozen=True, slots=True)
class Lag:
    """One applied score delivery: when Nova finished the result and when we stored it."""

    finished_at: datetime
    received_at: datetime


class DashboardQueries(StoreBase):
    def batches_page(
        self,
        *,
        after: tuple[datetime, str] | None = None,
        status: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
    ) -> list[RowMapping]:
        """Tracked batches, newest tracked first; ``after`` is ``(tracked_at, batch_id)``."""
        query = sa.select(BATCHES).order_by(b.tracked_at.desc(), b.batch_id.desc()).limit(limit)
        if after is not None:
            query = query.where(sa.tuple_(b.tracked_at, b.batch_id) < sa.tuple_(*after))
        if status is not None:
            query = query.where(b.status == status)
        if job_id is not None:
            query = query.where(b.job_id == job_id)
        return list(self.conn.execute(query).mappings())

    def local_counts(self, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Stored results per batch and status, for the given batches only."""
        counts: dict[str, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
        if not batch_ids:
            return counts
        query = (
            sa.select(j.batch_id, j.status, sa.func.count())
            .where(j.batch_id.in_(batch_ids))
            .group_by(j.batch_id, j.status)
        )
        for batch_id, status, n in self.conn.execute(query):
            counts[str(batch_id)][str(status)] = int(n)
        return counts

    def batch_results_page(
        self,
        batch_id: str,
        *,
        after: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RowMapping]:
        """The batch's results in scoring job id order; ``after`` is the last id shown."""
        query = (
            sa.select(JOBS).where(j.batch_id == batch_id).order_by(j.scoring_job_id).limit(limit)
        )
        if after is not None:
            query = query.where(j.scoring_job_id > after)
        if status is not None:
            query = query.where(j.status == status)
        return list(self.conn.execute(query).mappings())

    def score_histogram(self, job_id: str) -> dict[int, int]:
        """How many completed results of a Nova job got each score."""
        query = (
            sa.select(j.score, sa.func.count())
            .where(j.job_id == job_id, j.status == "completed", j.score.is_not(None))
            .group_by(j.score)
        )
        return {int(score): int(n) for score, n in self.conn.execute(query)}

    def deliveries_page(
        self,
        *,
        before: int | None = None,
        event: str | None = None,
        outcome: str | None = None,
        scoring_job_id: str | None = None,
        limit: int = 50,
    ) -> list[RowMapping]:
        """The inbox, newest first, with raw bodies; ``before`` is the last id shown."""
        query = sa.select(DELIVERIES).order_by(d.id.desc()).limit(limit)
        if before is not None:
            query = query.where(d.id < before)
        if event is not None:
            query = query.where(d.event == event)
        if outcome is not None:
            query = query.where(d.outcome == outcome)
        if scoring_job_id is not None:
            query = query.where(d.scoring_job_id == scoring_job_id)
        return list(self.conn.execute(query).mappings())

    def delivery_by_id(self, delivery_id: int) -> RowMapping | None:
        query = sa.select(DELIVERIES).where(d.id == delivery_id)
        return self.conn.execute(query).mappings().first()

    def outcomes_since(self, since: datetime) -> dict[str, int]:
        """Deliveries first received at or after ``since``, by outcome."""
        query = (
            sa.select(d.outcome, sa.func.count()).where(d.received_at >= since).group_by(d.outcome)
        )
        return {str(outcome): int(n) for outcome, n in self.conn.execute(query)}

    def recent_verifications(self, *, recent: int = RECENT_DELIVERIES) -> list[Verification]:
        """Which secret and construction verified the latest ``recent`` deliveries."""
        latest = sa.select(DELIVERIES).order_by(d.id.desc()).limit(recent).subquery()
        query = (
            sa.select(
                latest.c.secret_fingerprint,
                latest.c.signature_scheme,
                sa.func.count(),
                sa.func.max(latest.c.last_received_at),
            )
            .group_by(latest.c.secret_fingerprint, latest.c.signature_scheme)
            .order_by(sa.func.max(latest.c.last_received_at).desc())
        )
        return [
            Verification(str(fp), str(scheme), int(n), _aware(last))
            for fp, scheme, n, last in self.conn.execute(query)
        ]

    def recent_lags(self, *, recent: int = 500) -> list[Lag]:
        """Finish-to-store times of the latest ``recent`` applied score deliveries."""
        latest = (
            sa.select(d.scoring_job_id, d.received_at)
            .where(d.event.in_(SCORE_EVENTS), d.outcome == "applied")
            .order_by(d.id.desc())
            .limit(recent)
            .subquery()
        )
        finished = sa.func.coalesce(j.completed_at, j.failed_at)
        query = (
            sa.select(finished, latest.c.received_at)
            .select_from(latest.join(JOBS, j.scoring_job_id == latest.c.scoring_job_id))
            .where(finished.is_not(None))
        )
        return [
            Lag(finished_at=_aware(done), received_at=_aware(received))
            for done, received in self.conn.execute(query)
        ]


def _aware(value: Any) -> datetime:
    """A UTC datetime, whatever shape an aggregate over a UTC column comes back in."""
    if isinstance(value, str):  # SQLite may hand back an aggregate's text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
