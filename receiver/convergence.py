"""Compare the local store with Nova's truth, field by field. Pure: no I/O.

Used by ``demo`` (the proof table), the convergence tests and the benchmarks. ``truth`` is
the v1 batch-status shape per batch (``{"batches": [{"batch", "scoringJobs",
"rejectedApplications"}]}``), as ``fake-nova`` serves it on ``/_fake/truth``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.events import normalize_status
from receiver.signatures import parse_timestamp

# (local column, Nova field, converter) for every field a webhook or the API can carry.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("job_id", "jobId"),
    ("application_id", "applicationId"),
    ("score", "score"),
    ("error_code", "errorCode"),
    ("error_message", "errorMessage"),
)
_ASSESSMENT: tuple[tuple[str, str], ...] = (
    ("verdict", "verdict"),
    ("strengths", "strengths"),
    ("concerns", "concerns"),
    ("interview_focus", "interviewFocus"),
)
_TIMES: tuple[tuple[str, str], ...] = (("completed_at", "completedAt"), ("failed_at", "failedAt"))


@dataclass(frozen=True, slots=True)
class Mismatch:
    batch_id: str
    scoring_job_id: str
    column: str
    nova: Any
    local: Any


@dataclass
class BatchComparison:
    batch_id: str
    nova_status: str
    nova_jobs: int
    local_jobs: int = 0
    matching: int = 0
    nova_rejected: int = 0
    local_rejected: int = 0

    @property
    def equal(self) -> bool:
        return (
            self.matching == self.nova_jobs == self.local_jobs
            and self.nova_rejected == self.local_rejected
        )


@dataclass
class Comparison:
    batches: list[BatchComparison] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not self.mismatches and all(b.equal for b in self.batches)


def _time(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None


def _expected(job: Mapping[str, Any], batch_id: str) -> dict[str, Any]:
    assessment = job.get("assessment") or {}
    expected: dict[str, Any] = {
        "status": normalize_status(job["status"]),
        "batch_id": batch_id,
    }
    expected.update({column: job.get(name) for column, name in _FIELDS})
    expected.update({column: assessment.get(name) for column, name in _ASSESSMENT})
    expected.update({column: _time(job.get(name)) for column, name in _TIMES})
    return expected


def compare(
    truth: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    rejected: Mapping[str, set[str]],
) -> Comparison:
    """``results`` maps scoring job id → stored row; ``rejected`` batch id → application ids."""
    comparison = Comparison()
    for entry in truth["batches"]:
        batch = entry["batch"]
        batch_id = batch["id"]
        jobs = entry.get("scoringJobs") or []
        nova_rejected = {r["applicationId"] for r in entry.get("rejectedApplications") or []}
        summary = BatchComparison(
            batch_id=batch_id,
            nova_status=batch["status"],
            nova_jobs=len(jobs),
            nova_rejected=len(nova_rejected),
            local_rejected=len(nova_rejected & rejected.get(batch_id, set())),
        )
        for job in jobs:
            row = results.get(job["id"])
            if row is None:
                comparison.mismatches.append(Mismatch(batch_id, job["id"], "*", "present", None))
                continue
            summary.local_jobs += 1
            wrong = [
                Mismatch(batch_id, job["id"], column, value, row.get(column))
                for column, value in _expected(job, batch_id).items()
                if row.get(column) != value
            ]
            comparison.mismatches.extend(wrong)
            summary.matching += not wrong
        comparison.batches.append(summary)
    return comparison
