"""NovaClient against fake Nova (ASGITransport) and raw scripted answers (MockTransport)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import stamina

from receiver.errors import NovaApiError, NovaHttpError, NovaResponseError, NovaTransportError
from receiver.nova import NovaClient, UnsafeIdError, normalize_status, parse_retry_after
from receiver.nova.ratelimit import TokenBucket
from tests.fake_nova_helpers import (
    API_KEY,
    TENANT,
    ManualClock,
    asgi_client,
    batch_body,
    make_client,
    make_fake,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _no_retry_sleeps() -> Iterator[None]:
    """stamina's test mode: no backoff sleeps, but the client's own attempt cap still applies."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[Any]]:
    """A transport answering ``responses`` in order (exceptions are raised); records requests."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def mock_client(transport: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="https://embed.nova.dweet.com")


LEGACY_JOB = {
    "scoringJobId": "sj_abc123",
    "status": "completed",
    "jobId": "job-123",
    "applicationId": "app-001",
    "result": {
        "score": 8,
        "assessment": {"verdict": "Good", "strengths": ["a"], "concerns": [], "interviewFocus": []},
    },
    "completedAt": "2025-01-15T10:30:45Z",
}


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# ---- pure helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("queued", "pending"),
        ("PENDING", "pending"),
        ("Processing", "pending"),
        ("IN_PROGRESS", "pending"),
        ("completed", "completed"),
        ("COMPLETED", "completed"),
        ("failed", "failed"),
        ("FAILED", "failed"),
        ("PARTIAL_FAILURE", "failed"),
    ],
)
def test_normalize_status_maps_every_generation(value: str, expected: str) -> None:
    """Every documented status, in any case, maps to pending/completed/failed."""
    assert normalize_status(value) == expected


def test_normalize_status_rejects_unknown_values() -> None:
    """A status no docs generation lists is an error, not a guess."""
    with pytest.raises(ValueError, match="unknown"):
        normalize_status("exploded")


def test_parse_retry_after_reads_seconds_dates_and_clamps() -> None:
    """Retry-After in seconds or HTTP-date, clamped to [0, 60]; garbage is None."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after("86400", now=now) == 60.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("nan", now=now) is None
    assert parse_retry_after(None, now=now) is None


# ---- endpoints against fake Nova ----------------------------------------------------------


async def test_create_scoring_batch_returns_ids_and_rejections() -> None:
    """A 202 becomes a CreatedBatch with scoring job ids and the rejected applications."""
    fake = make_fake(failure_rate=0.0)
    body = batch_body(2)
    body["applications"].append(
        {"applicationId": "app-bad", "resume": {"type": "url", "url": "https://x/corrupt.pdf"}}
    )
    async with asgi_client(fake.app) as http:
        created = await make_client(http).create_scoring_batch("job-1", body)
    assert len(created.scoring_job_ids) == 2
    assert created.batch.job_id == "job-1"
    assert created.batch.tenant_id == TENANT
    assert [(r.application_id, r.code) for r in created.rejected] == [
        ("app-bad", "RESUME_CORRUPTED")
    ]
    assert created.rejected[0].batch_id == created.batch.batch_id


@pytest.mark.parametrize(
    ("case", "batch_status"), [("lower", "failed"), ("upper", "PARTIAL_FAILURE")]
)
async def test_get_batch_parses_both_status_generations(case: str, batch_status: str) -> None:
    """Lowercase (newest) and UPPERCASE (middle) batches parse to the same normalised values."""
    fake = make_fake(failure_rate=0.5, seed=7, status_case=case)
    batch = fake.state.create_batch("job-1", TENANT, [f"app-{i}" for i in range(8)])
    async with asgi_client(fake.app) as http:
        snapshot = await make_client(http).get_batch("job-1", batch.id)
    assert snapshot.batch.nova_status == batch_status
    assert snapshot.batch.status == "failed"
    assert snapshot.batch.total_jobs == 8
    assert {j.status for j in snapshot.jobs} == {"completed", "failed"}
    assert all(j.batch_id == batch.id and j.tenant_id == TENANT for j in snapshot.jobs)
    done = next(j for j in snapshot.jobs if j.status == "completed")
    assert done.nova_status == ("COMPLETED" if case == "upper" else "completed")
    assert isinstance(done.strengths, tuple)
    assert done.completed_at is not None
    assert done.completed_at.tzinfo is not None
    failed = next(j for j in snapshot.jobs if j.status == "failed")
    assert failed.error_code
    assert failed.failed_at is not None


