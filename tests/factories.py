"""Builders for Nova payloads, signed headers and storage records.

Payload builders come in pairs: ``*_payload(...)`` returns the dict Nova would send and the
bare name (``score_completed(...)``) returns it encoded as the raw body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.ingest import Received
from receiver.signatures import sign
from storage.records import BatchState, InboundDelivery, ScoringResult

SECRET = "whsec_test_primary_0123456789abcdef"
SECOND_SECRET = "whsec_test_rotated_fedcba9876543210"
OTHER_SECRET = "whsec_test_not_configured_00000000"

# The app's stopped clock (conftest ``fixed_clock``).
NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
COMPLETED_AT = "2026-01-15T11:58:00Z"
FAILED_AT = "2026-01-15T11:57:00Z"


def iso(moment: datetime) -> str:
    """Nova's timestamp format: ISO-8601 UTC with a ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode(payload: Any) -> bytes:
    """The raw body bytes of ``payload`` (UTF-8, non-ASCII kept as is)."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


# ---- payloads ------------------------------------------------------------------------------


def score_completed_payload(
    scoring_job_id: str = "sj_1",
    *,
    job_id: str = "job-123",
    application_id: str = "app-456",
    tenant_id: str = "acme-corp",
    score: Any = 7,
    verdict: Any = "Strong match for the role",
    strengths: Any = ("Python", "Distributed systems"),
    concerns: Any = ("No on-call experience",),
    interview_focus: Any = ("System design",),
    completed_at: Any = COMPLETED_AT,
    **extra: Any,
) -> dict[str, Any]:
    """A mid/new-generation ``score.completed`` body."""
    return {
        "event": "score.completed",
        "tenantId": tenant_id,
        "scoringJobId": scoring_job_id,
        "criteriaVersionId": "cv_1",
        "jobId": job_id,
        "applicationId": application_id,
        "result": {
            "score": score,
            "assessment": {
                "verdict": verdict,
                "strengths": list(strengths) if isinstance(strengths, tuple) else strengths,
                "concerns": list(concerns) if isinstance(concerns, tuple) else concerns,
                "interviewFocus": (
                    list(interview_focus) if isinstance(interview_focus, tuple) else interview_focus
                ),
            },
        },
        "completedAt": completed_at,
        **extra,
    }


def score_completed(scoring_job_id: str = "sj_1", **kwargs: Any) -> bytes:
    return encode(score_completed_payload(scoring_job_id, **kwargs))


def score_failed_payload(
    scoring_job_id: str = "sj_1",
    *,
    job_id: str = "job-123",
    application_id: str = "app-456",
    tenant_id: str = "acme-corp",
    code: Any = "RESUME_FETCH_FAILED",
    message: Any = "Could not download the resume",
    failed_at: Any = FAILED_AT,
    **extra: Any,
) -> dict[str, Any]:
    """A ``score.failed`` body."""
    return {
        "event": "score.failed",
        "tenantId": tenant_id,
        "scoringJobId": scoring_job_id,
        "jobId": job_id,
        "applicationId": application_id,
        "error": {"code": code, "message": message},
        "failedAt": failed_at,
        **extra,
    }


def score_failed(scoring_job_id: str = "sj_1", **kwargs: Any) -> bytes:
    return encode(score_failed_payload(scoring_job_id, **kwargs))


def batch_completed_payload(
    batch_id: str = "batch_1",
    *,
    job_id: str = "job-123",
    tenant_id: str = "acme-corp",
    total_jobs: Any = 3,
    completed_jobs: Any = 2,
    failed_jobs: Any = 1,
    status: Any = "failed",
    completed_at: Any = COMPLETED_AT,
    **extra: Any,
) -> dict[str, Any]:
    """A ``batch.completed`` body (``status: failed`` = finished, at least one job failed)."""
    return {
        "event": "batch.completed",
        "tenantId": tenant_id,
        "batchId": batch_id,
        "jobId": job_id,
        "totalJobs": total_jobs,
        "completedJobs": completed_jobs,
        "failedJobs": failed_jobs,
        "status": status,
        "completedAt": completed_at,
        **extra,
    }


def batch_completed(batch_id: str = "batch_1", **kwargs: Any) -> bytes:
    return encode(batch_completed_payload(batch_id, **kwargs))


def nova_test_event_payload(message: str = "This is a test webhook from Nova") -> dict[str, Any]:
    """The Portal's "Send Test Webhook" body."""
    return {"event": "test", "message": message, "timestamp": COMPLETED_AT}


