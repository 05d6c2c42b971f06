"""The only module that talks HTTP to Nova: a typed async client with retries and a rate limit.

``NovaClient`` wraps an injected ``httpx.AsyncClient`` (production: ``build_http_client``;
tests: the fake Nova through ``httpx.ASGITransport``). Every answer is validated before it
becomes a value of ``storage.records``; anything else raises from the ``NovaApiError`` tree:

- ``NovaTransportError``  no usable answer: connection, timeout (after the retries);
- ``NovaHttpError``       3xx (redirects are never followed), 4xx, or 5xx/429 after the retries;
- ``NovaResponseError``   2xx whose body is too large, not JSON, or not the documented shape.

Retries (stamina): transport errors, 5xx and 429 only, at most ``max_attempts`` per request,
exponential backoff with jitter; a ``Retry-After`` (seconds or HTTP-date) replaces the
backoff, clamped to 60 s because an uncapped header could park a cron run for a day.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from receiver.errors import NovaHttpError, NovaResponseError, NovaTransportError
from receiver.ratelimit import TokenBucket
from receiver.signatures import parse_timestamp
from storage.records import BatchState, RejectedApplication, ScoringResult, Status

__all__ = [
    "MAX_RETRY_AFTER",
    "BatchSnapshot",
    "CreatedBatch",
    "LegacyBatch",
    "LegacyJobRef",
    "NovaClient",
    "NovaStats",
    "build_http_client",
    "normalize_status",
    "parse_retry_after",
]

MAX_RETRY_AFTER = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024

_STATUS_MAP: dict[str, Status] = {
    "queued": "pending",
    "pending": "pending",
    "processing": "pending",
    "in_progress": "pending",
    "completed": "completed",
    "failed": "failed",
    # Mid-generation batch status: finished, at least one job failed.
    "partial_failure": "failed",
}


def normalize_status(value: str) -> Status:
    """Map any generation's job or batch status to ``pending | completed | failed``.

    Case-insensitive (``COMPLETED`` and ``completed`` are the same); raises ``ValueError``
    for a value no generation of the docs lists.
    """
    try:
        return _STATUS_MAP[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown Nova status {value!r}") from None


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, clamped to ``[0, 60]``; None if garbage."""
    if value is None:
        return None
    text = value.strip()
    try:
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


# ---- response schemas (validation only; values are converted to storage.records) --------


def _timestamp(value: object) -> object:
    if isinstance(value, str):
        return parse_timestamp(value)
    return value  # None passes; anything else fails the strict datetime check


def _known_status(value: str) -> str:
    normalize_status(value)
    return value