async def test_get_batch_reports_pending_jobs_before_scoring_finishes() -> None:
    """A batch whose jobs are still scoring is pending, jobs included."""
    clock = ManualClock()
    fake = make_fake(clock, score_delay=30.0, status_case="upper")
    batch = fake.state.create_batch("job-1", TENANT, ["a", "b"])
    async with asgi_client(fake.app) as http:
        snapshot = await make_client(http).get_batch("job-1", batch.id)
    assert snapshot.batch.status == "pending"
    assert snapshot.batch.completed_at is None
    assert {j.status for j in snapshot.jobs} == {"pending"}


async def test_get_legacy_batch_counts_failures_as_failed() -> None:
    """Legacy 'completed' means all finished; with failures the batch normalises to failed."""
    fake = make_fake(failure_rate=0.5, seed=7)
    batch = fake.state.create_batch("job-9", TENANT, [f"app-{i}" for i in range(8)], api="legacy")
    async with asgi_client(fake.app) as http:
        legacy = await make_client(http).get_legacy_batch(batch.id)
    assert legacy.batch.api == "legacy"
    assert legacy.batch.nova_status == "completed"
    assert legacy.batch.status == "failed"
    assert legacy.batch.job_id == "job-9"
    assert len(legacy.jobs) == 8
    assert all(ref.scoring_job_id.startswith("sj_") for ref in legacy.jobs)


async def test_get_scoring_job_returns_the_assessment() -> None:
    """The current single-job endpoint yields a full ScoringResult."""
    fake = make_fake(failure_rate=0.0)
    batch = fake.state.create_batch("job-1", TENANT, ["app-1"])
    job = batch.jobs[0]
    async with asgi_client(fake.app) as http:
        result = await make_client(http).get_scoring_job("job-1", "app-1", job.id)
    assert result.scoring_job_id == job.id
    assert result.status == "completed"
    assert result.score == job.score
    assert result.criteria_version_id == job.criteria_version_id
    assert result.is_rescore is False


async def test_get_legacy_scoring_job_parses_failure_details() -> None:
    """The flat legacy shape of a failed job carries error code, message and failedAt."""
    fake = make_fake(failure_rate=1.0)
    batch = fake.state.create_batch("job-1", TENANT, ["app-1"], api="legacy")
    async with asgi_client(fake.app) as http:
        result = await make_client(http).get_legacy_scoring_job(batch.jobs[0].id)
    assert result.status == "failed"
    assert result.error_code == batch.jobs[0].error_code
    assert result.failed_at == batch.jobs[0].finished_at


async def test_legacy_failed_job_without_error_details_is_tolerated() -> None:
    """An undocumented legacy failure with no error object still parses."""
    body = {"scoringJobId": "sj_1", "status": "failed", "jobId": "j", "applicationId": "a"}
    transport, _ = scripted(ok(body))
    async with mock_client(transport) as http:
        result = await make_client(http).get_legacy_scoring_job("sj_1")
    assert result.status == "failed"
    assert result.error_code is None


async def test_legacy_scoring_job_accepts_offsets_and_fractions() -> None:
    """Timestamps with offsets and fractions become aware UTC datetimes."""
    body = {**LEGACY_JOB, "completedAt": "2025-01-15T12:30:45.5+02:00"}
    transport, _ = scripted(ok(body))
    async with mock_client(transport) as http:
        result = await make_client(http).get_legacy_scoring_job("sj_abc123")
    assert result.completed_at == datetime(2025, 1, 15, 10, 30, 45, 500000, tzinfo=UTC)
    assert result.strengths == ("a",)


