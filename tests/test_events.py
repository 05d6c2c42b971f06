"""receiver.events: every Nova event parses to its frozen type; anything else is a PayloadError."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.errors import PayloadError

# TestEvent is aliased: pytest would try to collect a Test* class in this module.
from receiver.events import (
    BatchCompletedEvent,
    ScoreEvent,
    UnknownEvent,
    normalize_status,
    parse_event,
)
from receiver.events import (
    TestEvent as NovaTestEvent,
)
from receiver.values import EARLIEST, LATEST, is_plain_segment, parse_timestamp
from tests.factories import (
    batch_completed,
    batch_completed_payload,
    encode,
    nova_test_event,
    score_completed,
    score_completed_payload,
    score_failed,
    score_failed_payload,
)

COMPLETED = datetime(2026, 1, 15, 11, 58, tzinfo=UTC)
FAILED = datetime(2026, 1, 15, 11, 57, tzinfo=UTC)


def rejects(body: bytes) -> str:
    with pytest.raises(PayloadError) as caught:
        parse_event(body)
    return str(caught.value)


# ---- each event type ---------------------------------------------------------------------------


def test_score_completed_parses_every_field() -> None:
    """score.completed becomes a completed ScoringResult with the assessment and ids."""
    event = parse_event(score_completed("sj_1", batchId="batch_9"))
    assert isinstance(event, ScoreEvent)
    assert event.name == "score.completed"
    result = event.result
    assert (result.scoring_job_id, result.status, result.nova_status) == (
        "sj_1",
        "completed",
        "completed",
    )
    assert (result.job_id, result.application_id, result.tenant_id) == (
        "job-123",
        "app-456",
        "acme-corp",
    )
    assert (result.batch_id, result.criteria_version_id) == ("batch_9", "cv_1")
    assert result.score == 7
    assert result.verdict == "Strong match for the role"
    assert result.strengths == ("Python", "Distributed systems")
    assert result.concerns == ("No on-call experience",)
    assert result.interview_focus == ("System design",)
    assert result.completed_at == COMPLETED
    assert result.failed_at is None
    assert result.error_code is None


def test_score_failed_parses_error_and_time() -> None:
    """score.failed becomes a failed ScoringResult with error code, message and failedAt."""
    event = parse_event(score_failed("sj_2"))
    assert isinstance(event, ScoreEvent)
    result = event.result
    assert (result.scoring_job_id, result.status) == ("sj_2", "failed")
    assert (result.error_code, result.error_message) == (
        "RESUME_FETCH_FAILED",
        "Could not download the resume",
    )
    assert result.failed_at == FAILED
    assert result.score is None
    assert result.completed_at is None


def test_old_generation_failure_keeps_error_type_uri() -> None:
    """The oldest docs' error.type URI is kept."""
    payload = score_failed_payload()
    payload["error"]["type"] = "https://embed.nova.dweet.com/errors/resume-fetch-failed"
    event = parse_event(encode(payload))
    assert isinstance(event, ScoreEvent)
    assert event.result.error_type == "https://embed.nova.dweet.com/errors/resume-fetch-failed"


def test_old_generation_completed_without_tenant_or_criteria_parses() -> None:
    """The oldest score.completed (no tenantId, no criteriaVersionId) still parses."""
    payload = score_completed_payload()
    del payload["tenantId"], payload["criteriaVersionId"]
    event = parse_event(encode(payload))
    assert isinstance(event, ScoreEvent)
    assert event.result.tenant_id is None
    assert event.result.criteria_version_id is None


def test_batch_completed_parses_counts_and_status() -> None:
    """batch.completed becomes a BatchState; status failed means finished with failures."""
    event = parse_event(batch_completed("batch_1"))
    assert isinstance(event, BatchCompletedEvent)
    batch = event.batch
    assert (batch.batch_id, batch.job_id, batch.tenant_id) == ("batch_1", "job-123", "acme-corp")
    assert (batch.status, batch.nova_status) == ("failed", "failed")
    assert (batch.total_jobs, batch.completed_jobs, batch.failed_jobs) == (3, 2, 1)
    assert batch.completed_at == COMPLETED


