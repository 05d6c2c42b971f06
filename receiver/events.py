"""Parse verified webhook bodies into frozen, typed events. Pure: no I/O.

Nova's bodies are flat, with ``event`` as the discriminator (NOVA.md §1). Anything that is
not JSON, or not the shape of a known event, raises ``PayloadError``; an unknown event name
parses to ``UnknownEvent``. Nothing else ever escapes: a signed payload must not cause a 500.
Strings that a database cannot store as text (NUL, lone surrogates) are a ``PayloadError``
too; the raw bytes are still kept in the inbox. So are values no scorer produces
(``receiver.values``): a score outside 0..10, a timestamp outside 2000-2100 or with
non-ASCII digits, a score event missing what reconcile and readers need (ids, the score or
error, the time), and ids that are not plain path segments (``..``, ``/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, assert_never

from receiver.errors import PayloadError
from receiver.values import (
    DOT_SEGMENTS,
    SEPARATORS,
    check_score,
    is_plain_segment,
    normalize_status,
    parse_timestamp,
)
from receiver.vocabulary import EventName, known_event
from storage.records import BatchState, ScoringResult

__all__ = [
    "BatchCompletedEvent",
    "Event",
    "ScoreEvent",
    "TestEvent",
    "UnknownEvent",
    "load_json",
    "normalize_status",  # re-exported from receiver.values: one status map for every source
    "parse_event",
]

# Ids are indexed columns: PostgreSQL cannot index a value of several kilobytes, and no
# Nova id comes near this. Longer ones make the payload unparsed (stored, not applied).
MAX_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class ScoreEvent:
    """``score.completed`` or ``score.failed``."""

    name: str
    result: ScoringResult


@dataclass(frozen=True, slots=True)
class BatchCompletedEvent:
    name: str
    batch: BatchState


@dataclass(frozen=True, slots=True)
class TestEvent:
    """Nova's "Send Test Webhook" / playground event."""

    __test__ = False  # not a pytest test class, whatever its name says

    name: str
    message: str | None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A well-formed JSON object whose ``event`` this version does not know."""

    name: str | None


Event = ScoreEvent | BatchCompletedEvent | TestEvent | UnknownEvent


def _fail(message: str) -> NoReturn:
    raise PayloadError(message)


def _reject_constant(name: str) -> NoReturn:
    _fail(f"non-standard JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        _fail("duplicate key in JSON object")
    return result


# Built once, like json's own default decoder (json.loads with options builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def load_json(body: bytes) -> Any:
    """Strict ``json.loads``: no NaN/Infinity, no duplicate keys, every failure a PayloadError."""
    try:
        # What json.loads does with bytes: UTF-8/16/32 by the first bytes, surrogates kept.
        # An object whose second byte is not NUL is UTF-8 (no BOM, not UTF-16/32): every
        # genuine delivery, which skips detect_encoding's Python on the writer's path.
        utf8 = body[:1] == b"{" and body[1:2] != b"\x00"
        encoding = "utf-8" if utf8 else json.detect_encoding(body)
        return _DECODER.decode(body.decode(encoding, "surrogatepass"))
    except PayloadError:
        raise
    # RecursionError: deep nesting; UnicodeDecodeError: not UTF-8 (a ValueError subclass).
    except (ValueError, RecursionError, TypeError) as exc:
        raise PayloadError(f"body is not JSON: {type(exc).__name__}") from None


def _text(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    # Every genuine value, in one test: ASCII text (no lone surrogate) without NUL.
    if type(value) is str and value.isascii() and "\x00" not in value and (value or not required):
        return value
    if value is None:
        if required:
            _fail(f"{key} is required")
        return None
    if not isinstance(value, str):
        _fail(f"{key} must be a string")
    if required and not value:
        _fail(f"{key} must not be empty")
    return _storable(key, value)


def _storable(key: str, value: str) -> str:
    if "\x00" in value:
        _fail(f"{key} contains a NUL character")
    # isascii() reads a flag CPython keeps on every string: only non-ASCII text can hold a
    # lone surrogate, and only it pays for the encoding check (this runs on every delivery).
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _fail(f"{key} contains a lone surrogate")
    return value


def _texts(obj: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        _fail(f"{key} must be a list of strings")
    for item in value:
        if not isinstance(item, str):
            _fail(f"{key} must be a list of strings")
        _storable(key, item)
    return tuple(value)


def _integer(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int subclass; a score of `true` is a malformed payload, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{key} must be an integer")
    if not -(2**31) <= value < 2**31:
        _fail(f"{key} is out of range")
    return value


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = _integer(obj, key)
    if value is not None and value < 0:
        _fail(f"{key} must not be negative")
    return value


def _time(obj: dict[str, Any], key: str) -> datetime | None:
    raw = _text(obj, key)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except (ValueError, OverflowError, OSError):
        _fail(f"{key} is not an ISO-8601 timestamp between 2000 and 2100")


def _required_time(obj: dict[str, Any], key: str) -> datetime:
    value = _time(obj, key)
    if value is None:
        _fail(f"{key} is required")
    return value


def _object(obj: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        if required:
            _fail(f"{key} is required")
        return {}
    if not isinstance(value, dict):
        _fail(f"{key} must be an object")
    return value


def _id(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    # Every genuine id, in one test: printable ASCII (so no NUL or control character),
    # not too long, and a plain path segment (``is_plain_segment``); else the checks
    # below, one by one, say what is wrong.
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and value not in DOT_SEGMENTS
        and SEPARATORS.isdisjoint(value)
    ):
        return value
    value = _text(obj, key, required=required)
    if value is None:
        return None
    if len(value) > MAX_ID_LENGTH:
        _fail(f"{key} is longer than {MAX_ID_LENGTH} characters")
    # Ids become path segments of reconcile's requests: "..", "/" or a control character
    # would make it address another resource (or forge a header).
    if not is_plain_segment(value):
        _fail(f"{key} is not a plain id (empty, '.', '..', a slash or a control character)")
    return value


def _ids(obj: dict[str, Any]) -> dict[str, Any]:
    # A score event without its job and application cannot be reconciled or found again.
    return {
        "scoring_job_id": _id(obj, "scoringJobId", required=True),
        "job_id": _id(obj, "jobId", required=True),
        "application_id": _id(obj, "applicationId", required=True),
        "tenant_id": _id(obj, "tenantId"),
        "criteria_version_id": _id(obj, "criteriaVersionId"),
        "batch_id": _id(obj, "batchId"),
    }


def _score(result: dict[str, Any]) -> int:
    score = _integer(result, "score")
    if score is None:
        _fail("result.score is required")
    try:
        return check_score(score)
    except ValueError as exc:
        _fail(f"result.{exc}")


def _score_completed(obj: dict[str, Any]) -> ScoringResult:
    # A completed result without a score would be stored as final and never revisited.
    result = _object(obj, "result", required=True)
    assessment = _object(result, "assessment")
    return ScoringResult(
        status="completed",
        nova_status="completed",
        score=_score(result),
        verdict=_text(assessment, "verdict"),
        strengths=_texts(assessment, "strengths"),
        concerns=_texts(assessment, "concerns"),
        interview_focus=_texts(assessment, "interviewFocus"),
        completed_at=_required_time(obj, "completedAt"),
        **_ids(obj),
    )


def _score_failed(obj: dict[str, Any]) -> ScoringResult:
    error = _object(obj, "error", required=True)
    code, message = _text(error, "code"), _text(error, "message")
    if not code and not message:
        _fail("error needs a code or a message")
    return ScoringResult(
        status="failed",
        nova_status="failed",
        error_type=_text(error, "type"),
        error_code=code,
        error_message=message,
        failed_at=_required_time(obj, "failedAt"),
        **_ids(obj),
    )


def _batch_completed(obj: dict[str, Any]) -> BatchState:
    nova_status = _text(obj, "status")
    try:
        status = normalize_status(nova_status) if nova_status else "completed"
    except ValueError as exc:
        _fail(str(exc))
    return BatchState(
        batch_id=_id(obj, "batchId", required=True) or "",
        job_id=_id(obj, "jobId", required=True) or "",
        tenant_id=_id(obj, "tenantId"),
        status=status,
        nova_status=nova_status,
        total_jobs=_count(obj, "totalJobs"),
        completed_jobs=_count(obj, "completedJobs"),
        failed_jobs=_count(obj, "failedJobs"),
        completed_at=_time(obj, "completedAt"),
    )


def parse_event(body: bytes) -> Event:
    """Parse a verified body. Raises ``PayloadError`` when it is not a well-formed event."""
    obj = load_json(body)
    if not isinstance(obj, dict):
        _fail("body is not a JSON object")
    name = obj.get("event")
    if not isinstance(name, str):
        _fail("event is missing or not a string")
    match known_event(name):
        case EventName.SCORE_COMPLETED:
            return ScoreEvent(name, _score_completed(obj))
        case EventName.SCORE_FAILED:
            return ScoreEvent(name, _score_failed(obj))
        case EventName.BATCH_COMPLETED:
            return BatchCompletedEvent(name, _batch_completed(obj))
        case EventName.TEST:
            return TestEvent(name, _text(obj, "message"))
        case None:
            # The name goes into an indexed column: keep it only when it is a plausible one.
            plausible = name and len(name) <= MAX_ID_LENGTH
            return UnknownEvent(_storable("event", name) if plausible else None)
        case unhandled:
            assert_never(unhandled)
