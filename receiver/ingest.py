"""The ingest use case: store one verified delivery, or a commit group of them.

``ingest`` is the whole business rule for a delivery (result upsert by precedence, batch
marked due, inbox row), all inside the caller's transaction; ``ingest_group`` does the same
for many deliveries at once (``receiver.writer`` runs it, one group per commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from receiver.errors import PayloadError
from receiver.events import BatchCompletedEvent, Event, ScoreEvent, TestEvent, parse_event
from storage.records import InboundDelivery, Outcome
from storage.store import Store

RECORDED = "recorded"
STORED_UNPARSED = "stored-unparsed"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery that passed verification; ``event`` is None when the body did not parse."""

    delivery: InboundDelivery
    event: Event | None


def apply_event(store: Store, event: Event | None, *, now: datetime) -> str:
    """Apply a parsed event (None: unparsed); returns the webhook response status."""
    return _apply(store, event, now=now)[0]


def _apply(store: Store, event: Event | None, *, now: datetime) -> tuple[str, bool]:
    """(webhook response status, whether a stored result changed)."""
    if isinstance(event, ScoreEvent):
        change = store.apply_result(event.result, source="webhook", now=now, delivered=True)
        return change.outcome.value, change.changed
    if isinstance(event, BatchCompletedEvent):
        # A summary only: the batch is reconciled to pick up anything the score events missed.
        store.update_batch(event.batch, now=now, due=True)
        return RECORDED, False
    if isinstance(event, TestEvent):
        return RECORDED, False
    return STORED_UNPARSED, False


def ingest(store: Store, item: Accepted, *, now: datetime) -> str:
    """Apply one delivery and record it in the inbox; returns the webhook response status."""
    status = apply_event(store, item.event, now=now)
    store.record_delivery(item.delivery, outcome=status, now=now)
    return status


def ingest_group(store: Store, items: Sequence[Accepted], *, now: datetime) -> list[str]:
    """``ingest`` for a commit group, with the same outcome as one at a time, in order.

    Results new to the store go in with one multi-row insert; everything else (a scoring
    job already stored, or seen earlier in the group) takes the per-event path. The ids of
    the results the group created or changed are gathered in ``changed``, in the committing
    transaction, for whoever needs to know (one call per group).
    """
    scores = [item.event.result for item in items if isinstance(item.event, ScoreEvent)]
    created = store.insert_new_results(scores, source="webhook", now=now, delivered=True)
    changed: set[str] = set(created)
    statuses: list[str] = []
    for item in items:
        event = item.event
        if isinstance(event, ScoreEvent) and event.result.scoring_job_id in created:
            created.discard(event.result.scoring_job_id)  # later repeats merge as usual
            statuses.append(Outcome.APPLIED.value)
            continue
        status, was_changed = _apply(store, event, now=now)
        if was_changed and isinstance(event, ScoreEvent):
            changed.add(event.result.scoring_job_id)
        statuses.append(status)
    store.record_deliveries(
        [(item.delivery, status) for item, status in zip(items, statuses, strict=True)], now=now
    )
    return statuses


def replay(store: Store, delivery_id: int, body: bytes, *, now: datetime) -> str:
    """Re-parse a stored delivery with this version's parser and apply it.

    For deliveries kept as ``stored-unparsed`` (an event this version did not know, or a
    body that did not parse). The bytes were verified on arrival; they are applied by the
    same rules as a live delivery, and the inbox row gets the new outcome.
    """
    try:
        event: Event | None = parse_event(body)
    except PayloadError:
        event = None
    outcome = apply_event(store, event, now=now)
    name, scoring_job_id, batch_id = event_ids(event)
    store.update_delivery(
        delivery_id, outcome=outcome, event=name, scoring_job_id=scoring_job_id, batch_id=batch_id
    )
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
