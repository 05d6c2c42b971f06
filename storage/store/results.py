"""Results: one row per ``scoringJobId``, merged by the precedence rules of ``storage.records``.

The one read-decide-write path (a result that already exists) locks its row first
(``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.records import (
    Outcome,
    ScoringResult,
    StoredState,
    decide,
    merge,
)
from storage.store._base import StoreBase
from storage.store.dialect import hot_sql, job_insert
from storage.store.reads import ResultFilter, ResultReads
from storage.store.tables import JOBS, b, j, r


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


class ResultQueries(ResultReads, StoreBase):
    """Results: the precedence-merging writes, and the reads of ``ResultReads`` run on the
    model's table (statements here and in ``pages`` join it)."""

    _jobs: ClassVar[sa.TableClause] = JOBS

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
        inserted = self.conn.execute(job_insert(self._dialect), params).first()
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
        if changed and outcome is Outcome.APPLIED:
            # Only a new state of the result moves it in "newest first" and ``since=``;
            # filling fields a webhook lacked (batch id, queue times) does not.
            updates["updated_at"] = now
        if delivered:
            updates["delivery_count"] = j.delivery_count + 1
        if updates:
            self.conn.execute(
                sa.update(JOBS).where(j.scoring_job_id == result.scoring_job_id).values(updates)
            )
        return Change(outcome, created=False, changed=changed)

    def insert_new_results(
        self,
        results: Sequence[ScoringResult],
        *,
        source: str,
        now: datetime,
        delivered: bool,
        stored: set[str] | None = None,
    ) -> set[str]:
        """Insert, in one statement, every result whose scoring job is not stored yet.

        Returns the ids inserted (each for its first occurrence in ``results``); the
        others must go through ``apply_result``, which merges by precedence. One
        prebuilt statement for the group costs far less than one statement per row.
        ``stored``: which of their scoring jobs are stored already, when the caller read
        it in this transaction (``group_prior``); read here otherwise (SQLite).
        Results of erased candidates are the caller's to leave out (``open_group`` does);
        PostgreSQL's statement leaves them out itself.
        """
        return self.send_new_results(
            results, source=source, now=now, delivered=delivered, stored=stored
        )()

    def send_new_results(
        self,
        results: Sequence[ScoringResult],
        *,
        source: str,
        now: datetime,
        delivered: bool,
        stored: set[str] | None = None,
    ) -> Callable[[], set[str]]:
        """``insert_new_results``, in two steps: the insert is sent now, and the function
        returned reads which ids it inserted. On the writer lane's pipelined PostgreSQL
        connection, what is sent in between waits for the server together with it."""
        if not results:
            return set
        sql = hot_sql(self._dialect)
        first: dict[str, ScoringResult] = {}
        for result in results:
            first.setdefault(result.scoring_job_id, result)
        stamp = sql.time(now)
        group = (source, stamp, stamp, int(delivered))
        if sql.returns_inserted:  # PostgreSQL: one INSERT … SELECT FROM json_to_recordset
            records = sql.job_records(sql.job_row(r) for r in first.values())
            cursor = self._driver_sql(sql.insert_jobs, (*group, records))
            return lambda: {str(scoring_job_id) for (scoring_job_id,) in self._rows(cursor)}
        # SQLite: BEGIN IMMEDIATE holds the write lock, so what is absent now stays absent
        # until this transaction commits; an executemany cannot return rows.
        if stored is None:
            lookup = sql.prior((False, False, True))
            found = self._rows(self._driver_sql(lookup, (self._id_list(list(first)),)))
            stored = {str(scoring_job_id) for (_, scoring_job_id, _) in found}
        new = [r for key, r in first.items() if key not in stored]
        if new:
            rows = [sql.job_row(r) + group for r in new]
            done = self._driver_sql(sql.insert_jobs, rows, many=True)
            if done.rowcount != len(rows):  # pragma: no cover - only without the write lock
                raise RuntimeError("results appeared during the transaction")
        inserted = {r.scoring_job_id for r in new}
        return lambda: inserted

    def track_pending_jobs(
        self,
        *,
        scoring_job_ids: Sequence[str],
        batch_id: str | None,
        job_id: str,
        tenant_id: str | None,
        now: datetime,
    ) -> list[str]:
        """Record scoring jobs we know exist (from ``submit``); returns the ids that were new
        (the change feed logs them as creations)."""
        added: list[str] = []
        for scoring_job_id in scoring_job_ids:
            result = ScoringResult(
                scoring_job_id=scoring_job_id,
                status="pending",
                job_id=job_id,
                batch_id=batch_id,
                tenant_id=tenant_id,
            )
            if self.apply_result(result, source="submit", now=now).created:
                added.append(scoring_job_id)
        return added

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