@pytest.mark.parametrize(
    ("nova", "expected"),
    [
        ("completed", "completed"),
        ("COMPLETED", "completed"),
        ("failed", "failed"),
        ("PARTIAL_FAILURE", "failed"),
        ("pending", "pending"),
        ("IN_PROGRESS", "pending"),
        ("queued", "pending"),
        ("Processing", "pending"),
    ],
)
def test_normalizes_status_of_every_generation(nova: str, expected: str) -> None:
    """Status spellings of all doc generations map case-insensitively to three values."""
    assert normalize_status(nova) == expected


def test_unknown_batch_status_is_a_payload_error() -> None:
    """A batch status no generation uses is malformed."""
    rejects(batch_completed(status="exploded"))


def test_test_event_parses_message() -> None:
    """The Portal's test send becomes a TestEvent."""
    event = parse_event(nova_test_event("hello"))
    assert isinstance(event, NovaTestEvent)
    assert (event.name, event.message) == ("test", "hello")


def test_unknown_event_name_is_an_unknown_event() -> None:
    """A well-formed object with an event name this version does not know is UnknownEvent."""
    event = parse_event(encode({"event": "score.rescored", "scoringJobId": "sj_1"}))
    assert event == UnknownEvent("score.rescored")


def test_events_are_frozen() -> None:
    """Parsed events and their results cannot be mutated."""
    event = parse_event(score_completed())
    assert isinstance(event, ScoreEvent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.result.score = 10  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "x"  # type: ignore[misc]


# ---- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b'{"event": "score.completed", "scoringJobId": "sj_1"',
        b"\xff\xfe\xfa",
        b'{"event": "score.completed", "scoringJobId": "sj_\xff"}',
        b"[]",
        b'[{"event": "score.completed"}]',
        b'"score.completed"',
        b"null",
        b"42",
        b"{}",
        b'{"event": 5}',
        b'{"event": null}',
    ],
    ids=[
        "empty",
        "text",
        "truncated-brace",
        "truncated-object",
        "binary",
        "invalid-utf8-in-string",
        "empty-array",
        "array-of-events",
        "string",
        "null",
        "number",
        "no-event",
        "event-not-string",
        "event-null",
    ],
)
def test_rejects_bodies_that_are_not_an_event_object(body: bytes) -> None:
    """Non-JSON, non-UTF-8 and non-object bodies are PayloadError."""
    rejects(body)


@pytest.mark.parametrize(
    "payload",
    [
        score_completed_payload(score="7"),
        score_completed_payload(score=True),
        score_completed_payload(score=7.5),
        score_completed_payload(score=2**40),
        score_completed_payload(verdict=["a"]),
        score_completed_payload(strengths="Python"),
        score_completed_payload(strengths=["ok", 3]),
        score_completed_payload(completed_at="yesterday"),
        score_completed_payload(completed_at=1736937045),
        score_completed_payload(scoring_job_id=""),
        {**score_completed_payload(), "scoringJobId": None},
        {**score_completed_payload(), "scoringJobId": 12},
        {**score_completed_payload(), "result": [7]},
        {**score_completed_payload(), "result": {"score": 7, "assessment": "good"}},
        score_failed_payload(code=404),
        {**score_failed_payload(), "error": "RESUME_FETCH_FAILED"},
        batch_completed_payload(total_jobs="3"),
        {**batch_completed_payload(), "batchId": None},
        {**batch_completed_payload(), "jobId": ""},
        {"event": "test", "message": ["hi"]},
    ],
    ids=lambda p: json.dumps(p)[:40],
)
def test_rejects_fields_of_the_wrong_type(payload: dict[str, Any]) -> None:
    """Strings for numbers, booleans for scores, lists for text and missing ids are rejected."""
    rejects(encode(payload))


def test_rejects_nan_and_infinity() -> None:
    """json.loads accepts NaN/Infinity; a Nova payload must not."""
    rejects(score_completed().replace(b'"score": 7', b'"score": NaN'))
    rejects(score_completed().replace(b'"score": 7', b'"score": -Infinity'))


