"""The ingest use case: store one verified delivery, and the group-commit writer that runs it.

``ingest`` is the whole business rule for a delivery (result upsert by precedence, batch
marked due, inbox row), all inside the caller's transaction. ``Writer`` owns one thread and
commits many deliveries per transaction: with ``synchronous=FULL`` every commit is an fsync,
so sharing one among concurrent requests is what makes durable ingest fast. A request is
answered only after the commit that contains its rows has returned.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from receiver.errors import PayloadError
from receiver.events import BatchCompletedEvent, Event, ScoreEvent, TestEvent, parse_event
from storage.db import Engine, transaction
from storage.errors import StoreUnavailable
from storage.records import InboundDelivery, Outcome
from storage.store import ResultChange, Store, feed_change

RECORDED = "recorded"
STORED_UNPARSED = "stored-unparsed"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery that passed verification; ``event`` is None when the body did not parse."""

    delivery: InboundDelivery
    event: Event | None


def apply_event(store: Store, event: Event | None, *, now: datetime) -> str:
    """Apply a parsed event (None: unparsed); returns the webhook response status."""
    if isinstance(event, ScoreEvent):
        change = store.apply_result(event.result, source="webhook", now=now, delivered=True)
        return change.outcome.value
    if isinstance(event, BatchCompletedEvent):
        # A summary only: the batch is reconciled to pick up anything the score events missed.
        store.update_batch(event.batch, now=now, due=True)
        return RECORDED
    if isinstance(event, TestEvent):
        return RECORDED
    return STORED_UNPARSED


def _apply_for_feed(
    store: Store, event: Event | None, *, now: datetime, delivered: bool = True
) -> tuple[str, ResultChange | None]:
    """``apply_event``, plus what the change feed records of it (None: nothing to record)."""
    if isinstance(event, ScoreEvent):
        change = store.apply_result(event.result, source="webhook", now=now, delivered=delivered)
        return change.outcome.value, feed_change(event.result.scoring_job_id, change)
    return apply_event(store, event, now=now), None


def ingest(store: Store, item: Accepted, *, now: datetime) -> str:
    """Apply one delivery and record it in the inbox; returns the webhook response status."""
    status, fed = _apply_for_feed(store, item.event, now=now)
    store.record_delivery(item.delivery, outcome=status, now=now)
    store.log_changes([fed] if fed else [], now=now)  # last: it takes the feed's counter lock
    return status


def ingest_group(store: Store, items: Sequence[Accepted], *, now: datetime) -> list[str]:
    """``ingest`` for a commit group, with the same outcome as one at a time, in order.

    Results new to the store go in with one multi-row insert; everything else (a scoring
    job already stored, or seen earlier in the group) takes the per-event path.
    """
    scores = [item.event.result for item in items if isinstance(item.event, ScoreEvent)]
    created = store.insert_new_results(scores, source="webhook", now=now, delivered=True)
    statuses: list[str] = []
    feed: list[ResultChange] = []  # the change feed's entries, in delivery order
    for item in items:
        event = item.event
        if isinstance(event, ScoreEvent) and event.result.scoring_job_id in created:
            created.discard(event.result.scoring_job_id)  # later repeats merge as usual
            statuses.append(Outcome.APPLIED.value)
            feed.append(ResultChange(event.result.scoring_job_id, "created"))
        else:
            status, fed = _apply_for_feed(store, event, now=now)
            statuses.append(status)
            if fed is not None:
                feed.append(fed)
    store.record_deliveries(
        [(item.delivery, status) for item, status in zip(items, statuses, strict=True)], now=now
    )
    store.log_changes(feed, now=now)  # last: it takes the feed's counter lock
    return statuses


def replay(store: Store, delivery_id: int, body: bytes, *, now: datetime) -> str:
    """Re-parse a stored delivery with this version's parser and apply it.

    For deliveries kept as ``stored-unparsed`` (an event this version did not know, or a
    body that did not parse). The bytes were verified on arrival; they are applied by the
    same rules as a live delivery, but a replay is not a delivery: it does not count in the
    result's ``delivery_count``, and the inbox row keeps the outcome Nova was answered with
    beside the replay's own (``replay_outcome``, ``replayed_at``).
    """
    try:
        event: Event | None = parse_event(body)
    except PayloadError:
        event = None
    # A replay is not a delivery: it does not count in delivery_count.
    outcome, fed = _apply_for_feed(store, event, now=now, delivered=False)
    name, scoring_job_id, batch_id = event_ids(event)
    store.update_delivery(
        delivery_id,
        replay_outcome=outcome,
        replayed_at=now,
        event=name,
        scoring_job_id=scoring_job_id,
        batch_id=batch_id,
    )
    store.log_changes([fed] if fed else [], now=now)  # last: it takes the feed's counter lock
    return outcome


def event_ids(event: Event | None) -> tuple[str | None, str | None, str | None]:
    """(event name, scoring job id, batch id) for the inbox row."""
    if isinstance(event, ScoreEvent):
        return event.name, event.result.scoring_job_id, event.result.batch_id
    if isinstance(event, BatchCompletedEvent):
        return event.name, None, event.batch.batch_id
    if event is None:
        return None, None, None
    return event.name, None, None


_Job = tuple[Accepted, "Future[str]"]
_STOP = object()


class Writer:
    """One thread that commits queued deliveries in groups of up to ``max_group``.

    If a group fails on a data error, each delivery of it is retried in its own transaction
    so that one bad row cannot fail its neighbours. If the database is unavailable, every
    delivery of the group fails with ``StoreUnavailable`` (the endpoint answers 503).
    """

    def __init__(
        self, engine: Engine, *, clock: Callable[[], datetime], max_group: int = 256
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nova-sink-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued delivery, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        # Anything queued behind the stop marker gets an answer (503), not a hang.
        while True:
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(late, tuple):
                late[1].set_exception(StoreUnavailable("shutting down"))

    async def submit(self, item: Accepted) -> str:
        """Queue ``item`` and wait until it is committed; returns the response status."""
        if not self._thread.is_alive():
            # Not started (app used without its lifespan) or already stopped: never hang.
            raise StoreUnavailable("the writer is not running")
        future: Future[str] = Future()
        self._queue.put((item, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            group: list[_Job] = [first]  # type: ignore[list-item]
            while len(group) < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                group.append(nxt)  # type: ignore[arg-type]
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        # A stable lock order keeps concurrent writers (other processes) from deadlocking.
        group.sort(key=lambda job: job[0].delivery.scoring_job_id or "")
        try:
            with transaction(self._engine) as store:
                now = self._clock()
                statuses = ingest_group(store, [item for item, _ in group], now=now)
        except StoreUnavailable as exc:
            for _, future in group:
                future.set_exception(exc)
            return
        except Exception as exc:  # noqa: BLE001 - isolate the bad delivery: retry each alone
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for job in group:
                self._commit_alone(job)
            return
        for (_, future), status in zip(group, statuses, strict=True):
            future.set_result(status)

    def _commit_alone(self, job: _Job) -> None:
        item, future = job
        try:
            with transaction(self._engine) as store:
                status = ingest(store, item, now=self._clock())
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request, not swallowed
            future.set_exception(exc)
        else:
            future.set_result(status)