async def test_sends_key_tenant_and_accept_headers() -> None:
    """Requests carry the bearer key, the tenant (per call overrides default) and Accept."""
    transport, seen = scripted(ok(LEGACY_JOB))
    async with mock_client(transport) as http:
        client = make_client(http)
        await client.get_legacy_scoring_job("sj_abc123")
        await client.get_legacy_scoring_job("sj_abc123", tenant_id="other")
    assert seen[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert seen[0].headers["accept"] == "application/json"
    assert [r.headers["x-tenant-id"] for r in seen] == [TENANT, "other"]
    assert seen[0].url.path == "/v1/score/sj_abc123"


async def test_ids_with_separators_are_refused_before_any_request() -> None:
    """Ids cannot smuggle extra path segments: one holding a slash is never sent at all."""
    transport, seen = scripted(ok({**LEGACY_JOB, "scoringJobId": "a/../b"}))
    async with mock_client(transport) as http:
        with pytest.raises(UnsafeIdError):
            await make_client(http).get_legacy_scoring_job("a/../b")
    assert seen == []


# ---- retries ------------------------------------------------------------------------------


async def test_retries_429_and_honours_retry_after_seconds() -> None:
    """A 429 with Retry-After: 3 waits 3 s (decided, not slept in tests), then succeeds."""
    transport, seen = scripted(
        ok({"code": "RATE_LIMITED"}, 429, **{"Retry-After": "3"}), ok(LEGACY_JOB)
    )
    async with mock_client(transport) as http:
        client = make_client(http)
        result = await client.get_legacy_scoring_job("sj_abc123")
    assert result.score == 8
    assert len(seen) == 2
    assert client.stats.retry_after_waits == [3.0]
    assert client.stats.retries["http_429"] == 1


async def test_clamps_huge_retry_after_to_sixty_seconds() -> None:
    """Retry-After: 86400 would park a cron run for a day: it is clamped to 60 s."""
    transport, _ = scripted(ok({}, 429, **{"Retry-After": "86400"}), ok(LEGACY_JOB))
    async with mock_client(transport) as http:
        client = make_client(http)
        await client.get_legacy_scoring_job("sj_abc123")
    assert client.stats.retry_after_waits == [60.0]


async def test_honours_retry_after_http_date() -> None:
    """An HTTP-date Retry-After waits until that date, measured on the injected clock."""
    clock = ManualClock()
    when = format_datetime(clock.now().replace(microsecond=0) + timedelta(seconds=20), usegmt=True)
    transport, _ = scripted(ok({}, 503, **{"Retry-After": when}), ok(LEGACY_JOB))
    async with mock_client(transport) as http:
        client = make_client(http, clock)
        await client.get_legacy_scoring_job("sj_abc123")
    assert client.stats.retry_after_waits == [pytest.approx(19.877)]


async def test_garbage_retry_after_falls_back_to_backoff() -> None:
    """An unreadable Retry-After still retries, with the normal backoff."""
    transport, seen = scripted(ok({}, 429, **{"Retry-After": "later"}), ok(LEGACY_JOB))
    async with mock_client(transport) as http:
        client = make_client(http)
        await client.get_legacy_scoring_job("sj_abc123")
    assert len(seen) == 2
    assert client.stats.retry_after_waits == []
    assert client.stats.retries["http_429"] == 1


async def test_retries_5xx_twice_then_succeeds() -> None:
    """Two server errors, then the answer."""
    transport, seen = scripted(ok({}, 500), ok({}, 503), ok(LEGACY_JOB))
    async with mock_client(transport) as http:
        client = make_client(http)
        assert (await client.get_legacy_scoring_job("sj_abc123")).score == 8
    assert len(seen) == 3
    assert client.stats.retries == {"http_500": 1, "http_503": 1}


async def test_exhausted_5xx_raises_http_error_with_nova_code() -> None:
    """After max_attempts server errors the last one is raised, with Nova's code."""
    body = {"type": "t", "code": "SERVICE_UNAVAILABLE", "status": 503, "message": "down"}
    transport, seen = scripted(ok(body, 503))
    async with mock_client(transport) as http:
        with pytest.raises(NovaHttpError) as info:
            await make_client(http, max_attempts=4).get_legacy_scoring_job("sj_abc123")
    assert len(seen) == 4
    assert (info.value.status, info.value.code) == (503, "SERVICE_UNAVAILABLE")


async def test_timeouts_then_success() -> None:
    """Timeouts are retried like any transport error."""
    timeout = httpx.ReadTimeout("timed out")
    transport, seen = scripted(timeout, timeout, ok(LEGACY_JOB))
    async with mock_client(transport) as http:
        client = make_client(http)
        await client.get_legacy_scoring_job("sj_abc123")
    assert len(seen) == 3
    assert client.stats.retries["transport"] == 2


async def test_exhausted_transport_errors_raise_transport_error() -> None:
    """Connection failures on every attempt end in NovaTransportError."""
    transport, seen = scripted(httpx.ConnectError("refused"))
    async with mock_client(transport) as http:
        with pytest.raises(NovaTransportError):
            await make_client(http).get_legacy_scoring_job("sj_abc123")
    assert len(seen) == 5


async def test_post_is_retried_on_5xx_and_returns_the_same_batch() -> None:
    """Batch creation is idempotent in Nova, so retrying it after 5xx is safe."""
    fake = make_fake(api_error_rate=0.5, seed=3)
    async with asgi_client(fake.app) as http:
        client = make_client(http, max_attempts=10)
        created = [await client.create_scoring_batch("job-1", batch_body(3)) for _ in range(6)]
    assert len({c.batch.batch_id for c in created}) == 1
    assert len(fake.state.batches) == 1
    assert fake.faults.stats.server_errors > 0


async def test_fake_api_errors_are_retried_transparently() -> None:
    """With 30 % injected 5xx every read still succeeds within its attempts."""
    fake = make_fake(api_error_rate=0.3, seed=11)
    batches = fake.state.create_batches(20, 5, tenant_id=TENANT)
    async with asgi_client(fake.app) as http:
        client = make_client(http, max_attempts=10)
        for batch in batches:
            await client.get_batch(batch.job_id, batch.id)
    assert sum(client.stats.retries.values()) == fake.faults.stats.server_errors > 0


# ---- client errors ------------------------------------------------------------------------


async def test_401_is_not_retried_and_carries_nova_code() -> None:
    """A wrong key is a NovaHttpError(401, UNAUTHORIZED) after exactly one request."""
    fake = make_fake(api_key="sk_test_right")
    async with asgi_client(fake.app) as http:
        client = make_client(http, api_key="sk_test_wrong")
        with pytest.raises(NovaHttpError) as info:
            await client.get_legacy_batch("whatever")
    assert (info.value.status, info.value.code) == (401, "UNAUTHORIZED")
    assert client.stats.requests == 1


async def test_404_carries_nova_code() -> None:
    """An unknown batch is NovaHttpError(404, BATCH_NOT_FOUND)."""
    fake = make_fake()
    async with asgi_client(fake.app) as http:
        with pytest.raises(NovaHttpError) as info:
            await make_client(http).get_batch("job-1", "nope")
    assert (info.value.status, info.value.code) == (404, "BATCH_NOT_FOUND")


async def test_old_wrapped_error_body_is_parsed() -> None:
    """The oldest error shape {"error": {code, message}} yields the same code."""
    body = {"error": {"type": "t", "code": "FORBIDDEN", "status": 403, "message": "no"}}
    transport, _ = scripted(ok(body, 403))
    async with mock_client(transport) as http:
        with pytest.raises(NovaHttpError) as info:
            await make_client(http).get_legacy_scoring_job("sj_1")
    assert (info.value.status, info.value.code, info.value.message) == (403, "FORBIDDEN", "no")


async def test_redirect_is_not_followed() -> None:
    """A 3xx is an error; the Location is never requested."""
    transport, seen = scripted(httpx.Response(302, headers={"Location": "https://evil.test/"}))
    async with mock_client(transport) as http:
        with pytest.raises(NovaHttpError) as info:
            await make_client(http).get_legacy_scoring_job("sj_1")
    assert info.value.status == 302
    assert len(seen) == 1


# ---- malformed and oversized answers ------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"scoringJobId": "sj_abc123", "status": "compl',
        b"<html>oops</html>",
        b"[]",
        json.dumps({**LEGACY_JOB, "status": "exploded"}).encode(),
        json.dumps({**LEGACY_JOB, "result": {"score": "8"}}).encode(),
        json.dumps({**LEGACY_JOB, "completedAt": "yesterday"}).encode(),
        json.dumps({**LEGACY_JOB, "scoringJobId": "sj_other"}).encode(),
        b"[" * 100_000,
    ],
    ids=["truncated", "html", "array", "status", "score-type", "timestamp", "other-id", "deep"],
)
async def test_malformed_answers_raise_response_error(content: bytes) -> None:
    """Non-JSON, wrong shape, wrong types or another job's id: NovaResponseError, nothing else."""
    transport, seen = scripted(httpx.Response(200, content=content))
    async with mock_client(transport) as http:
        with pytest.raises(NovaResponseError):
            await make_client(http).get_legacy_scoring_job("sj_abc123")
    assert len(seen) == 1


