"""Tracked batches and the applications Nova rejected at intake."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.records import (
    UNREACHABLE,
    BatchState,
    RejectedApplication,
)
from storage.store._base import StoreBase
from storage.store.tables import BATCHES, REJECTED, b, j, r

UNREACHABLE_AFTER = 3  # consecutive reconcile runs with a 404 before a batch is given up
# Tenant of the events ``nova-sink send-test-webhook`` signs: test data, never reconciled.
TEST_TENANT = "nova-sink-test"


class BatchQueries(StoreBase):
    def track_batch(self, state: BatchState, *, now: datetime) -> bool:
        """Start tracking a batch; False when it was tracked already (nothing changes then)."""
        inserted = self.conn.execute(
            self._insert(BATCHES)
            .values(**_batch_values(state), tracked_at=now, due=True)
            .on_conflict_do_nothing(index_elements=["batch_id"])
            .returning(b.batch_id)
        ).first()
        return inserted is not None

    def update_batch(
        self, state: BatchState, *, now: datetime, due: bool, reconciled: bool = False
    ) -> None:
        """Insert or update a batch from Nova's view of it (never back to pending)."""
        stmt = self._insert(BATCHES).values(**_batch_values(state), tracked_at=now, due=due)
        ex = stmt.excluded
        keep_terminal = sa.and_(ex.status == "pending", b.status != "pending")
        set_: dict[str, Any] = {
            "tenant_id": sa.func.coalesce(b.tenant_id, ex.tenant_id),
            "status": sa.case((keep_terminal, b.status), else_=ex.status),
            "nova_status": sa.case((keep_terminal, b.nova_status), else_=ex.nova_status),
            "due": ex.due,
            "not_found_count": 0,  # Nova answered for it
        }
        for column in ("total_jobs", "completed_jobs", "failed_jobs", "created_at", "completed_at"):
            set_[column] = sa.func.coalesce(ex[column], b[column])
        if reconciled:
            set_["last_reconciled_at"] = now
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["batch_id"], set_=set_))

    def record_not_found(self, batch_id: str, *, now: datetime) -> bool:
        """Count one more run that Nova answered 404 for this batch; True when that made it
        ``unreachable`` (no longer reconciled, no longer a gap, shown in ``batches list``)."""
        count: int | None = self.conn.execute(
            sa.update(BATCHES)
            .where(b.batch_id == batch_id)
            .values(not_found_count=b.not_found_count + 1, last_reconciled_at=now)
            .returning(b.not_found_count)
        ).scalar_one_or_none()
        if count is None or count < UNREACHABLE_AFTER:
            return False
        self.conn.execute(
            sa.update(BATCHES)
            .where(b.batch_id == batch_id, b.status != UNREACHABLE)
            .values(status=UNREACHABLE, due=False)
        )
        return bool(count == UNREACHABLE_AFTER)

    def untrack_batch(self, batch_id: str) -> bool:
        """Stop tracking a batch (its results stay); False when it was not tracked."""
        self.conn.execute(sa.delete(REJECTED).where(r.batch_id == batch_id))
        deleted = self.conn.execute(sa.delete(BATCHES).where(b.batch_id == batch_id))
        return bool(deleted.rowcount)

    def get_batch(self, batch_id: str) -> RowMapping | None:
        return (
            self.conn.execute(sa.select(BATCHES).where(b.batch_id == batch_id)).mappings().first()
        )

    def list_batches(
        self, *, status: str | None = None, limit: int | None = 50
    ) -> list[RowMapping]:
        query = sa.select(BATCHES).order_by(b.tracked_at.desc(), b.batch_id).limit(limit)
        if status is not None:
            query = query.where(b.status == status)
        return list(self.conn.execute(query).mappings())

    def batch_is_settled(self, batch_id: str) -> bool:
        """``storage.records.batch_settled`` for one tracked batch, from what is stored."""
        query = sa.select(settled_clause()).where(b.batch_id == batch_id)
        return bool(self.conn.execute(query).scalar_one())

    def batches_to_reconcile(
        self, *, older_than: datetime, batch_id: str | None = None
    ) -> list[RowMapping]:
        """Batches with a gap: due, not terminal, fewer local results than Nova's counts,
        or holding a pending job first seen before ``older_than``."""
        old_pending = sa.exists().where(
            j.batch_id == b.batch_id, j.status == "pending", j.first_seen_at < older_than
        )
        query = sa.select(BATCHES).order_by(b.batch_id)
        if batch_id is not None:
            query = query.where(b.batch_id == batch_id)
        else:
            # Given up on (404s) or test data: only named with --batch are they fetched.
            query = query.where(
                b.status != UNREACHABLE, sa.func.coalesce(b.tenant_id, "") != TEST_TENANT
            )
            query = query.where(sa.or_(b.due.is_(True), ~settled_clause(), old_pending))
        return list(self.conn.execute(query).mappings())

    def record_rejected(self, rejected: Iterable[RejectedApplication], *, now: datetime) -> int:
        """Record intake rejections; returns how many were new."""
        added = 0
        for item in rejected:
            inserted = self.conn.execute(
                self._insert(REJECTED)
                .values(
                    batch_id=item.batch_id,
                    application_id=item.application_id,
                    code=item.code,
                    message=item.message,
                    reason=item.reason,
                    recorded_at=now,
                )
                .on_conflict_do_nothing(index_elements=["batch_id", "application_id"])
                .returning(r.application_id)
            ).first()
            added += inserted is not None
        return added

    def rejected_for_batch(self, batch_id: str) -> list[RowMapping]:
        query = sa.select(REJECTED).where(r.batch_id == batch_id).order_by(r.application_id)
        return list(self.conn.execute(query).mappings())


def _batch_values(state: BatchState) -> dict[str, Any]:
    return {
        "batch_id": state.batch_id,
        "job_id": state.job_id,
        "tenant_id": state.tenant_id,
        "api": state.api,
        "status": state.status,
        "nova_status": state.nova_status,
        "total_jobs": state.total_jobs,
        "completed_jobs": state.completed_jobs,
        "failed_jobs": state.failed_jobs,
        "created_at": state.created_at,
        "completed_at": state.completed_at,
    }


def settled_clause() -> sa.ColumnElement[bool]:
    """``storage.records.batch_settled`` in SQL, for the ``batch`` row in scope: Nova
    finished it and we hold a terminal result for every job Nova counts as finished."""
    terminal_here = (
        sa.select(sa.func.count())
        .where(j.batch_id == b.batch_id, j.status != "pending")
        .scalar_subquery()
    )
    expected = sa.func.coalesce(b.completed_jobs, 0) + sa.func.coalesce(b.failed_jobs, 0)
    return sa.and_(b.status != "pending", terminal_here >= expected)
