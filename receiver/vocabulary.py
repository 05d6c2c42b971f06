"""The webhook vocabulary, defined once. Pure: no I/O.

Every event nova-sink knows, with the spelling Nova puts in ``X-Webhook-Event`` (NOVA.md §2),
and every status the webhook endpoint answers with. The parser, the ingest dispatch, the
metrics labels, ``send-test-webhook`` and fake Nova all derive from these two enums: a new
event is added here, and mypy then points at every ``match`` that does not handle it.
"""

from __future__ import annotations

from enum import StrEnum


class EventName(StrEnum):
    """A webhook ``event`` this version parses and applies."""

    SCORE_COMPLETED = "score.completed"
    SCORE_FAILED = "score.failed"
    BATCH_COMPLETED = "batch.completed"
    TEST = "test"

    @property
    def header(self) -> str:
        """The ``X-Webhook-Event`` spelling: UPPER_SNAKE, except Nova's lowercase ``test``."""
        if self is EventName.TEST:
            return "test"
        return self.value.upper().replace(".", "_")


# Other body spellings Nova's docs use for a known event (the playground's test send).
ALIASES: dict[str, EventName] = {"webhook.test": EventName.TEST}


def known_event(name: str) -> EventName | None:
    """The event ``name`` spells (its own value or an alias), or None for an unknown one."""
    try:
        return EventName(name)
    except ValueError:
        return ALIASES.get(name)


class WebhookStatus(StrEnum):
    """What ``POST /webhooks/nova`` answers in ``{"status": …}`` and the inbox records."""

    APPLIED = "applied"  # the stored result changed (created, or a higher-precedence state)
    DUPLICATE = "duplicate"  # the stored result already reflects this event
    STALE = "stale"  # a lower-precedence event: kept in the inbox, result unchanged
    RECORDED = "recorded"  # batch.completed and test: recorded, no result to change
    STORED_UNPARSED = "stored-unparsed"  # verified, but not an event this version applies
    ERASED = "erased"  # the candidate was erased: neither the result nor the body is kept
