"""``receiver.convergence.compare``: the proof behind CONVERGED flags every kind of gap."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.convergence import COMPARED_FIELDS, compare
from storage.records import ScoringResult

BATCH = "batch-1"


def nova_job(job_id: str, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": job_id,
        "jobId": "job-1",
        "applicationId": f"app-{job_id}",
        "criteriaVersionId": "crit-1",
        "isRescore": False,
        "status": "completed",
        "score": 7,
        "assessment": {
            "verdict": "good",
            "strengths": ["a"],
            "concerns": ["b"],
            "interviewFocus": ["c"],
        },
        "errorCode": None,
        "errorMessage": None,
        "queuedAt": "2026-01-01T10:00:00Z",
        "startedAt": "2026-01-01T10:00:01Z",
        "completedAt": "2026-01-01T10:00:30Z",
        "failedAt": None,
    }
    job.update(overrides)
    return job


def stored_row(sj: str, **overrides: Any) -> dict[str, Any]:
    """The row nova-sink would hold for ``nova_job(job_id)``."""
    at = lambda second: datetime(2026, 1, 1, 10, 0, second, tzinfo=UTC)  # noqa: E731
    row: dict[str, Any] = {
        "scoring_job_id": sj,
        "batch_id": BATCH,
        "job_id": "job-1",
        "application_id": f"app-{sj}",
        "criteria_version_id": "crit-1",
        "is_rescore": False,
        "status": "completed",
        "score": 7,
        "verdict": "good",
        "strengths": ["a"],
        "concerns": ["b"],
        "interview_focus": ["c"],
        "error_code": None,
        "error_message": None,
        "queued_at": at(0),
        "started_at": at(1),
        "completed_at": at(30),
        "failed_at": None,
    }
    row.update(overrides)
    return row


def truth(*jobs: dict[str, Any], rejected: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "batches": [
            {
                "batch": {"id": BATCH, "status": "completed"},
                "scoringJobs": list(jobs),
                "rejectedApplications": [{"applicationId": a} for a in rejected],
            }
        ]
    }


def test_identical_store_converges() -> None:
    """The reference: a store that holds exactly Nova's view is CONVERGED."""
    comparison = compare(
        truth(nova_job("sj1"), rejected=("app-x",)), {"sj1": stored_row("sj1")}, {BATCH: {"app-x"}}
    )
    assert comparison.mismatches == []
    assert comparison.converged


def test_wrong_score_is_flagged() -> None:
    """One field off in one result is a mismatch naming the column."""
    comparison = compare(truth(nova_job("sj1")), {"sj1": stored_row("sj1", score=6)}, {})
    assert [(m.column, m.nova, m.local) for m in comparison.mismatches] == [("score", 7, 6)]
    assert not comparison.converged


def test_missing_result_is_flagged() -> None:
    """A scoring job Nova has and the store lacks fails the proof."""
    comparison = compare(truth(nova_job("sj1"), nova_job("sj2")), {"sj1": stored_row("sj1")}, {})
    assert [(m.scoring_job_id, m.column) for m in comparison.mismatches] == [("sj2", "*")]
    assert not comparison.converged


def test_missing_rejection_is_flagged() -> None:
    """An intake rejection Nova reports and the store lacks fails the proof."""
    comparison = compare(
        truth(nova_job("sj1"), rejected=("app-x",)), {"sj1": stored_row("sj1")}, {}
    )
    assert comparison.mismatches == []
    assert (comparison.batches[0].nova_rejected, comparison.batches[0].local_rejected) == (1, 0)
    assert not comparison.converged


@pytest.mark.parametrize("column", COMPARED_FIELDS)
def test_every_compared_field_is_checked(column: str) -> None:
    """A stored field that differs from Nova's is flagged, whichever field it is."""
    wrong = stored_row("sj1", **{column: "never stored"})
    comparison = compare(truth(nova_job("sj1")), {"sj1": wrong}, {})
    assert [m.column for m in comparison.mismatches] == [column]


def test_compared_fields_cover_the_stored_result() -> None:
    """Every stored result field is compared, except the documented exclusions."""
    excluded = {"scoring_job_id", "batch_id", "tenant_id", "nova_status", "error_type"}
    assert set(COMPARED_FIELDS) == {f.name for f in fields(ScoringResult)} - excluded
