"""Every SQL statement of nova-sink. ``Store`` never commits: callers own the transaction.

Writes are single statements where concurrency could race (``INSERT … ON CONFLICT``), and
the one read-decide-write path (a result that already exists) locks its row first
(``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.models import Batch, Delivery, Lease, ReconcileRun, RejectedApplicationRow, ScoringJob
from storage.records import (
    BatchState,
    InboundDelivery,
    Outcome,
    RejectedApplication,
    ScoringResult,
    StoredState,
    decide,
    merge,
)

JOBS = ScoringJob.__table__  # type: ignore[attr-defined]
BATCHES = Batch.__table__  # type: ignore[attr-defined]
REJECTED = RejectedApplicationRow.__table__  # type: ignore[attr-defined]
DELIVERIES = Delivery.__table__  # type: ignore[attr-defined]
RUNS = ReconcileRun.__table__  # type: ignore[attr-defined]
LEASES = Lease.__table__  # type: ignore[attr-defined]
j, b, r, d = JOBS.c, BATCHES.c, REJECTED.c, DELIVERIES.c


@dataclass(frozen=True, slots=True)
class Change:
    """What one ``apply_result`` did: the precedence outcome, and whether the row changed
    (``changed`` includes gap-filling, e.g. a batch id or timestamps the webhook lacked)."""

    outcome: Outcome
    created: bool
    changed: bool

    @property
    def updated(self) -> bool:
        """An existing result took a new status or new data (not only filled gaps)."""
        return not self.created and self.outcome is Outcome.APPLIED


@dataclass(frozen=True, slots=True)
class ResultFilter:
    """Filters shared by ``results list`` and ``results export`` and the read API."""

    job_id: str | None = None
    batch_id: str | None = None
    application_id: str | None = None
    status: str | None = None
    since: datetime | None = None


class Store:
    """Typed queries over one open connection (and its transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which knows ``ON CONFLICT``."""
        return _dialect_insert(self._dialect)(table)

    # ---- results --------------------------------------------------------------------------

    def apply_result(
        self, result: ScoringResult, *, source: str, now: datetime, delivered: bool = False
    ) -> Change:
        """Insert or merge ``result`` by the precedence rules; ``delivered`` counts a webhook."""
        values = result.columns()
        params = {
            **values,
            "source": source,
            "first_seen_at": now,
            "updated_at": now,
            "delivery_count": int(delivered),
        }
        inserted = self.conn.execute(_job_insert(self._dialect), params).first()
        if inserted is not None:
            return Change(Outcome.APPLIED, created=True, changed=True)

        row = (
            self.conn.execute(
                sa.select(JOBS).where(j.scoring_job_id == result.scoring_job_id).with_for_update()
            )
            .mappings()
            .one()
        )
        outcome = decide(StoredState(row["status"], row["completed_at"], row["failed_at"]), result)
        updates = merge(row, result, outcome)
        if outcome is Outcome.APPLIED:
            updates["source"] = source
        changed = bool(updates)
        if changed:
            updates["updated_at"] = now
        if delivered:
            updates["delivery_count"] = j.delivery_count + 1
        if updates:
            self.conn.execute(
                sa.update(JOBS).where(j.scoring_job_id == result.scoring_job_id).values(updates)
            )
        return Change(outcome, created=False, changed=changed)

    def insert_new_results(
        self, results: Sequence[ScoringResult], *, source: str, now: datetime, delivered: bool
    ) -> set[str]:
        """Insert, in one statement, every result whose scoring job is not stored yet.

        Returns the ids inserted (each for its first occurrence in ``results``); the
        others must go through ``apply_result``, which merges by precedence. One multi-row
        ``INSERT … ON CONFLICT DO NOTHING`` costs far less than one statement per row.
        """
        if not results:
            return set()
        rows = [
            {
                **result.columns(),
                "source": source,
                "first_seen_at": now,
                "updated_at": now,
                "delivery_count": int(delivered),
            }
            for result in results
        ]
        inserted = self.conn.execute(_job_insert(self._dialect), rows)
        return {str(scoring_job_id) for (scoring_job_id,) in inserted}

    def track_pending_jobs(
        self,
        *,
        scoring_job_ids: Sequence[str],
        batch_id: str | None,
        job_id: str,
        tenant_id: str | None,
        now: datetime,
    ) -> int:
        """Record scoring jobs we know exist (from ``submit``); returns how many were new."""
        added = 0
        for scoring_job_id in scoring_job_ids:
            result = ScoringResult(
                scoring_job_id=scoring_job_id,
                status="pending",
                job_id=job_id,
                batch_id=batch_id,
                tenant_id=tenant_id,
            )
            added += self.apply_result(result, source="submit", now=now).created
        return added

    def get_result(self, scoring_job_id: str) -> RowMapping | None:
        return (
            self.conn.execute(sa.select(JOBS).where(j.scoring_job_id == scoring_job_id))
            .mappings()
            .first()
        )

    def _filtered(self, flt: ResultFilter) -> sa.Select[Any]:
        query = sa.select(JOBS)
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
        return query

    def list_results(self, flt: ResultFilter, *, limit: int | None = 50) -> list[RowMapping]:
        """Newest first (by last update)."""
        query = self._filtered(flt).order_by(j.updated_at.desc(), j.scoring_job_id).limit(limit)
        return list(self.conn.execute(query).mappings())

    def iter_results(self, flt: ResultFilter) -> Iterator[RowMapping]:
        """Every matching result, streamed in id order (for export)."""
        query = self._filtered(flt).order_by(j.scoring_job_id)
        result = self.conn.execution_options(yield_per=500).execute(query)
        yield from result.mappings()

    def results_for_batch(self, batch_id: str) -> list[RowMapping]:
        return list(
            self.conn.execute(
                sa.select(JOBS).where(j.batch_id == batch_id).order_by(j.scoring_job_id)
            ).mappings()
        )

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
        """Every result by scoring job id, and rejected application ids by batch id: the
        local side of a comparison with Nova's truth (demo, tests, benchmarks)."""
        results = {row["scoring_job_id"]: dict(row) for row in self.iter_results(ResultFilter())}
        rejected: dict[str, set[str]] = {}
        for batch_id, application_id in self.conn.execute(sa.select(r.batch_id, r.application_id)):
            rejected.setdefault(batch_id, set()).add(application_id)
        return results, rejected

    def stale_pending_jobs(self, *, older_than: datetime) -> list[RowMapping]:
        """Pending scoring jobs no tracked batch will cover, first seen before ``older_than``."""
        untracked = ~sa.exists().where(b.batch_id == j.batch_id)
        query = (
            sa.select(JOBS)
            .where(j.status == "pending", j.first_seen_at < older_than)
            .where(sa.or_(j.batch_id.is_(None), untracked))
            .order_by(j.scoring_job_id)
        )
        return list(self.conn.execute(query).mappings())

    # ---- batches --------------------------------------------------------------------------

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
        }
        for column in ("total_jobs", "completed_jobs", "failed_jobs", "created_at", "completed_at"):
            set_[column] = sa.func.coalesce(ex[column], b[column])
        if reconciled:
            set_["last_reconciled_at"] = now
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["batch_id"], set_=set_))

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

    def batches_to_reconcile(
        self, *, older_than: datetime, batch_id: str | None = None
    ) -> list[RowMapping]:
        """Batches with a gap: due, not terminal, fewer local results than Nova's counts,
        or holding a pending job first seen before ``older_than``."""
        terminal_here = (
            sa.select(sa.func.count())
            .where(j.batch_id == b.batch_id, j.status != "pending")
            .scalar_subquery()
        )
        old_pending = sa.exists().where(
            j.batch_id == b.batch_id, j.status == "pending", j.first_seen_at < older_than
        )
        query = sa.select(BATCHES).order_by(b.batch_id)
        if batch_id is not None:
            query = query.where(b.batch_id == batch_id)
        else:
            expected = sa.func.coalesce(b.completed_jobs, 0) + sa.func.coalesce(b.failed_jobs, 0)
            query = query.where(
                sa.or_(
                    b.due.is_(True),
                    b.status == "pending",
                    terminal_here < expected,
                    old_pending,
                )
            )
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

    # ---- deliveries (the inbox) -------------------------------------------------------------

    def record_delivery(self, delivery: InboundDelivery, *, outcome: str, now: datetime) -> bool:
        """Keep one row per delivery key and count attempts; True when the row is new."""
        params = _delivery_params(delivery, outcome, now)
        attempts: int = self.conn.execute(_delivery_upsert(self._dialect), params).scalar_one()
        return attempts == 1

    def record_deliveries(
        self, deliveries: Sequence[tuple[InboundDelivery, str]], *, now: datetime
    ) -> None:
        """``record_delivery`` for a whole commit group, in one statement.

        Repeats of one delivery key inside the group are folded into one row first: a
        multi-row upsert may not touch the same row twice (PostgreSQL refuses it).
        """
        folded: dict[str, dict[str, Any]] = {}
        for delivery, outcome in deliveries:
            row = folded.get(delivery.delivery_key)
            if row is None:
                folded[delivery.delivery_key] = _delivery_params(delivery, outcome, now)
            else:
                row["attempts"] += 1
        if folded:
            # In key order: concurrent writers (other instances) take row locks alike.
            rows = [folded[key] for key in sorted(folded)]
            self.conn.execute(_delivery_upsert(self._dialect), rows).all()

    def update_delivery(
        self,
        delivery_id: int,
        *,
        outcome: str,
        event: str | None,
        scoring_job_id: str | None,
        batch_id: str | None,
    ) -> None:
        """Record what a replay made of a stored delivery."""
        values = {
            "outcome": outcome,
            "event": event,
            "scoring_job_id": scoring_job_id,
            "batch_id": batch_id,
        }
        self.conn.execute(sa.update(DELIVERIES).where(d.id == delivery_id).values(values))

    def unparsed_delivery_ids(self) -> list[int]:
        query = sa.select(d.id).where(d.outcome == "stored-unparsed", d.raw_body.is_not(None))
        return [int(i) for i in self.conn.execute(query.order_by(d.id)).scalars()]

    def get_delivery(self, key: str) -> RowMapping | None:
        """By numeric id, webhook id, or delivery key."""
        clauses = [d.delivery_key == key, d.webhook_id == key]
        if key.isdigit():
            clauses.append(d.id == int(key))
        query = sa.select(DELIVERIES).where(sa.or_(*clauses)).order_by(d.id).limit(1)
        return self.conn.execute(query).mappings().first()

    def list_deliveries(
        self,
        *,
        event: str | None = None,
        outcome: str | None = None,
        scoring_job_id: str | None = None,
        limit: int | None = 50,
    ) -> list[RowMapping]:
        """Newest first, without the raw bodies."""
        columns = [c for c in DELIVERIES.c if c.name != "raw_body"]
        query = sa.select(*columns).order_by(d.id.desc()).limit(limit)
        if event is not None:
            query = query.where(d.event == event)
        if outcome is not None:
            query = query.where(d.outcome == outcome)
        if scoring_job_id is not None:
            query = query.where(d.scoring_job_id == scoring_job_id)
        return list(self.conn.execute(query).mappings())

    def last_delivery_by_fingerprint(self) -> dict[str, datetime]:
        query = sa.select(d.secret_fingerprint, sa.func.max(d.last_received_at)).group_by(
            d.secret_fingerprint
        )
        return {str(fp): when for fp, when in self.conn.execute(query)}

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
        if self._dialect == "postgresql":
            mentions = [
                sa.func.position(sa.literal(n, sa.LargeBinary).op("IN")(d.raw_body)) > 0
                for n in needles
            ]
        else:
            mentions = [
                sa.func.instr(d.raw_body, sa.literal(n, sa.LargeBinary)) > 0 for n in needles
            ]
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

    # ---- reconcile runs and leases ------------------------------------------------------------

    def start_run(self, *, now: datetime, dry_run: bool) -> int:
        stmt = sa.insert(RUNS).values(started_at=now, dry_run=dry_run).returning(RUNS.c.id)
        run_id: int = self.conn.execute(stmt).scalar_one()
        return run_id

    def finish_run(self, run_id: int, *, now: datetime, summary: dict[str, Any]) -> None:
        columns = {c.name for c in RUNS.c} - {"id", "started_at", "dry_run"}
        values = {k: v for k, v in summary.items() if k in columns}
        self.conn.execute(
            sa.update(RUNS).where(RUNS.c.id == run_id).values(finished_at=now, **values)
        )

    def reconcile_totals(self) -> tuple[int, int]:
        """(number of reconcile runs, results they added or updated)."""
        fixed = sa.func.coalesce(sa.func.sum(RUNS.c.results_added + RUNS.c.results_updated), 0)
        runs, fixes = self.conn.execute(sa.select(sa.func.count(), fixed)).one()
        return int(runs), int(fixes)

    def list_runs(self, *, limit: int = 20) -> list[RowMapping]:
        query = sa.select(RUNS).order_by(RUNS.c.id.desc()).limit(limit)
        return list(self.conn.execute(query).mappings())

    def acquire_lease(self, name: str, *, holder: str, now: datetime, ttl: timedelta) -> str:
        """Take or renew lease ``name``; returns the holder after the attempt.

        One statement: the update only happens when the lease expired or is ours already,
        so two processes can never both come away holding it.
        """
        stmt = self._insert(LEASES).values(name=name, holder=holder, expires_at=now + ttl)
        ex = stmt.excluded
        lc = LEASES.c
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": ex.holder, "expires_at": ex.expires_at},
            where=sa.or_(lc.expires_at < now, lc.holder == holder),
        )
        self.conn.execute(stmt)
        current: str = self.conn.execute(sa.select(lc.holder).where(lc.name == name)).scalar_one()
        return current

    def release_lease(self, name: str, *, holder: str) -> None:
        lc = LEASES.c
        self.conn.execute(sa.delete(LEASES).where(lc.name == name, lc.holder == holder))

    # ---- overview ------------------------------------------------------------------------------

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


