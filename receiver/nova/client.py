"""The only module that talks HTTP to Nova: a typed async client with retries and a rate limit.

``NovaClient`` wraps an injected ``httpx.AsyncClient`` (production: ``build_http_client``;
tests: the fake Nova through ``httpx.ASGITransport``). Every answer is validated against the
shapes in ``receiver.nova.schema`` (pure) and converted there to values of ``storage.records``;
anything else raises from the ``NovaApiError`` tree:

- ``NovaTransportError``  no usable answer: connection, timeout (after the retries);
- ``NovaHttpError``       3xx (redirects are never followed), 4xx, or 5xx/429 after the retries;
- ``NovaResponseError``   2xx whose body is too large, not JSON, or not the documented shape;
- ``UnsafeIdError``       an id that is not a plain path segment: nothing is sent.

Retries (stamina): transport errors, 5xx and 429 only, at most ``max_attempts`` per request,
exponential backoff with jitter; a ``Retry-After`` (seconds or HTTP-date) replaces the
backoff, clamped to 60 s because an uncapped header could park a cron run for a day.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import stamina

from receiver.errors import NovaApiError, NovaHttpError, NovaResponseError, NovaTransportError
from receiver.events import normalize_status
from receiver.nova.ratelimit import TokenBucket
from receiver.nova.schema import (
    BatchBody,
    CreatedBody,
    JobBody,
    LegacyBatchBody,
    LegacyJobBody,
    batch_state,
    error_fields,
    legacy_batch_state,
    legacy_scoring_result,
    parse,
    rejected_applications,
    scoring_result,
)
from receiver.values import is_ascii_digits, is_plain_segment
from storage.records import BatchState, RejectedApplication, ScoringResult, Status

__all__ = [
    "MAX_RETRY_AFTER",
    "BatchSnapshot",
    "CreatedBatch",
    "LegacyBatch",
    "LegacyJobRef",
    "NovaClient",
    "NovaStats",
    "UnsafeIdError",
    "build_http_client",
    "normalize_status",  # re-exported from receiver.events: one status map for both sources
    "parse_retry_after",
]

MAX_RETRY_AFTER = 60.0
_MAX_NUMBER_CHARS = 32
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, clamped to ``[0, 60]``; None if garbage."""
    if value is None:
        return None
    text = value.strip()
    try:
        # float() also reads "١٢" (Arabic-Indic digits) as 12: seconds are ASCII here.
        if not text.isascii() or len(text) > _MAX_NUMBER_CHARS:
            raise ValueError("not an ASCII number")
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# ---- value types returned by the client -------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatedBatch:
    """The 202 answer of create-scoring-batch."""

    batch: BatchState
    scoring_job_ids: tuple[str, ...]
    rejected: tuple[RejectedApplication, ...]


@dataclass(frozen=True, slots=True)
class BatchSnapshot:
    """A v1 batch with every scoring job (assessments included) and its rejected applications."""

    batch: BatchState
    jobs: tuple[ScoringResult, ...]
    rejected: tuple[RejectedApplication, ...]


@dataclass(frozen=True, slots=True)
class LegacyJobRef:
    """One line of a legacy batch: details need ``get_legacy_scoring_job``."""

    scoring_job_id: str
    application_id: str | None
    status: Status
    nova_status: str


@dataclass(frozen=True, slots=True)
class LegacyBatch:
    """A legacy batch (``GET /v1/score/batch/{id}``): statuses only."""

    batch: BatchState
    jobs: tuple[LegacyJobRef, ...]


@dataclass
class NovaStats:
    """Counters of one client, for the reconcile summary."""

    requests: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    retry_after_waits: list[float] = field(default_factory=list)
    rate_limit_wait: float = 0.0


# ---- the client -------------------------------------------------------------------------


class _RetryableHttpError(NovaHttpError):
    """A 5xx or 429: retried, and raised as the final error when the attempts run out."""

    def __init__(self, status: int, code: str | None, message: str, retry_after: float | None):
        super().__init__(status, code, message)
        self.retry_after = retry_after


def build_http_client(api_url: str, *, timeout: float = 15.0) -> httpx.AsyncClient:
    """The production ``httpx.AsyncClient`` for ``NovaClient``: ``api_url`` is the origin."""
    return httpx.AsyncClient(
        base_url=api_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=5.0),
        follow_redirects=False,
    )


class UnsafeIdError(NovaApiError):
    """An id that is not a plain path segment (``..``, ``/``, control characters, empty):
    no request is built from it, whatever stored it."""

    kind = "unsafe_id"

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not a plain path segment; no request was sent")
        self.name = name


def _segment(value: str, name: str) -> str:
    """``value`` as one path segment. Ids are validated when they are parsed; this is the
    second guard for ids that reached the database another way (an older version, `track`)."""
    if not is_plain_segment(value):
        raise UnsafeIdError(name)
    # Percent-quoting leaves no character that could end the segment or the path.
    return quote(value, safe="")