async def test_malformed_fake_answers_raise_response_error() -> None:
    """fake Nova's malformed bodies never pass validation."""
    fake = make_fake(malformed_rate=1.0, seed=5)
    batches = fake.state.create_batches(6, 2, tenant_id=TENANT)
    async with asgi_client(fake.app) as http:
        client = make_client(http)
        for batch in batches:
            with pytest.raises(NovaResponseError):
                await client.get_batch(batch.job_id, batch.id)


async def test_oversized_declared_response_is_rejected() -> None:
    """A Content-Length above the cap is refused before reading."""
    transport, _ = scripted(httpx.Response(200, content=b"x" * 2048))
    async with mock_client(transport) as http:
        with pytest.raises(NovaResponseError, match="exceeds"):
            await make_client(http, max_response_bytes=1024).get_legacy_scoring_job("sj_1")


async def test_oversized_streamed_response_stops_reading() -> None:
    """An endless chunked body is cut off at the cap (the test would hang otherwise)."""

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 4096
            await asyncio.sleep(0)

    transport, _ = scripted(httpx.Response(200, content=endless()))
    async with mock_client(transport) as http:
        with pytest.raises(NovaResponseError, match="exceeds"):
            await make_client(http, max_response_bytes=64 * 1024).get_legacy_scoring_job("sj_1")


