"""The change feed: every change of a stored result, numbered in commit order.

Why a counter row and not a sequence: numbers drawn from a sequence (or an autoincrement)
are handed out when a transaction *asks*, but become visible when it *commits*. With two
writers, number 8 can commit before number 7; a reader that saw 8 and moved its cursor
past it would never see 7. Here every writer bumps the one row of ``change_counter`` in
its own transaction, as its last statement. The row lock makes the next writer wait until
this one has committed (or rolled back), so numbers become visible strictly in order, and
a reader that sees the counter at ``n`` can read every change up to ``n``. The lock is
held only from that last statement to the commit, and once per commit group.

Changes of one result inside one transaction fold into one change (no reader could have
seen the state in between); a creation stays a creation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.store._base import StoreBase
from storage.store.dialect import hot_sql
from storage.store.results import Change
from storage.store.tables import CHANGES, COUNTER

ChangeKind = Literal["created", "updated", "erased"]
_COUNTER_ID = 1


@dataclass(frozen=True, slots=True)
class ResultChange:
    """A result that a transaction created or updated (not a duplicate, stale or gap fill)."""

    scoring_job_id: str
    kind: ChangeKind


@dataclass(frozen=True, slots=True)
class ErasedResult:
    """A result as it was when ``erase`` deleted it: what its ``erased`` change records."""

    scoring_job_id: str
    status: str
    job_id: str | None
    batch_id: str | None


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    """Feed filters: the result's job, batch, or status as of the change."""

    job_id: str | None = None
    batch_id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Changes after a position, and the position to ask from next time.

    ``next_seq`` moves past changes the filter left out, so a filtered reader never scans
    them again; it never moves past a change that this page did not return.
    """

    rows: list[RowMapping]
    next_seq: int


def feed_change(scoring_job_id: str, change: Change) -> ResultChange | None:
    """What the feed records of one ``apply_result``: a creation or a real update; nothing
    for a duplicate, a stale event, or gap-filling that changes nothing a consumer sees."""
    if change.created:
        return ResultChange(scoring_job_id, "created")
    if change.updated:
        return ResultChange(scoring_job_id, "updated")
    return None


def fold(changes: Sequence[ResultChange]) -> list[ResultChange]:
    """One change per result, in first-seen order; an erasure outranks everything, a
    creation outranks an update."""
    folded: dict[str, ResultChange] = {}
    for change in changes:
        seen = folded.get(change.scoring_job_id)
        # Re-assigning an existing key keeps its place: the order stays first-seen.
        if seen is None or (seen.kind != "erased" and change.kind != "updated"):
            folded[change.scoring_job_id] = change
    return list(folded.values())


class ChangeQueries(StoreBase):
    def log_changes(self, changes: Sequence[ResultChange], *, now: datetime) -> None:
        """Number and record ``changes``.

        Call it as the last statement of the transaction: the counter's row lock is held
        from here to the commit, and taking no other lock after it rules out deadlocks.
        A change of a result that is not stored fails the transaction (``hot_sql``).
        """
        folded = fold(changes)
        if not folded:
            return
        sql = hot_sql(self._dialect)
        n = len(folded)
        ids = [change.scoring_job_id for change in folded]
        kinds = [change.kind for change in folded]
        if self._dialect == "postgresql":  # one statement numbers and records
            params: tuple[Any, ...] = (n, n, sql.time(now), ids, kinds)
        else:
            top = self._bump_counter(n)
            seqs = list(range(top - n + 1, top + 1))
            params = (sql.time(now), json.dumps(list(zip(seqs, ids, kinds, strict=True))))
        # Nothing read back: in the writer's pipeline, the COMMIT follows at once.
        self._driver_sql(sql.log_changes, params, replan=True)

    def _bump_counter(self, n: int) -> int:
        """Hand out ``n`` numbers (the counter's row lock is held until the commit); returns
        the last of them."""
        ((top,),) = self._rows(self._driver_sql(hot_sql(self._dialect).bump_counter, (n,)))
        return int(top)

    def log_erasures(self, erased: Sequence[ErasedResult], *, now: datetime) -> int:
        """Number and record the erasure of results already deleted (``erase``): one
        ``erased`` change each, with the status, job and batch they had, so that a consumer
        of the feed removes its copy too. Returns the last number handed out (0: none).

        The last statement of the transaction, like ``log_changes``.
        """
        if not erased:
            return 0
        top = self._bump_counter(len(erased))
        rows = [
            {
                "seq": seq,
                "scoring_job_id": result.scoring_job_id,
                "kind": "erased",
                "status": result.status,
                "job_id": result.job_id,
                "batch_id": result.batch_id,
                "changed_at": now,
            }
            for seq, result in enumerate(erased, start=top - len(erased) + 1)
        ]
        self.conn.execute(sa.insert(CHANGES), rows)
        return top

    def change_head(self) -> int:
        """The last change number committed (0 before the first change)."""
        head = self.conn.execute(
            sa.select(COUNTER.c.seq).where(COUNTER.c.id == _COUNTER_ID)
        ).scalar()
        return int(head or 0)

    def list_changes(self, *, after: int, flt: ChangeFilter, limit: int) -> ChangePage:
        """Changes numbered above ``after``, ascending, at most ``limit`` of them."""
        # The head first, then rows up to it: on PostgreSQL each statement sees its own
        # snapshot, and a change committed in between must not be skipped by next_seq.
        head = self.change_head()
        c = CHANGES.c
        query = sa.select(CHANGES).where(c.seq > after, c.seq <= head)
        if flt.job_id is not None:
            query = query.where(c.job_id == flt.job_id)
        if flt.batch_id is not None:
            query = query.where(c.batch_id == flt.batch_id)
        if flt.status is not None:
            query = query.where(c.status == flt.status)
        rows = list(self.conn.execute(query.order_by(c.seq).limit(limit)).mappings())
        next_seq = int(rows[-1]["seq"]) if len(rows) == limit else max(after, head)
        return ChangePage(rows, next_seq)


__all__ = [
    "ChangeFilter",
    "ChangeKind",
    "ChangePage",
    "ChangeQueries",
    "ErasedResult",
    "ResultChange",
]
