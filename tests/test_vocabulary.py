"""The webhook vocabulary: each event is defined once and every consumer derives from it."""

from __future__ import annotations

import json

import pytest

from receiver.cli.ops import EVENTS, sample_event
from receiver.events import UnknownEvent, parse_event
from receiver.vocabulary import EventName, known_event
from tests.factories import NOW


@pytest.mark.parametrize(
    ("event", "header"),
    [
        (EventName.SCORE_COMPLETED, "SCORE_COMPLETED"),
        (EventName.SCORE_FAILED, "SCORE_FAILED"),
        (EventName.BATCH_COMPLETED, "BATCH_COMPLETED"),
        (EventName.TEST, "test"),
    ],
)
def test_each_event_has_novas_header_spelling(event: EventName, header: str) -> None:
    """``X-Webhook-Event`` is UPPER_SNAKE, except the lowercase ``test`` (NOVA.md §2)."""
    assert event.header == header


@pytest.mark.parametrize("event", list(EventName))
def test_every_known_event_parses_as_itself_not_unknown(event: EventName) -> None:
    """A sample of each known event (as send-test-webhook builds it) parses to a known type."""
    parsed = parse_event(json.dumps(sample_event(event, now=NOW)).encode())
    assert not isinstance(parsed, UnknownEvent)
    assert known_event(parsed.name) is event


def test_aliases_and_unknown_names() -> None:
    """The playground's ``webhook.test`` is the test event; anything else is unknown."""
    assert known_event("webhook.test") is EventName.TEST
    assert known_event("score.rescored") is None
    assert isinstance(parse_event(b'{"event": "score.rescored"}'), UnknownEvent)


def test_send_test_webhook_offers_exactly_the_known_events() -> None:
    """The CLI's ``--event`` choices come from the vocabulary, not a list of its own."""
    assert set(EVENTS) == {event.value for event in EventName}
