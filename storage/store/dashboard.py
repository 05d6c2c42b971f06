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

from storage.store.pages import PageQueries
from storage.store.tables import DELIVERIES, JOBS, d, j

# Enough deliveries to say which secret and construction are in use, few enough to stay cheap.
RECENT_DELIVERIES = 1000
SCORE_EVENTS = ("score.completed", "score.failed")
# Deliveries the overview's 24-hour outcome counts look at, at most (bounded work per view).
OUTCOME_CAP = 20_000
# Results of one Nova job the batch page's score chart looks at, at most.
HISTOGRAM_CAP = 20_000


@dataclass(frozen=True, slots=True)
class Verification:
    """How a group of recent deliveries was verified."""

    secret_fingerprint: str
    signature_scheme: str
    deliveries: int
    last_received_at: datetime


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Deliveries by outcome in a window; ``capped``: only the latest ``OUTCOME_CAP`` counted."""

    counts: dict[str, int]
    capped: bool


@dataclass(frozen=True, slots=True)
class Histogram:
    """Completed results by score; ``capped``: only ``HISTOGRAM_CAP`` results looked at."""

    counts: dict[int, int]
    capped: bool


@dataclass(frozen=True, slots=True)
class Lag:
    """One applied score delivery: when Nova finished the result and when we stored it."""

    finished_at: datetime
    received_at: datetime


class DashboardQueries(PageQueries):
    def batches_page(
        self,
        *,
        after: tuple[datetime, str] | None = None,
        status: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
    ) -> list[RowMapping]:
        """Tracked batches, newest tracked first; ``after`` is ``(tracked_at, batch_id)``.
        The read API's keyset page, with the dashboard's defaults."""
        return self.page_batches(status=status, after=after, limit=limit, job_id=job_id)

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

    def score_histogram(self, job_id: str, *, cap: int = HISTOGRAM_CAP) -> Histogram:
        """How many completed results of a Nova job got each score, over at most ``cap`` of
        the job's results (bounded work per page view; ``capped`` says when it applied)."""
        # Status is selected, not filtered: a ``status =`` condition lures SQLite onto the
        # status index (most rows are completed) instead of the selective job_id index.
        rows = (
            sa.select(j.status, j.score)
            .where(j.job_id == job_id, j.score.is_not(None))
            .limit(cap)
            .subquery()
        )
        query = sa.select(rows.c.status, rows.c.score, sa.func.count()).group_by(
            rows.c.status, rows.c.score
        )
        counts: dict[int, int] = {}
        seen = 0
        for status, score, n in self.conn.execute(query):
            seen += int(n)
            if status == "completed":
                counts[int(score)] = int(n)
        return Histogram(counts, capped=seen >= cap)

    def deliveries_page(
        self,
        *,
        before: int | None = None,
        event: str | None = None,
        outcome: str | None = None,
        scoring_job_id: str | None = None,
        limit: int = 50,
        body_bytes: int = 16_384,
    ) -> list[RowMapping]:
        """The inbox, newest first; ``before`` is the last id shown.

        ``raw_body`` holds at most the first ``body_bytes`` of each body (bodies may be up to
        the webhook size limit) and ``body_length`` the whole length.
        """
        columns = [c for c in DELIVERIES.c if c.name != "raw_body"]
        query = (
            sa.select(
                *columns,
                sa.func.substr(d.raw_body, 1, body_bytes, type_=sa.LargeBinary).label("raw_body"),
                sa.func.length(d.raw_body).label("body_length"),
            )
            .order_by(d.id.desc())
            .limit(limit)
        )
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

    def outcomes_since(self, since: datetime, *, cap: int = OUTCOME_CAP) -> Outcomes:
        """Deliveries received since ``since``, by outcome: at most the latest ``cap`` of them.

        Bounded work per page view: the window starts at its first delivery (one index seek
        on ``received_at``), then walks ids newest first and stops after ``cap`` rows.
        Counting every row of a busy day costs ~60 ms per 100,000 on SQLite without an
        index on ``(outcome, received_at)``.
        """
        first = self.conn.execute(
            sa.select(d.id).where(d.received_at >= since).order_by(d.received_at).limit(1)
        ).scalar()
        if first is None:
            return Outcomes({}, capped=False)
        latest = (
            sa.select(d.outcome).where(d.id >= first).order_by(d.id.desc()).limit(cap).subquery()
        )
        query = sa.select(latest.c.outcome, sa.func.count()).group_by(latest.c.outcome)
        counts = {str(outcome): int(n) for outcome, n in self.conn.execute(query)}
        return Outcomes(counts, capped=sum(counts.values()) >= cap)

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

    def recent_lags(self, *, recent: int = 200) -> list[Lag]:
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