# The two statements of the webhook hot path are built once per dialect and executed with
# parameters: building ``insert().values(...)`` per request cost more than the SQL itself.


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


@functools.cache
def _job_insert(dialect: str) -> Any:
    return (
        _dialect_insert(dialect)(JOBS)
        .on_conflict_do_nothing(index_elements=["scoring_job_id"])
        .returning(j.scoring_job_id)
    )


@functools.cache
def _delivery_upsert(dialect: str) -> Any:
    stmt = _dialect_insert(dialect)(DELIVERIES)
    return stmt.on_conflict_do_update(
        index_elements=["delivery_key"],
        set_={
            "attempts": d.attempts + stmt.excluded.attempts,
            "last_received_at": stmt.excluded.last_received_at,
        },
    ).returning(d.attempts)


def _delivery_params(delivery: InboundDelivery, outcome: str, now: datetime) -> dict[str, Any]:
    return {
        "delivery_key": delivery.delivery_key,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "scoring_job_id": delivery.scoring_job_id,
        "batch_id": delivery.batch_id,
        "outcome": outcome,
        "signature_scheme": delivery.signature_scheme,
        "secret_fingerprint": delivery.secret_fingerprint,
        "received_at": now,
        "last_received_at": now,
        "attempts": 1,
        "raw_body": delivery.body,
    }


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