def nova_test_event(message: str = "This is a test webhook from Nova") -> bytes:
    return encode(nova_test_event_payload(message))


# ---- signatures ----------------------------------------------------------------------------


def signed(body: bytes, secret: str = SECRET, **kwargs: Any) -> dict[str, str]:
    """The headers Nova would send with ``body`` (``receiver.signatures.sign``)."""
    return sign(secret, body, **kwargs)


def hmac_hex(secret: str, message: bytes) -> str:
    """A hand-rolled HMAC-SHA256, independent of the code under test."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# ---- storage records -----------------------------------------------------------------------


def at(minutes: float) -> datetime:
    """``NOW`` shifted by ``minutes``."""
    return NOW + timedelta(minutes=minutes)


def completed(
    scoring_job_id: str = "sj_1",
    *,
    when: datetime | None = None,
    score: int | None = 7,
    verdict: str | None = "Strong match",
    **kwargs: Any,
) -> ScoringResult:
    """A completed ``ScoringResult`` as a webhook or the API would describe it."""
    fields: dict[str, Any] = {
        "job_id": "job-123",
        "application_id": "app-456",
        "tenant_id": "acme-corp",
        "nova_status": "completed",
        "strengths": ("Python",),
        "concerns": ("On-call",),
        "interview_focus": ("Design",),
        **kwargs,
    }
    return ScoringResult(
        scoring_job_id=scoring_job_id,
        status="completed",
        score=score,
        verdict=verdict,
        completed_at=when or at(-2),
        **fields,
    )


def failed(
    scoring_job_id: str = "sj_1",
    *,
    when: datetime | None = None,
    code: str | None = "RESUME_FETCH_FAILED",
    **kwargs: Any,
) -> ScoringResult:
    """A failed ``ScoringResult``."""
    fields: dict[str, Any] = {
        "job_id": "job-123",
        "application_id": "app-456",
        "tenant_id": "acme-corp",
        "nova_status": "failed",
        "error_message": "Could not download the resume",
        **kwargs,
    }
    return ScoringResult(
        scoring_job_id=scoring_job_id,
        status="failed",
        error_code=code,
        failed_at=when or at(-3),
        **fields,
    )


def pending(scoring_job_id: str = "sj_1", **kwargs: Any) -> ScoringResult:
    """A scoring job Nova has accepted but not finished."""
    fields: dict[str, Any] = {"job_id": "job-123", "nova_status": "pending", **kwargs}
    return ScoringResult(scoring_job_id=scoring_job_id, status="pending", **fields)


def batch_state(batch_id: str = "batch_1", **kwargs: Any) -> BatchState:
    """A tracked batch (pending unless told otherwise)."""
    fields: dict[str, Any] = {"job_id": "job-123", "tenant_id": "acme-corp", **kwargs}
    return BatchState(batch_id=batch_id, **fields)


def received(key: str, body: bytes, *, webhook_id: str | None = None) -> Received:
    """A verified delivery as the webhook endpoint hands it to the writer."""
    return Received(
        body=body,
        delivery_key=key,
        webhook_id=webhook_id if webhook_id is not None else key,
        signature_scheme="x-webhook-signature/body",
        secret_fingerprint="fp_0123456789",
        body_sha256=hashlib.sha256(body).hexdigest(),
    )


def inbound(
    key: str = "msg_1",
    *,
    body: bytes = b"{}",
    event: str | None = "score.completed",
    scoring_job_id: str | None = "sj_1",
    **kwargs: Any,
) -> InboundDelivery:
    """A verified delivery as the inbox records it."""
    fields: dict[str, Any] = {
        "webhook_id": key,
        "signature_scheme": "x-webhook-signature/body",
        "secret_fingerprint": "fp_0123456789",
        **kwargs,
    }
    return InboundDelivery(
        delivery_key=key, event=event, body=body, scoring_job_id=scoring_job_id, **fields
    )
