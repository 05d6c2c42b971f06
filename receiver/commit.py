"""One commit group, start to end: parse the deliveries, apply them, commit once.

``GroupCommitter`` is what the writer's lane runs, in a thread of the serving process or in
the commit process (``receiver.commit_process``): the same code either way, so the two
cannot drift apart in what they store or answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from receiver.ingest import Accepted, Committed, Received, accept, ingest, ingest_group
from storage.db import Engine, WriteLane
from storage.errors import StoreUnavailable

Outcome = Committed | BaseException


class Batch(NamedTuple):
    """Deliveries the event loop handed over in one go: when (``now``, the clock seam's
    time for the rows; ``queued_at``, ``time.monotonic()``, the same clock in every process
    of the machine), and what."""

    now: datetime
    queued_at: float
    rows: list[Received]


class GroupCommitter:
    """Commits groups of verified deliveries on one kept connection (``WriteLane``).

    If a group fails on a data error, each delivery of it is retried in its own transaction
    so that one bad row cannot fail its neighbours. If the database is unavailable, every
    delivery of the group fails with ``StoreUnavailable`` (the endpoint answers 503).
    """

    def __init__(self, engine: Engine, *, max_wait: float) -> None:
        self._lane = WriteLane(engine)
        self._max_wait = max_wait

    def commit_batches(self, batches: Sequence[Batch]) -> list[list[Outcome]]:
        """Commit the batches as one group; their outcomes, batch by batch.

        A batch that waited longer than ``max_wait`` (behind a group stuck on a lock until
        its timeout) is answered ``StoreUnavailable`` without touching the database: one
        stuck group never holds the deliveries behind it past that bound.
        """
        deadline = time.monotonic() - self._max_wait
        live = [batch for batch in batches if batch.queued_at >= deadline]
        rows = [row for batch in live for row in batch.rows]
        outcomes = iter(self.commit(rows, live[-1].now) if live else [])
        late = StoreUnavailable("queued behind a stuck write for too long")
        return [
            [next(outcomes) for _ in batch.rows]
            if batch.queued_at >= deadline
            else [late] * len(batch.rows)
            for batch in batches
        ]

    def commit(self, group: Sequence[Received], now: datetime) -> list[Outcome]:
        """The outcome of each delivery of ``group``, in its order."""
        parsed = [accept(received) for received in group]
        # A stable lock order keeps concurrent writers (other processes) from deadlocking.
        order = sorted(range(len(parsed)), key=lambda i: parsed[i][0].delivery.scoring_job_id or "")
        statuses = self._commit_items([parsed[i][0] for i in order], now)
        by_index = dict(zip(order, statuses, strict=True))
        return [_outcome(by_index[i], *parsed[i]) for i in range(len(parsed))]

    def release(self) -> None:
        """Give the kept connection back (idle, or stopping)."""
        self._lane.release()

    def _commit_items(self, items: list[Accepted], now: datetime) -> list[str | BaseException]:
        if not items:
            return []
        try:
            with self._lane.transaction() as store:
                return [status.value for status in ingest_group(store, items, now=now)]
        except StoreUnavailable as exc:
            return [exc] * len(items)
        except Exception as exc:  # noqa: BLE001 - isolate the bad delivery: retry each alone
            if len(items) == 1:
                return [exc]
            return [self._commit_alone(item, now) for item in items]

    def _commit_alone(self, item: Accepted, now: datetime) -> str | BaseException:
        try:
            with self._lane.transaction() as store:
                return ingest(store, item, now=now).value
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request, not swallowed
            return exc


def _outcome(status: str | BaseException, accepted: Accepted, parse_error: str | None) -> Outcome:
    """What the endpoint is told of one delivery of a group."""
    if isinstance(status, BaseException):
        return status
    delivery = accepted.delivery
    return Committed(status, delivery.event, delivery.scoring_job_id, parse_error)