class NovaClient:
    """Typed calls to the Nova Embed API. The API key never appears in reprs or errors.

    Seams: ``monotonic``/``sleep`` drive the rate limiter (``rate_limit`` requests/s shared by
    every call of this client; 0 disables it), ``now`` dates an HTTP-date ``Retry-After``.
    Retry waits are stamina's: tests switch them off with ``stamina.set_testing(True,
    attempts=..., cap=True)`` and read the waits the client chose in ``stats``.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        tenant_id: str | None = None,
        rate_limit: float = 15.0,
        max_attempts: int = 5,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        backoff_jitter: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._http = http
        self._api_key = api_key
        self.tenant_id = tenant_id
        self.max_attempts = max_attempts
        self.max_response_bytes = max_response_bytes
        self._backoff = (backoff_initial, backoff_max, backoff_jitter)
        self._now = now
        self._limiter = (
            TokenBucket(rate_limit, monotonic=monotonic, sleep=sleep) if rate_limit > 0 else None
        )
        self.stats = NovaStats()

    def __repr__(self) -> str:
        return f"<NovaClient base_url={str(self._http.base_url)!r} tenant_id={self.tenant_id!r}>"

    # -- endpoints ------------------------------------------------------------------------

    async def create_scoring_batch(
        self, job_id: str, body: Mapping[str, Any], *, tenant_id: str | None = None
    ) -> CreatedBatch:
        """``POST /v1/jobs/{jobId}/scoring-batches``; ``body`` is Nova's request JSON."""
        tenant = tenant_id or self.tenant_id
        path = f"/v1/jobs/{_segment(job_id, 'job_id')}/scoring-batches"
        # Retrying this POST is safe: Nova's batch endpoint is idempotent on jobId + the set of
        # applicationIds (seeds 002/003), so a retry after a lost answer returns the same batch.
        raw = parse(CreatedBody, await self._request("POST", path, tenant, body), "create batch")
        batch = batch_state(raw.batch, tenant)
        return CreatedBatch(
            batch=batch,
            scoring_job_ids=raw.scoring_job_ids,
            rejected=rejected_applications(batch.batch_id, raw.rejected_applications),
        )

    async def get_batch(
        self, job_id: str, batch_id: str, *, tenant_id: str | None = None
    ) -> BatchSnapshot:
        """``GET /v1/jobs/{jobId}/scoring-batches/{scoringBatchId}``: every job, with results."""
        tenant = tenant_id or self.tenant_id
        path = (
            f"/v1/jobs/{_segment(job_id, 'job_id')}"
            f"/scoring-batches/{_segment(batch_id, 'batch_id')}"
        )
        raw = parse(BatchBody, await self._request("GET", path, tenant), "get batch")
        if raw.batch.id != batch_id:
            raise NovaResponseError(f"get batch: asked for {batch_id!r}, got {raw.batch.id!r}")
        batch = batch_state(raw.batch, tenant)
        if not batch.job_id:
            batch = replace(batch, job_id=job_id)
        jobs = tuple(
            scoring_result(j, tenant_id=tenant, batch_id=batch_id) for j in raw.scoring_jobs
        )
        return BatchSnapshot(
            batch=batch,
            jobs=jobs,
            rejected=rejected_applications(batch_id, raw.rejected_applications),
        )

    async def get_legacy_batch(self, batch_id: str, *, tenant_id: str | None = None) -> LegacyBatch:
        """``GET /v1/score/batch/{batchId}``: statuses only (seed 000)."""
        tenant = tenant_id or self.tenant_id
        path = f"/v1/score/batch/{_segment(batch_id, 'batch_id')}"
        raw = parse(LegacyBatchBody, await self._request("GET", path, tenant), "legacy batch")
        if raw.batch_id != batch_id:
            raise NovaResponseError(f"legacy batch: asked for {batch_id!r}, got {raw.batch_id!r}")
        batch = legacy_batch_state(raw, tenant)
        jobs = tuple(
            LegacyJobRef(
                scoring_job_id=j.scoring_job_id,
                application_id=j.application_id,
                status=normalize_status(j.status),
                nova_status=j.status,
            )
            for j in raw.jobs
        )
        return LegacyBatch(batch=batch, jobs=jobs)

    async def get_scoring_job(
        self,
        job_id: str,
        application_id: str,
        scoring_job_id: str,
        *,
        tenant_id: str | None = None,
    ) -> ScoringResult:
        """``GET /v1/jobs/{jobId}/applications/{applicationId}/scoring-jobs/{scoringJobId}``."""
        tenant = tenant_id or self.tenant_id
        path = (
            f"/v1/jobs/{_segment(job_id, 'job_id')}"
            f"/applications/{_segment(application_id, 'application_id')}"
            f"/scoring-jobs/{_segment(scoring_job_id, 'scoring_job_id')}"
        )
        raw = parse(JobBody, await self._request("GET", path, tenant), "scoring job").scoring_job
        if raw.id != scoring_job_id:
            raise NovaResponseError(f"scoring job: asked for {scoring_job_id!r}, got {raw.id!r}")
        return scoring_result(raw, tenant_id=tenant, batch_id=None)

    async def get_legacy_scoring_job(
        self, scoring_job_id: str, *, tenant_id: str | None = None
    ) -> ScoringResult:
        """``GET /v1/score/{scoringJobId}``: the flat legacy shape."""
        tenant = tenant_id or self.tenant_id
        path = f"/v1/score/{_segment(scoring_job_id, 'scoring_job_id')}"
        raw = parse(LegacyJobBody, await self._request("GET", path, tenant), "legacy job")
        if raw.scoring_job_id != scoring_job_id:
            raise NovaResponseError(
                f"legacy job: asked for {scoring_job_id!r}, got {raw.scoring_job_id!r}"
            )
        return legacy_scoring_result(raw, tenant_id=tenant)

    # -- transport ------------------------------------------------------------------------

    def _headers(self, tenant_id: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if tenant_id:
            headers["X-Tenant-Id"] = tenant_id
        return headers

    def _retry_wait(self, exc: Exception) -> bool | float:
        """stamina's ``on=`` hook: whether to retry, or how long to wait (``Retry-After``)."""
        if isinstance(exc, NovaTransportError):
            return True
        if isinstance(exc, _RetryableHttpError):
            return True if exc.retry_after is None else exc.retry_after
        return False

    async def _request(
        self, method: str, path: str, tenant_id: str | None, body: Mapping[str, Any] | None = None
    ) -> bytes:
        """Send with retries; return the body of a 2xx answer or raise."""
        initial, maximum, jitter = self._backoff
        last: Exception | None = None
        async for attempt in stamina.retry_context(
            on=self._retry_wait,
            attempts=self.max_attempts,
            timeout=None,  # bounded by attempts; a total timeout would cut a 60 s Retry-After
            wait_initial=initial,
            wait_max=maximum,
            wait_jitter=jitter,
        ):
            with attempt:
                if last is not None:
                    self._count_retry(last)
                try:
                    return await self._send_once(method, path, tenant_id, body)
                except (NovaTransportError, _RetryableHttpError) as exc:
                    last = exc
                    raise
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _count_retry(self, exc: Exception) -> None:
        if isinstance(exc, _RetryableHttpError):
            self.stats.retries[f"http_{exc.status}"] += 1
            if exc.retry_after is not None:
                self.stats.retry_after_waits.append(exc.retry_after)
        else:
            self.stats.retries["transport"] += 1

    async def _send_once(
        self, method: str, path: str, tenant_id: str | None, body: Mapping[str, Any] | None
    ) -> bytes:
        if self._limiter is not None:
            self.stats.rate_limit_wait += await self._limiter.acquire()
        self.stats.requests += 1
        try:
            async with self._http.stream(
                method,
                path,
                headers=self._headers(tenant_id),
                json=body,
                follow_redirects=False,
            ) as response:
                content = await self._read_capped(response, f"{method} {path}")
                status, headers = response.status_code, response.headers
        except httpx.DecodingError:
            raise NovaResponseError(f"{method} {path}: undecodable response body") from None
        except httpx.RequestError as exc:  # connect/read/write errors and timeouts
            raise NovaTransportError(f"{method} {path}: {type(exc).__name__}") from None
        if 200 <= status < 300:
            return content
        if 300 <= status < 400:
            raise NovaHttpError(status, None, "redirect not followed")
        code, message = error_fields(content)
        message = self._scrub(message or httpx.codes.get_reason_phrase(status) or "error")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(headers.get("retry-after"), now=self._now())
            raise _RetryableHttpError(status, code, message, retry_after)
        raise NovaHttpError(status, code, message)

    async def _read_capped(self, response: httpx.Response, what: str) -> bytes:
        """The response body, refusing (without reading on) anything over the cap."""
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        # isdigit() alone is true for "²", which int() rejects: ASCII digits, bounded length.
        if is_ascii_digits(declared) and (len(declared) > 18 or int(declared) > limit):
            raise NovaResponseError(f"{what}: response of {declared} bytes exceeds {limit}")
        content = bytearray()
        async for chunk in response.aiter_bytes():
            content += chunk
            if len(content) > limit:
                raise NovaResponseError(f"{what}: response exceeds {limit} bytes")
        return bytes(content)

    def _scrub(self, text: str) -> str:
        """Nova's message, minus the API key should a server ever echo it back."""
        return text.replace(self._api_key, "[redacted]") if self._api_key else text
