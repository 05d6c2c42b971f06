"""Retention, erasure and the overview: statements that span every aggregate."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage.store._base import StoreBase
from storage.store.dialect import body_contains
from storage.store.tables import BATCHES, DELIVERIES, JOBS, REJECTED, b, d, j, r


class AdminQueries(StoreBase):
    def purge_bodies(self, *, older_than: datetime, now: datetime) -> int:
        """Drop raw bodies of deliveries received before ``older_than`` (rows stay)."""
        result = self.conn.execute(
            sa.update(DELIVERIES)
            .where(d.received_at < older_than, d.raw_body.is_not(None))
            .values(raw_body=None, body_purged_at=now)
        )
        return int(result.rowcount)

    def erase_application(self, application_id: str) -> dict[str, int]:
        """Delete every trace of one candidate; returns rows removed per table.

        Inbox rows go by scoring job, and, for deliveries stored unparsed (no scoring job
        recorded), by the candidate's id appearing in the raw body.
        """
        job_ids = sa.select(j.scoring_job_id).where(j.application_id == application_id)
        needles = {json.dumps(application_id).encode(), f'"{application_id}"'.encode()}
        mentions = [body_contains(self._dialect, n) for n in needles]
        unparsed = sa.and_(d.scoring_job_id.is_(None), sa.or_(*mentions))
        removed = {
            "delivery": self.conn.execute(
                sa.delete(DELIVERIES).where(sa.or_(d.scoring_job_id.in_(job_ids), unparsed))
            ).rowcount,
            "scoring_job": self.conn.execute(
                sa.delete(JOBS).where(j.application_id == application_id)
            ).rowcount,
            "rejected_application": self.conn.execute(
                sa.delete(REJECTED).where(r.application_id == application_id)
            ).rowcount,
        }
        return {table: int(count) for table, count in removed.items()}

    def stats(self) -> dict[str, Any]:
        def counts(column: sa.Column[Any]) -> dict[str, int]:
            query = sa.select(column, sa.func.count()).group_by(column)
            return {str(key): int(n) for key, n in self.conn.execute(query)}

        return {
            "results": counts(j.status),
            "batches": counts(b.status),
            "deliveries": counts(d.outcome),
            "events": counts(d.event),
            "rejected_applications": int(
                self.conn.execute(sa.select(sa.func.count()).select_from(REJECTED)).scalar_one()
            ),
            "batches_due": int(
                self.conn.execute(
                    sa.select(sa.func.count()).select_from(BATCHES).where(b.due.is_(True))
                ).scalar_one()
            ),
        }

    def schema_revision(self) -> str | None:
        """The alembic revision stamped in the database, or None if it has no schema."""
        try:
            with self.conn.begin_nested():
                return self.conn.execute(
                    sa.text("SELECT version_num FROM alembic_version")
                ).scalar()
        except sa.exc.DBAPIError:
            return None

    def ping(self) -> None:
        self.conn.execute(sa.text("SELECT 1"))
