"""Retention, erasure and the overview: statements that span every aggregate."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage.records import STORED_UNPARSED
from storage.store.changes import ChangeQueries, ErasedResult
from storage.store.dialect import body_contains, hot_sql
from storage.store.reads import schema_revision
from storage.store.tables import BATCHES, CHANGES, DELIVERIES, ERASED, JOBS, REJECTED, b, d, j, r

UNPARSED_EVENT = "(unparsed)"  # how ``stats`` names deliveries whose body did not parse


class AdminQueries(ChangeQueries):
    def purge_bodies(
        self, *, older_than: datetime, now: datetime, include_unparsed: bool = False
    ) -> int:
        """Drop raw bodies of deliveries received before ``older_than`` (rows stay).

        The body of a ``stored-unparsed`` delivery is its only copy (no result was made of
        it; a later version may replay it), so it is kept unless ``include_unparsed`` or a
        replay has since parsed it.
        """
        query = sa.update(DELIVERIES).where(d.received_at < older_than, d.raw_body.is_not(None))
        if not include_unparsed:
            replayed = sa.and_(d.replay_outcome.is_not(None), d.replay_outcome != STORED_UNPARSED)
            query = query.where(sa.or_(d.outcome != STORED_UNPARSED, replayed))
        result = self.conn.execute(query.values(raw_body=None, body_purged_at=now))
        return int(result.rowcount)

    def erase_application(self, application_id: str, *, now: datetime) -> dict[str, int]:
        """Delete every trace of one candidate and keep a tombstone; rows removed per table.

        The change feed keeps one row per result deleted, its ``erased`` change (the id,
        status, job and batch: no personal data), numbered now, so that its consumers delete
        their copies too; the result's earlier changes go.

        Inbox rows go by scoring job. Deliveries with no scoring job recorded (stored
        unparsed) go when their body mentions the candidate: for a body that parses as
        JSON, an ``applicationId`` field equal to the id; for one that does not, the id as a
        JSON string anywhere in the bytes (nothing better can be known of it).
        """
        job_ids = sa.select(j.scoring_job_id).where(j.application_id == application_id)
        erased = [
            ErasedResult(*row)
            for row in self.conn.execute(
                sa.select(j.scoring_job_id, j.status, j.job_id, j.batch_id)
                .where(j.application_id == application_id)
                .order_by(j.scoring_job_id)
            )
        ]
        removed = {
            "delivery": self.conn.execute(
                sa.delete(DELIVERIES).where(d.scoring_job_id.in_(job_ids))
            ).rowcount,
        }
        unparsed = self._unparsed_mentioning(application_id)
        if unparsed:
            removed["delivery"] += self.conn.execute(
                sa.delete(DELIVERIES).where(d.id.in_(unparsed))
            ).rowcount
        # The feed keeps one row per erased result, its ``erased`` change (logged below):
        # the earlier ones go, so a consumer starting later never sees the result at all.
        # No index serves this (every commit would pay for it): the feed is read whole.
        self.conn.execute(sa.delete(CHANGES).where(CHANGES.c.scoring_job_id.in_(job_ids)))
        removed["scoring_job"] = self.conn.execute(
            sa.delete(JOBS).where(j.application_id == application_id)
        ).rowcount
        removed["rejected_application"] = self.conn.execute(
            sa.delete(REJECTED).where(r.application_id == application_id)
        ).rowcount
        self.conn.execute(
            self._insert(ERASED)
            .values(application_id=application_id, erased_at=now)
            .on_conflict_do_nothing(index_elements=["application_id"])
        )
        # Last: it takes the feed's counter lock. Consumers of the feed learn of the erasure.
        self.log_erasures(erased, now=now)
        return {table: int(count) for table, count in removed.items()}

    def _unparsed_mentioning(self, application_id: str) -> list[int]:
        needle = json.dumps(application_id).encode()
        # The substring search narrows the candidates in SQL; the decision is made here.
        query = sa.select(d.id, d.raw_body).where(
            d.scoring_job_id.is_(None), body_contains(self._dialect, needle)
        )
        return [
            int(row_id)
            for row_id, body in self.conn.execute(query)
            if _mentions(bytes(body), application_id, needle)
        ]

    def erased_application_ids(self, application_ids: Iterable[str | None]) -> set[str]:
        """Which of ``application_ids`` were erased (their tombstones). One prebuilt
        statement for any count: the webhook writer asks once per commit group."""
        wanted = sorted({a for a in application_ids if a is not None})
        if not wanted:
            return set()
        sql = hot_sql(self._dialect).prior((True, False, False))  # (0, application id, NULL)
        params = (self._id_list(wanted),)
        return {str(a) for _, a, _ in self._rows(self._driver_sql(sql, params, replan=True))}

    def stats(self) -> dict[str, Any]:
        def counts(column: sa.Column[Any], none: str = "none") -> dict[str, int]:
            query = sa.select(column, sa.func.count()).group_by(column)
            return {
                none if key is None else str(key): int(n) for key, n in self.conn.execute(query)
            }

        def total(table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
            query = sa.select(sa.func.count()).select_from(table).where(*where)
            return int(self.conn.execute(query).scalar_one())

        return {
            "results": counts(j.status),
            "batches": counts(b.status),
            "deliveries": counts(d.outcome),
            "events": counts(d.event, none=UNPARSED_EVENT),
            "rejected_applications": total(REJECTED),
            "batches_due": total(BATCHES, b.due.is_(True)),
            "erased_applications": total(ERASED),
        }

    def schema_revision(self) -> str | None:
        """The alembic revision stamped in the database, or None if it has no schema."""
        return schema_revision(self.conn)

    def ping(self) -> None:
        self.conn.execute(sa.text("SELECT 1"))


def _mentions(body: bytes, application_id: str, needle: bytes) -> bool:
    """Whether a stored body is about ``application_id`` (see ``erase_application``)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return needle in body
    return _has_application_id(data, application_id)


def _has_application_id(data: Any, application_id: str) -> bool:
    """An ``applicationId`` field equal to the id, at any depth (envelopes, lists)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("applicationId") == application_id:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
