"""The JSON fake Nova serves: API bodies of both generations and webhook payloads.

One function per documented shape, all from the same ``FakeJob``/``FakeBatch`` and the same
``iso()`` formatting, so a webhook's ``completedAt`` is byte-for-byte the API's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.fake_nova.config import StatusCase
from receiver.fake_nova.state import FakeBatch, FakeJob, Rejection, iso

JSON = dict[str, Any]


def _case(value: str, case: StatusCase) -> str:
    return value.upper() if case == "upper" else value


def job_status(job: FakeJob, now: datetime, case: StatusCase) -> str:
    """Newest docs: ``pending | completed | failed``; middle (upper): also ``PROCESSING``."""
    phase = job.phase(now)
    if case == "upper":
        return "PENDING" if phase == "queued" else phase.upper()
    return "pending" if phase in ("queued", "processing") else phase


def batch_status(batch: FakeBatch, now: datetime, case: StatusCase) -> str:
    """Newest: ``pending | completed | failed``; middle adds ``IN_PROGRESS``/``PARTIAL_FAILURE``."""
    total, done, failed = batch.counts(now)
    if done + failed < total:
        if case == "upper":
            return "IN_PROGRESS" if done + failed else "PENDING"
        return "pending"
    if not failed:
        return _case("completed", case)
    if case == "upper":
        return "PARTIAL_FAILURE" if done else "FAILED"
    return "failed"


def _terminal(job: FakeJob, now: datetime) -> tuple[bool, bool]:
    phase = job.phase(now)
    return phase == "completed", phase == "failed"


def scoring_job(job: FakeJob, now: datetime, case: StatusCase) -> JSON:
    """The ``scoringJob`` object of the current API (also the items of ``scoringJobs``)."""
    completed, failed = _terminal(job, now)
    return {
        "id": job.id,
        "criteriaVersionId": job.criteria_version_id,
        "jobId": job.job_id,
        "applicationId": job.application_id,
        "status": job_status(job, now, case),
        "isRescore": False,
        "score": job.score if completed else None,
        "assessment": job.assessment if completed else None,
        "errorCode": job.error_code if failed else None,
        "errorMessage": job.error_message if failed else None,
        "queuedAt": iso(job.queued_at),
        "startedAt": iso(job.started_at) if now >= job.started_at else None,
        "completedAt": iso(job.finished_at) if completed else None,
        "failedAt": iso(job.finished_at) if failed else None,
    }


def batch_summary(batch: FakeBatch, now: datetime, case: StatusCase) -> JSON:
    total, done, failed = batch.counts(now)
    finished = done + failed == total
    return {
        "id": batch.id,
        "jobId": batch.job_id,
        "status": batch_status(batch, now, case),
        "totalJobs": total,
        "completedJobs": done,
        "failedJobs": failed,
        "createdAt": iso(batch.created_at),
        "completedAt": iso(batch.finished_at) if finished else None,
    }


def rejection(item: Rejection) -> JSON:
    return {
        "applicationId": item.application_id,
        "error": {"code": item.code, "message": item.message, "reason": item.reason},
    }


def created(batch: FakeBatch, now: datetime, case: StatusCase) -> JSON:
    """The 202 body of ``POST /v1/jobs/{jobId}/scoring-batches``."""
    return {
        "batch": batch_summary(batch, now, case),
        "scoringJobIds": [j.id for j in batch.jobs],
        "rejectedApplications": [rejection(r) for r in batch.rejected],
    }


def batch_status_body(batch: FakeBatch, now: datetime, case: StatusCase) -> JSON:
    """``GET /v1/jobs/{jobId}/scoring-batches/{id}`` (seed 001)."""
    return {
        "batch": batch_summary(batch, now, case),
        "scoringJobs": [scoring_job(j, now, case) for j in batch.jobs],
        "rejectedApplications": [rejection(r) for r in batch.rejected],
    }


def _legacy_status(job: FakeJob, now: datetime, case: StatusCase) -> str:
    return _case(job.phase(now), case)


def legacy_batch(batch: FakeBatch, now: datetime, case: StatusCase) -> JSON:
    """``GET /v1/score/batch/{batchId}`` (seed 000): ``completed`` = all finished, either way."""
    total, done, failed = batch.counts(now)
    finished = done + failed == total
    body: JSON = {
        "batchId": batch.id,
        "status": _case("completed" if finished else "processing", case),
        "jobId": batch.job_id,
        "totalJobs": total,
        "completed": done,
        "failed": failed,
        "processing": total - done - failed,
        "jobs": [
            {
                "applicationId": j.application_id,
                "scoringJobId": j.id,
                "status": _legacy_status(j, now, case),
            }
            for j in batch.jobs
        ],
    }
    if finished:
        body["completedAt"] = iso(batch.finished_at)
    return body


def legacy_job(job: FakeJob, now: datetime, case: StatusCase) -> JSON:
    """``GET /v1/score/{scoringJobId}``: flat; a failed job carries ``error`` and ``failedAt``."""
    completed, failed = _terminal(job, now)
    body: JSON = {
        "scoringJobId": job.id,
        "status": _legacy_status(job, now, case),
        "jobId": job.job_id,
        "applicationId": job.application_id,
        "result": {"score": job.score, "assessment": job.assessment} if completed else None,
        "completedAt": iso(job.finished_at) if completed else None,
    }
    if failed:
        body["error"] = {"code": job.error_code, "message": job.error_message}
        body["failedAt"] = iso(job.finished_at)
    return body


def score_event(job: FakeJob) -> JSON:
    """``score.completed`` / ``score.failed``: flat, no envelope, no ``batchId`` (NOVA.md §1).

    Legacy-generation jobs get the oldest payload, without ``tenantId``/``criteriaVersionId``.
    """
    body: JSON = {"event": "score.failed" if job.failed else "score.completed"}
    if job.api == "v1":
        body["tenantId"] = job.tenant_id
    body["scoringJobId"] = job.id
    if job.api == "v1":
        body["criteriaVersionId"] = job.criteria_version_id
    body["jobId"] = job.job_id
    body["applicationId"] = job.application_id
    if job.failed:
        body["error"] = {"code": job.error_code, "message": job.error_message}
        body["failedAt"] = iso(job.finished_at)
    else:
        body["result"] = {"score": job.score, "assessment": job.assessment}
        body["completedAt"] = iso(job.finished_at)
    return body


def batch_event(batch: FakeBatch, case: StatusCase) -> JSON:
    """``batch.completed``: the batch id travels as ``batchId`` here (REST: ``batch.id``)."""
    now = batch.finished_at
    total, done, failed = batch.counts(now)
    return {
        "event": "batch.completed",
        "tenantId": batch.tenant_id,
        "batchId": batch.id,
        "jobId": batch.job_id,
        "totalJobs": total,
        "completedJobs": done,
        "failedJobs": failed,
        "status": _case("failed" if failed else "completed", case),
        "completedAt": iso(batch.finished_at),
    }


def truth(batches: list[FakeBatch], now: datetime, case: StatusCase) -> JSON:
    """Everything fake Nova knows, as its API serves it (``GET /_fake/truth``)."""
    return {
        "generatedAt": iso(now),
        "batches": [
            {"tenantId": b.tenant_id, "api": b.api, **batch_status_body(b, now, case)}
            for b in batches
        ],
    }