def test_rejects_duplicate_keys() -> None:
    """A duplicated key (which value would win?) is rejected."""
    body = b'{"event": "score.completed", "scoringJobId": "a", "scoringJobId": "b"}'
    assert "duplicate" in rejects(body)


def test_rejects_deep_nesting_without_recursion_error() -> None:
    """100k nested brackets are a PayloadError, not a RecursionError."""
    rejects(b"[" * 100_000 + b"]" * 100_000)
    rejects(b'{"event": "test", "x": ' + b"{" * 100_000 + b"}" * 100_000 + b"}")


@pytest.mark.parametrize(
    "field", ["scoringJobId", "jobId", "applicationId", "tenantId", "verdict", "strengths"]
)
def test_rejects_nul_characters_in_stored_text(field: str) -> None:
    """A NUL in a stored text field (PostgreSQL rejects it) is a PayloadError."""
    payload = score_completed_payload()
    if field == "verdict":
        payload["result"]["assessment"]["verdict"] = "a\u0000b"
    elif field == "strengths":
        payload["result"]["assessment"]["strengths"] = ["ok", "\u0000"]
    else:
        payload[field] = "id\u0000"
    rejects(json.dumps(payload).encode())


@pytest.mark.parametrize("escaped", [b"\\ud800", b"\\udfff", b"x\\ud83d"])
def test_rejects_lone_surrogates(escaped: bytes) -> None:
    """A lone surrogate escape parses in json.loads but cannot be stored: PayloadError."""
    rejects(score_completed().replace(b"Strong match for the role", escaped))
    rejects(b'{"event": "test", "message": "' + escaped + b'"}')
    rejects(b'{"event": "' + escaped + b'"}')


def test_accepts_escaped_surrogate_pair() -> None:
    """A valid escaped surrogate pair is an ordinary astral character."""
    event = parse_event(score_completed().replace(b"Strong match for the role", b"\\ud83d\\ude00"))
    assert isinstance(event, ScoreEvent)
    assert event.result.verdict == "\U0001f600"


def test_huge_strings_and_unicode_parse_intact() -> None:
    """Emoji, RTL, CJK, combining marks and 500 kB strings come through unchanged."""
    texts = ["😀👩‍💻🏳️‍🌈", "مرحبا بالعالم", "שלום\u200f", "候选人很优秀", "é\u0301", "x" * 500_000]
    body = score_completed(
        "sj_🙂_" + texts[3],
        verdict=texts[5],
        strengths=texts[:4],
        concerns=[texts[4]],
        interview_focus=[texts[1] + texts[2]],
        application_id=texts[2],
    )
    event = parse_event(body)
    assert isinstance(event, ScoreEvent)
    result = event.result
    assert result.scoring_job_id == "sj_🙂_" + texts[3]
    assert result.verdict == texts[5]
    assert result.strengths == tuple(texts[:4])
    assert result.concerns == (texts[4],)
    assert result.interview_focus == (texts[1] + texts[2],)
    assert result.application_id == texts[2]


def test_utf8_bom_is_tolerated() -> None:
    """A UTF-8 byte order mark in front of the JSON does not break parsing."""
    assert isinstance(parse_event(b"\xef\xbb\xbf" + score_completed()), ScoreEvent)


# ---- properties ------------------------------------------------------------------------------

# json.dumps escapes these as "\udXXX": json.loads accepts them, a database does not.
_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # includes NaN and infinities: json.dumps writes them as NaN/Infinity
    | st.text(alphabet=st.characters() | _surrogates),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

_event_names = st.sampled_from(
    ["score.completed", "score.failed", "batch.completed", "test", "webhook.test", "other"]
)
_keys = st.sampled_from(
    [
        "event",
        "scoringJobId",
        "jobId",
        "applicationId",
        "tenantId",
        "batchId",
        "result",
        "error",
        "completedAt",
        "failedAt",
        "status",
        "totalJobs",
        "message",
    ]
)
# Objects shaped like Nova's, with arbitrary values where the fields go.
event_like = st.builds(
    lambda name, fields: {"event": name, **fields},
    _event_names,
    st.dictionaries(_keys.filter(lambda k: k != "event"), json_values, max_size=8),
)


