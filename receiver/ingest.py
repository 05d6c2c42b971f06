"""The ingest use case: store one verified delivery, or a commit group of them.

``ingest`` is the whole business rule for a delivery (result upsert by precedence, batch
marked due, inbox row), all inside the caller's transaction; ``ingest_group`` does the same
for many deliveries at once (``receiver.writer`` runs it, one group per commit).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, assert_never

from receiver.errors import PayloadError
from receiver.events import (
    BatchCompletedEvent,
    Event,
    ScoreEvent,
    TestEvent,
    UnknownEvent,
    parse_event,
)
from receiver.vocabulary import WebhookStatus
from storage.records import InboundDelivery
from storage.store import ResultChange, Store, feed_change


class Received(NamedTuple):
    """A verified delivery as the endpoint hands it to the writer, before it is parsed.

    Plain values only: the writer may run in another process (``receiver.commit_process``),
    and a tuple of bytes and strings crosses a pipe for a fraction of what a parsed event
    costs to pickle, on the event loop's thread, which is the one that limits throughput.
    """

    body: bytes
    delivery_key: str
    webhook_id: str | None
    signature_scheme: str
    secret_fingerprint: str
    body_sha256: str


class Committed(NamedTuple):
    """What the writer answers for a committed delivery: the webhook status, and what the
    endpoint's log line and metrics say of the event (the writer parsed it)."""

    status: str
    event: str | None
    scoring_job_id: str | None
    parse_error: str | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery that passed verification; ``event`` is None when the body did not parse."""

    delivery: InboundDelivery
    event: Event | None


def accept(received: Received) -> tuple[Accepted, str | None]:
    """Parse a verified delivery: (the delivery and its event, the parse error if any).

    A body that does not parse is kept (``event`` None, stored unparsed), never refused.
    """
    parse_error: str | None = None
    try:
        event: Event | None = parse_event(received.body)
    except PayloadError as exc:
        event, parse_error = None, str(exc)
    name, scoring_job_id, batch_id = event_ids(event)
    delivery = InboundDelivery(
        delivery_key=received.delivery_key,
        webhook_id=received.webhook_id,
        event=name,
        body=received.body,
        signature_scheme=received.signature_scheme,
        secret_fingerprint=received.secret_fingerprint,
        scoring_job_id=scoring_job_id,
        batch_id=batch_id,
        body_sha256=received.body_sha256,
    )
    return Accepted(delivery, event), parse_error


def _apply(
    store: Store, event: Event | None, *, now: datetime, delivered: bool = True
) -> tuple[WebhookStatus, ResultChange | None]:
    """(webhook response status, what the change feed records of it: None for nothing).

    Exhaustive over ``Event``: a new event type that is not handled here is a type error.
    """
    match event:
        case ScoreEvent():
            change = store.apply_result(
                event.result, source="webhook", now=now, delivered=delivered
            )
            fed = feed_change(event.result.scoring_job_id, change)
            return WebhookStatus(change.outcome.value), fed
        case BatchCompletedEvent():
            # A summary only: the batch is reconciled to pick up anything scores missed.
            store.update_batch(event.batch, now=now, due=True)
            return WebhookStatus.RECORDED, None
        case TestEvent():
            return WebhookStatus.RECORDED, None
        case UnknownEvent() | None:
            return WebhookStatus.STORED_UNPARSED, None
        case unhandled:
            assert_never(unhandled)


def _erased(store: Store, items: Sequence[Accepted]) -> set[str]:
    """The application ids of the score events in ``items`` that ``erase`` tombstoned.

    Nova retries a webhook for days: one sent, or retried, after the candidate was erased
    must not bring the result (or the body) back; reconcile skips them the same way.
    """
    return store.erased_application_ids(_application_ids(items))


def _application_ids(items: Sequence[Accepted]) -> Iterator[str | None]:
    """The candidates of the score events in ``items``."""
    return (
        item.event.result.application_id for item in items if isinstance(item.event, ScoreEvent)
    )


def _is_erased(event: Event | None, erased: set[str]) -> bool:
    return isinstance(event, ScoreEvent) and event.result.application_id in erased


def ingest(store: Store, item: Accepted, *, now: datetime) -> WebhookStatus:
    """Apply one delivery and record it in the inbox; returns the webhook response status."""
    if _is_erased(item.event, _erased(store, [item])):
        store.record_delivery(item.delivery, outcome=WebhookStatus.ERASED, now=now)
        return WebhookStatus.ERASED
    status, fed = _apply(store, item.event, now=now)
    store.record_delivery(item.delivery, outcome=status, now=now)
    store.log_changes([fed] if fed else [], now=now)  # last: it takes the feed's counter lock
    return status


def ingest_group(store: Store, items: Sequence[Accepted], *, now: datetime) -> list[WebhookStatus]:
    """``ingest`` for a commit group, with the same outcome as one at a time, in order.

    Results new to the store go in with one multi-row insert; everything else (a scoring
    job already stored, or seen earlier in the group) takes the per-event path. The change
    feed gets one entry per result created or changed, numbered once for the whole group.
    """
    # One look-up for the group (erased candidates, bodies under its webhook ids) and one
    # insert of its results new to the store.
    results = [item.event.result for item in items if isinstance(item.event, ScoreEvent)]
    prior, created = store.open_group(
        results, (item.delivery.webhook_id for item in items), now=now
    )
    erased = prior.erased
    statuses: list[WebhookStatus] = []
    feed: list[ResultChange] = []  # the change feed's entries, in delivery order
    for item in items:
        event = item.event
        if _is_erased(event, erased):
            statuses.append(WebhookStatus.ERASED)
            continue
        if isinstance(event, ScoreEvent) and event.result.scoring_job_id in created:
            created.discard(event.result.scoring_job_id)  # later repeats merge as usual
            statuses.append(WebhookStatus.APPLIED)
            feed.append(ResultChange(event.result.scoring_job_id, "created"))
            continue
        status, fed = _apply(store, event, now=now)
        statuses.append(status)
        if fed is not None:
            feed.append(fed)
    store.record_deliveries(
        [(item.delivery, status) for item, status in zip(items, statuses, strict=True)],
        now=now,
        prior=prior,
    )
    store.log_changes(feed, now=now)  # last: it takes the feed's counter lock
    return statuses


def replay(store: Store, delivery_id: int, body: bytes, *, now: datetime) -> WebhookStatus:
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
    outcome, fed = _apply(store, event, now=now, delivered=False)
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
    match event:
        case ScoreEvent():
            return event.name, event.result.scoring_job_id, event.result.batch_id
        case BatchCompletedEvent():
            return event.name, None, event.batch.batch_id
        case TestEvent() | UnknownEvent():
            return event.name, None, None
        case None:
            return None, None, None
        case unhandled:
            assert_never(unhandled)
