"""Nova's response shapes, both API generations, and their conversion. Pure: no I/O.

The pydantic models below only validate (strict, camelCase aliases, unknown fields ignored);
the functions turn a validated answer into values of ``storage.records``. Two generations:

- v1 (``/v1/jobs/{jobId}/...``): ``CreatedBody``, ``BatchBody`` and ``JobBody``, converted
  by ``batch_state``, ``scoring_result`` and ``rejected_applications``;
- legacy (``/v1/score/...``, seed 000): ``LegacyBatchBody`` and ``LegacyJobBody``, converted
  by ``legacy_batch_state`` and ``legacy_scoring_result``.

Values go through the rules of ``receiver.values``, the ones webhooks use too, so a status
reads the same whichever way it arrives, and a value no scorer produces (a score outside
0..10, a timestamp outside 2000-2100 or with non-ASCII digits, an id that is ``..`` or holds
a ``/``) makes the answer malformed, reported and never stored.

``parse`` raises ``NovaResponseError`` for a body that is not the documented shape;
``error_fields`` reads Nova's error code and message from either error body shape.
``receiver.nova`` is the only caller: it owns HTTP and returns what these functions build.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from receiver.errors import NovaResponseError
from receiver.values import check_score, normalize_status, parse_timestamp, plain_segment
from storage.records import BatchState, RejectedApplication, ScoringResult, Status

__all__ = [
    "BatchBody",
    "CreatedBody",
    "JobBody",
    "LegacyBatchBody",
    "LegacyJobBody",
    "batch_state",
    "error_fields",
    "legacy_batch_state",
    "legacy_scoring_result",
    "parse",
    "rejected_applications",
    "scoring_result",
]

# ---- field types --------------------------------------------------------------------------


def _timestamp(value: object) -> object:
    if isinstance(value, str):
        return parse_timestamp(value)
    return value  # None passes; anything else fails the strict datetime check


def _known_status(value: str) -> str:
    normalize_status(value)
    return value


_INT32_MAX = 2**31 - 1

# Ids become path segments of later requests (reconcile): plain segments only.
Id = Annotated[str, Field(min_length=1), AfterValidator(plain_segment)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
NovaStatus = Annotated[str, AfterValidator(_known_status)]
# Counts are stored in 32-bit integer columns: a larger one would fail the insert.
Count = Annotated[int, Field(ge=0, le=_INT32_MAX)]
Score = Annotated[int, AfterValidator(check_score)]

# ---- response schemas (validation only; values are converted to storage.records) --------


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
    job_id: Id | None = None
    application_id: Id | None = None
    criteria_version_id: str | None = None
    is_rescore: bool | None = None
    score: Score | None = None
    assessment: _Assessment | None = None
    error_code: str | None = None
    error_message: str | None = None
    queued_at: Timestamp | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    failed_at: Timestamp | None = None


class _Batch(_Schema):
    id: Id
    job_id: Id | None = None
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


class CreatedBody(_Schema):
    """The 202 answer of ``POST /v1/jobs/{jobId}/scoring-batches``."""

    batch: _Batch
    scoring_job_ids: tuple[Id, ...]
    rejected_applications: tuple[_Rejected, ...] = ()


class BatchBody(_Schema):
    """``GET /v1/jobs/{jobId}/scoring-batches/{scoringBatchId}``."""

    batch: _Batch
    scoring_jobs: tuple[_ScoringJob, ...]
    # Required in the newest docs, absent in the middle generation.
    rejected_applications: tuple[_Rejected, ...] = ()


class JobBody(_Schema):
    """``GET /v1/jobs/{jobId}/applications/{applicationId}/scoring-jobs/{scoringJobId}``."""

    scoring_job: _ScoringJob


class _LegacyJobRef(_Schema):
    scoring_job_id: Id
    status: NovaStatus
    application_id: Id | None = None


class LegacyBatchBody(_Schema):
    """``GET /v1/score/batch/{batchId}`` (seed 000): statuses only."""

    batch_id: Id
    status: NovaStatus
    job_id: Id | None = None
    total_jobs: Count | None = None
    completed: Count | None = None
    failed: Count | None = None
    processing: Count | None = None
    jobs: tuple[_LegacyJobRef, ...] = ()
    completed_at: Timestamp | None = None


class _LegacyResult(_Schema):
    score: Score | None = None
    assessment: _Assessment | None = None


class _LegacyError(_Schema):
    type: str | None = None
    code: str | None = None
    message: str | None = None


class LegacyJobBody(_Schema):
    """``GET /v1/score/{scoringJobId}`` (seed 000): the flat legacy shape."""

    scoring_job_id: Id
    status: NovaStatus
    job_id: Id | None = None
    application_id: Id | None = None
    tenant_id: str | None = None
    result: _LegacyResult | None = None
    error: _LegacyError | None = None
    completed_at: Timestamp | None = None
    failed_at: Timestamp | None = None


# ---- conversion to storage.records ------------------------------------------------------

_M = TypeVar("_M", bound=_Schema)


def parse(model: type[_M], body: bytes, what: str) -> _M:
    """Validate ``body`` as ``model``; raise ``NovaResponseError`` (no body echoed) if it is not."""
    try:
        return model.model_validate_json(body)
    except (ValidationError, ValueError, RecursionError) as exc:
        count = exc.error_count() if isinstance(exc, ValidationError) else 1
        raise NovaResponseError(
            f"{what}: response does not match the schema ({count} errors)"
        ) from None


def batch_state(raw: _Batch, tenant_id: str | None) -> BatchState:
    """A v1 batch; its status is derived from the counters when Nova omits it."""
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


def rejected_applications(
    batch_id: str, items: tuple[_Rejected, ...]
) -> tuple[RejectedApplication, ...]:
    """The applications Nova refused to score, tagged with their batch."""
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


def scoring_result(
    raw: _ScoringJob, *, tenant_id: str | None, batch_id: str | None
) -> ScoringResult:
    """A v1 scoring job, assessment flattened."""
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


def legacy_batch_state(raw: LegacyBatchBody, tenant_id: str | None) -> BatchState:
    """A legacy batch. Its "completed" means "all finished": with failures that is "failed"."""
    status = normalize_status(raw.status)
    if status == "completed" and raw.failed:
        status = "failed"
    return BatchState(
        batch_id=raw.batch_id,
        job_id=raw.job_id or "",
        tenant_id=tenant_id,
        api="legacy",
        status=status,
        nova_status=raw.status,
        total_jobs=raw.total_jobs,
        completed_jobs=raw.completed,
        failed_jobs=raw.failed,
        completed_at=raw.completed_at,
    )


def legacy_scoring_result(raw: LegacyJobBody, *, tenant_id: str | None) -> ScoringResult:
    """A legacy scoring job; the body's own ``tenantId`` wins over the caller's."""
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


def error_fields(body: bytes) -> tuple[str | None, str | None]:
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