def _assert_plausible(event: Any) -> None:
    """What a scorer can produce: the only events that may come out of the parser."""
    if isinstance(event, ScoreEvent):
        result = event.result
        ids = (result.scoring_job_id, result.job_id, result.application_id)
        assert all(value is not None and is_plain_segment(value) for value in ids)
        if result.status == "completed":
            assert result.score is not None
            assert 0 <= result.score <= 10
        stamp = result.completed_at or result.failed_at
        assert stamp is not None
        assert EARLIEST <= stamp < LATEST
    if isinstance(event, BatchCompletedEvent):
        assert is_plain_segment(event.batch.batch_id)
        assert is_plain_segment(event.batch.job_id)


def _parses_or_payload_error(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        _assert_plausible(parse_event(body))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300))
def test_property_arbitrary_bytes_raise_only_payload_error(body: bytes) -> None:
    """For any bytes, parse_event returns an event or raises PayloadError."""
    _parses_or_payload_error(body)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values | event_like)
def test_property_arbitrary_json_raises_only_payload_error(value: Any) -> None:
    """For any JSON value (NaN, surrogates, nesting included), only PayloadError escapes."""
    _parses_or_payload_error(json.dumps(value).encode())


_templates = [
    score_completed_payload(),
    score_failed_payload(),
    batch_completed_payload(),
    {"event": "test", "message": "hi", "timestamp": "2026-01-15T11:58:00Z"},
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a nested payload."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), template=st.sampled_from(_templates), replacement=json_values)
def test_property_mutated_valid_payloads_raise_only_payload_error(
    data: st.DataObject, template: dict[str, Any], replacement: Any
) -> None:
    """Replacing or deleting any one field of a valid payload never raises anything else."""
    payload = json.loads(json.dumps(template))
    path = data.draw(st.sampled_from(_paths(payload)), label="path")
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    _parses_or_payload_error(json.dumps(payload).encode())


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), template=st.sampled_from(_templates))
def test_property_byte_mutations_of_valid_payloads_raise_only_payload_error(
    data: st.DataObject, template: dict[str, Any]
) -> None:
    """Flipping, inserting or deleting bytes of a valid body never raises anything else."""
    body = bytearray(encode(template))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        index = data.draw(st.integers(0, len(body) - 1), label="index")
        match data.draw(st.sampled_from(["flip", "insert", "delete"]), label="edit"):
            case "flip":
                body[index] = data.draw(st.integers(0, 255), label="byte")
            case "insert":
                body[index:index] = data.draw(st.binary(min_size=1, max_size=4), label="bytes")
            case _:
                del body[index]
    _parses_or_payload_error(bytes(body))


# ---- values no scorer produces (issue 8, item 3) -----------------------------------------------


@pytest.mark.parametrize("score", [-1, 11, 2147483647, -(2**31)])
def test_score_outside_novas_range_is_a_payload_error(score: int) -> None:
    """Nova scores 0-10 (1-10 in the newest docs): anything else is never a result."""
    assert "score" in rejects(score_completed(score=score))


@pytest.mark.parametrize("score", [0, 10])
def test_scores_at_the_ends_of_the_range_parse(score: int) -> None:
    """0 and 10 are both on a documented scale."""
    event = parse_event(score_completed(score=score))
    assert isinstance(event, ScoreEvent)
    assert event.result.score == score


@pytest.mark.parametrize(
    "stamp",
    [
        "\u0661\u0662\u0663",  # Arabic-Indic digits: str.isdigit() is true, int() reads 123
        "\u00b2",
        "\u0661\u0667\u0663\u0666\u0669\u0663\u0667\u0660\u0664\u0665",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0",
        "9" * 30,
        "2026-01-15T12:00:00\u0662Z",
        "\uff12\uff10\uff12\uff16-01-15T12:00:00Z",  # full-width digits
    ],
)
def test_implausible_timestamp_is_a_payload_error(stamp: str) -> None:
    """Non-ASCII digits and years outside 2000-2100 make the body unparsed, not 1970 or year 1."""
    rejects(score_completed(completed_at=stamp))
    rejects(score_failed(failed_at=stamp))
    rejects(batch_completed(completed_at=stamp))