Id = Annotated[str, Field(min_length=1)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
NovaStatus = Annotated[str, AfterValidator(_known_status)]
Count = Annotated[int, Field(ge=0)]


class _Schema(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, strict=True, frozen=True, extra="ignore", populate_by_name=False
    )


class _Assessment(_Schema):
    verdict: str | None = None
    strengths: tuple[str, ...] | None = None
    concerns: tuple[str, ...] | None = None
    interview_focus: tuple[str, ...] | None = None


class _ScoringJob(_Schema):
    id: Id
    status: NovaStatus
    job_id: str | None = None
    application_id: str | None = None
    criteria_version_id: str | None = None
    is_rescore: bool | None = None
    score: int | None = None
    assessment: _Assessment | None = None
    error_code: str | None = None
    error_message: str | None = None
    queued_at: Timestamp | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    failed_at: Timestamp | None = None


class _Batch(_Schema):
    id: Id
    job_id: str | None = None
    # Seed 001's schema table omits it while its example has it: derive from counters if absent.
    status: NovaStatus | None = None
    total_jobs: Count | None = None
    completed_jobs: Count | None = None
    failed_jobs: Count | None = None
    created_at: Timestamp | None = None
    completed_at: Timestamp | None = None


class _RejectionError(_Schema):
    code: str | None = None
    message: str | None = None
    reason: str | None = None


class _Rejected(_Schema):
    application_id: Id
    error: _RejectionError | None = None


class _CreatedBody(_Schema):
    batch: _Batch
    scoring_job_ids: tuple[Id, ...]
    rejected_applications: tuple[_Rejected, ...] = ()


class _BatchBody(_Schema):
    batch: _Batch
    scoring_jobs: tuple[_ScoringJob, ...]
    # Required in the newest docs, absent in the middle generation.
    rejected_applications: tuple[_Rejected, ...] = ()


class _JobBody(_Schema):
    scoring_job: _ScoringJob


class _LegacyJobRef(_Schema):
    scoring_job_id: Id
    status: NovaStatus
    application_id: str | None = None


class _LegacyBatchBody(_Schema):
    batch_id: Id
    status: NovaStatus
    job_id: str | None = None
    total_jobs: Count | None = None
    completed: Count | None = None
    failed: Count | None = None
    processing: Count | None = None
    jobs: tuple[_LegacyJobRef, ...] = ()
    completed_at: Timestamp | None = None


class _LegacyResult(_Schema):
    score: int | None = None
    assessment: _Assessment | None = None


class _LegacyError(_Schema):
    type: str | None = None
    code: str | None = None
    message: str | None = None


class _LegacyJobBody(_Schema):
    scoring_job_id: Id
    status: NovaStatus
    job_id: str | None = None
    application_id: str | None = None
    tenant_id: str | None = None
    result: _LegacyResult | None = None
    error: _LegacyError | None = None
    completed_at: Timestamp | None = None
    failed_at: Timestamp | None = None


_M = TypeVar("_M", bound=_Schema)


def _parse(model: type[_M], body: bytes, what: str) -> _M:
    try:
        return model.model_validate_json(body)
    except (ValidationError, ValueError, RecursionError) as exc:
        count = exc.error_count() if isinstance(exc, ValidationError) else 1
        raise NovaResponseError(
            f"{what}: response does not match the schema ({count} errors)"
        ) from None


def _batch_state(raw: _Batch, tenant_id: str | None) -> BatchState:
    if raw.status is not None:
        status = normalize_status(raw.status)
    else:
        status = _status_from_counts(raw.total_jobs, raw.completed_jobs, raw.failed_jobs)
    return BatchState(
        batch_id=raw.id,
        job_id=raw.job_id or "",
        tenant_id=tenant_id,
        api="v1",
        status=status,
        nova_status=raw.status,
        total_jobs=raw.total_jobs,
        completed_jobs=raw.completed_jobs,
        failed_jobs=raw.failed_jobs,
        created_at=raw.created_at,
        completed_at=raw.completed_at,
    )


def _status_from_counts(total: int | None, done: int | None, failed: int | None) -> Status:
    if total is None or done is None or failed is None or done + failed < total:
        return "pending"
    return "failed" if failed else "completed"


def _rejected(batch_id: str, items: tuple[_Rejected, ...]) -> tuple[RejectedApplication, ...]:
    return tuple(
        RejectedApplication(
            batch_id=batch_id,
            application_id=item.application_id,
            code=item.error.code if item.error else None,
            message=item.error.message if item.error else None,
            reason=item.error.reason if item.error else None,
        )
        for item in items
    )


def _result(raw: _ScoringJob, *, tenant_id: str | None, batch_id: str | None) -> ScoringResult:
    assessment = raw.assessment
    return ScoringResult(
        scoring_job_id=raw.id,
        status=normalize_status(raw.status),
        nova_status=raw.status,
        job_id=raw.job_id,
        application_id=raw.application_id,
        tenant_id=tenant_id,
        batch_id=batch_id,
        criteria_version_id=raw.criteria_version_id,
        is_rescore=raw.is_rescore,
        score=raw.score,
        verdict=assessment.verdict if assessment else None,
        strengths=assessment.strengths if assessment else None,
        concerns=assessment.concerns if assessment else None,
        interview_focus=assessment.interview_focus if assessment else None,
        error_code=raw.error_code,
        error_message=raw.error_message,
        queued_at=raw.queued_at,
        started_at=raw.started_at,
        completed_at=raw.completed_at,
        failed_at=raw.failed_at,
    )


def _legacy_result(raw: _LegacyJobBody, *, tenant_id: str | None) -> ScoringResult:
    assessment = raw.result.assessment if raw.result else None
    return ScoringResult(
        scoring_job_id=raw.scoring_job_id,
        status=normalize_status(raw.status),
        nova_status=raw.status,
        job_id=raw.job_id,
        application_id=raw.application_id,
        tenant_id=raw.tenant_id or tenant_id,
        score=raw.result.score if raw.result else None,
        verdict=assessment.verdict if assessment else None,
        strengths=assessment.strengths if assessment else None,
        concerns=assessment.concerns if assessment else None,
        interview_focus=assessment.interview_focus if assessment else None,
        error_type=raw.error.type if raw.error else None,
        error_code=raw.error.code if raw.error else None,
        error_message=raw.error.message if raw.error else None,
        completed_at=raw.completed_at,
        failed_at=raw.failed_at,
    )


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """Nova's error ``code`` and ``message`` from either body shape (wrapped or RFC 7807)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    inner = data.get("error")
    if isinstance(inner, dict):
        data = inner
    code, message = data.get("code"), data.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


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


def _segment(value: str, name: str) -> str:
    if not value:
        raise ValueError(f"{name} must not be empty")
    return quote(value, safe="")


class NovaClient:
    """Typed calls to the Nova Embed API. The API key never appears in reprs or errors.

    Seams: ``clock``/``sleep`` drive the rate limiter (``rate_limit`` requests/s shared by
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
        clock: Callable[[], float] = time.monotonic,
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
            TokenBucket(rate_limit, clock=clock, sleep=sleep) if rate_limit > 0 else None
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
        raw = _parse(_CreatedBody, await self._request("POST", path, tenant, body), "create batch")
        batch = _batch_state(raw.batch, tenant)
        return CreatedBatch(
            batch=batch,
            scoring_job_ids=raw.scoring_job_ids,
            rejected=_rejected(batch.batch_id, raw.rejected_applications),
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
        raw = _parse(_BatchBody, await self._request("GET", path, tenant), "get batch")
        if raw.batch.id != batch_id:
            raise NovaResponseError(f"get batch: asked for {batch_id!r}, got {raw.batch.id!r}")
        batch = _batch_state(raw.batch, tenant)
        if not batch.job_id:
            batch = replace(batch, job_id=job_id)
        jobs = tuple(_result(j, tenant_id=tenant, batch_id=batch_id) for j in raw.scoring_jobs)
        return BatchSnapshot(
            batch=batch, jobs=jobs, rejected=_rejected(batch_id, raw.rejected_applications)
        )

    async def get_legacy_batch(self, batch_id: str, *, tenant_id: str | None = None) -> LegacyBatch:
        """``GET /v1/score/batch/{batchId}``: statuses only (seed 000)."""
        tenant = tenant_id or self.tenant_id
        path = f"/v1/score/batch/{_segment(batch_id, 'batch_id')}"
        raw = _parse(_LegacyBatchBody, await self._request("GET", path, tenant), "legacy batch")
        if raw.batch_id != batch_id:
            raise NovaResponseError(f"legacy batch: asked for {batch_id!r}, got {raw.batch_id!r}")
        status = normalize_status(raw.status)
        # Legacy "completed" means "all finished, either way": with failures it is our "failed".
        if status == "completed" and raw.failed:
            status = "failed"
        batch = BatchState(
            batch_id=raw.batch_id,
            job_id=raw.job_id or "",
            tenant_id=tenant,
            api="legacy",
            status=status,
            nova_status=raw.status,
            total_jobs=raw.total_jobs,
            completed_jobs=raw.completed,
            failed_jobs=raw.failed,
            completed_at=raw.completed_at,
        )
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
        raw = _parse(_JobBody, await self._request("GET", path, tenant), "scoring job").scoring_job
        if raw.id != scoring_job_id:
            raise NovaResponseError(f"scoring job: asked for {scoring_job_id!r}, got {raw.id!r}")
        return _result(raw, tenant_id=tenant, batch_id=None)

    async def get_legacy_scoring_job(
        self, scoring_job_id: str, *, tenant_id: str | None = None
    ) -> ScoringResult:
        """``GET /v1/score/{scoringJobId}``: the flat legacy shape."""
        tenant = tenant_id or self.tenant_id
        path = f"/v1/score/{_segment(scoring_job_id, 'scoring_job_id')}"
        raw = _parse(_LegacyJobBody, await self._request("GET", path, tenant), "legacy job")
        if raw.scoring_job_id != scoring_job_id:
            raise NovaResponseError(
                f"legacy job: asked for {scoring_job_id!r}, got {raw.scoring_job_id!r}"
            )
        return _legacy_result(raw, tenant_id=tenant)

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
        code, message = _error_fields(content)
        message = self._scrub(message or httpx.codes.get_reason_phrase(status) or "error")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(headers.get("retry-after"), now=self._now())
            raise _RetryableHttpError(status, code, message, retry_after)
        raise NovaHttpError(status, code, message)

    async def _read_capped(self, response: httpx.Response, what: str) -> bytes:
        """The response body, refusing (without reading on) anything over the cap."""
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
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