async def test_api_key_never_appears_in_errors_or_reprs() -> None:
    """Neither exception texts nor reprs leak the key, even when Nova echoes it back."""
    echo = {"code": "UNAUTHORIZED", "message": f"bad key {API_KEY}"}
    answers: list[httpx.Response | Exception] = [
        ok(echo, 401),
        ok(echo, 500),
        httpx.ConnectError(f"refused {API_KEY[:3]}"),
        httpx.Response(200, content=b"{"),
        httpx.Response(302, headers={"Location": "/x"}),
    ]
    texts: list[str] = []
    for answer in answers:
        transport, _ = scripted(answer)
        async with mock_client(transport) as http:
            client = make_client(http, max_attempts=2)
            texts += [repr(client), str(vars(client.stats))]
            with pytest.raises(NovaApiError) as info:
                await client.get_legacy_scoring_job("sj_1")
            texts += [str(info.value), repr(info.value), info.value.args[0]]
    assert all(API_KEY not in text for text in texts)


# ---- rate limiting ------------------------------------------------------------------------


async def test_token_bucket_bounds_the_rate_on_an_injected_clock() -> None:
    """40 concurrent acquisitions at 10/s: never more than 10 in any one-second window."""
    clock = ManualClock()
    bucket = TokenBucket(10, monotonic=clock.monotonic, sleep=clock.sleep)
    stamps: list[float] = []

    async def take() -> None:
        await bucket.acquire()
        stamps.append(clock.monotonic())

    await asyncio.gather(*(take() for _ in range(40)))
    assert clock.monotonic() == pytest.approx(3.9)
    for start in stamps:
        assert sum(start <= t < start + 1 - 1e-9 for t in stamps) <= 10


async def test_client_at_its_rate_never_provokes_a_429() -> None:
    """A client limited to 5/s against a server limiting at 6/s sees no 429, on one clock."""
    clock = ManualClock()
    fake = make_fake(clock, rate_limit=6)
    batch = fake.state.create_batch("job-1", TENANT, ["a"])
    async with asgi_client(fake.app) as http:
        client = make_client(http, clock, rate_limit=5)
        await asyncio.gather(*(client.get_batch("job-1", batch.id) for _ in range(30)))
    assert fake.faults.stats.rate_limited == 0
    assert client.stats.requests == 30
    assert clock.monotonic() >= 29 / 5 - 1e-6


def test_client_rejects_zero_attempts() -> None:
    """max_attempts below one is a programming error."""
    with pytest.raises(ValueError, match="max_attempts"):
        NovaClient(httpx.AsyncClient(), api_key=API_KEY, max_attempts=0)