@pytest.mark.parametrize(
    "text", ["\u0661\u0662\u0663", "\u00b2", "1" * 12, "2026-01-15T12:00:00+\u0660\u0661:00"]
)
def test_parse_timestamp_reads_ascii_digits_only(text: str) -> None:
    """Every number in a timestamp is ASCII digits of bounded length."""
    with pytest.raises(ValueError, match=r"ASCII|range|2000"):
        parse_timestamp(text)


def test_plausible_timestamps_at_the_edges_parse() -> None:
    """2000-01-01 and the last instant before 2100 are accepted, as are unix seconds."""
    assert parse_timestamp("2000-01-01T00:00:00Z") == EARLIEST
    assert parse_timestamp("2099-12-31T23:59:59.999999Z") < LATEST
    assert parse_timestamp("1736937045") == datetime(2025, 1, 15, 10, 30, 45, tzinfo=UTC)


def test_completed_with_only_a_scoring_job_id_is_a_payload_error() -> None:
    """The probe's body: no jobId, applicationId, result or completedAt is never a result."""
    rejects(encode({"event": "score.completed", "scoringJobId": "sj_1"}))


@pytest.mark.parametrize(
    "path",
    [("jobId",), ("applicationId",), ("result",), ("result", "score"), ("completedAt",)],
    ids="/".join,
)
def test_completed_missing_a_required_field_is_a_payload_error(path: tuple[str, ...]) -> None:
    """A score.completed lacking any field reconcile or a reader needs stays unparsed."""
    payload = score_completed_payload()
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    rejects(encode(payload))


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.pop("error"),
        lambda p: p.pop("failedAt"),
        lambda p: p.pop("jobId"),
        lambda p: p.update(error={}),
        lambda p: p.update(error={"code": "", "message": None}),
    ],
    ids=["no-error", "no-failedAt", "no-jobId", "empty-error", "blank-error"],
)
def test_failed_missing_a_required_field_is_a_payload_error(change: Any) -> None:
    """A score.failed needs its ids, an error with a code or message, and failedAt."""
    payload = score_failed_payload()
    change(payload)
    rejects(encode(payload))


def test_failed_with_only_a_message_parses() -> None:
    """An error with a message but no code (undocumented, seen in old copies) is kept."""
    event = parse_event(encode(score_failed_payload(code=None)))
    assert isinstance(event, ScoreEvent)
    assert event.result.error_message == "Could not download the resume"


def test_negative_batch_counts_are_a_payload_error() -> None:
    """A batch cannot have a negative number of jobs."""
    rejects(batch_completed(failed_jobs=-1))


# ---- ids that are path segments (issue 8, item 4) ---------------------------------------------


@pytest.mark.parametrize("value", [".", "..", "a/b", "../x", "a\\b", "x\ny", "x\u0085"])
@pytest.mark.parametrize("field", ["scoringJobId", "jobId", "applicationId", "batchId"])
def test_ids_that_are_not_plain_segments_are_a_payload_error(field: str, value: str) -> None:
    """'.', '..', slashes and control characters never become an id reconcile puts in a URL."""
    rejects(encode({**score_completed_payload(), field: value}))
    if field in {"jobId", "batchId"}:
        rejects(encode({**batch_completed_payload(), field: value}))


def test_ids_with_unicode_and_punctuation_stay_valid() -> None:
    """Ordinary ids, dots inside, spaces, '@' and right-to-left marks, still parse."""
    event = parse_event(
        score_completed("sj.v2 1", job_id="job@acme", application_id="\u05e9\u05dc\u200f")
    )
    assert isinstance(event, ScoreEvent)
    assert event.result.scoring_job_id == "sj.v2 1"


@settings(max_examples=300)
@given(
    text=st.one_of(
        st.text(max_size=50),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.integers(-(10**14), 10**14).map(str),
    )
)
def test_property_parse_timestamp_is_plausible_or_value_error(text: str) -> None:
    """Any text parses to an aware UTC time in 2000-2100, or raises ValueError: nothing else."""
    try:
        parsed = parse_timestamp(text)
    except ValueError:
        return
    assert parsed.utcoffset() == timedelta(0)
    assert EARLIEST <= parsed < LATEST
