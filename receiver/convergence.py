"""Compare the local store with Nova's truth, field by field. Pure: no I/O.

Used by ``demo`` (the proof table), the convergence tests and the benchmarks. ``truth`` is
the v1 batch-status shape per batch (``{"batches": [{"batch", "scoringJobs",
"rejectedApplications"}]}``), as ``fake-nova`` serves it on ``/_fake/truth``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from receiver.events import normalize_status
from receiver.signatures import parse_timestamp
from storage.records import ScoringResult

# Where each stored result field sits in Nova's v1 scoring job (a path of keys). Together
# with the exclusions below this must name every field of ``ScoringResult``: a stored
# field added later and named in neither stops the import, so CONVERGED cannot skip it.
_NOVA_PATHS: dict[str, tuple[str, ...]] = {
    "status": ("status",),
    "job_id": ("jobId",),
    "application_id": ("applicationId",),
    "criteria_version_id": ("criteriaVersionId",),
    "is_rescore": ("isRescore",),
    "score": ("score",),
    "verdict": ("assessment", "verdict"),
    "strengths": ("assessment", "strengths"),
    "concerns": ("assessment", "concerns"),
    "interview_focus": ("assessment", "interviewFocus"),
    "error_code": ("errorCode",),
    "error_message": ("errorMessage",),
    "queued_at": ("queuedAt",),
    "started_at": ("startedAt",),
    "completed_at": ("completedAt",),
    "failed_at": ("failedAt",),
}
_NOT_COMPARED: dict[str, str] = {
    "scoring_job_id": "the key both sides are matched on",
    "batch_id": "compared with the batch that lists the job",
    "tenant_id": "the batch-status response does not carry it",
    "nova_status": "Nova's spelling differs by API generation; status is compared",
    "error_type": "only the oldest webhooks carry it",
}
_TIMES = frozenset({"queued_at", "started_at", "completed_at", "failed_at"})
_LISTS = frozenset({"strengths", "concerns", "interview_focus"})


def _check_field_coverage() -> tuple[str, ...]:
    declared = [f.name for f in fields(ScoringResult)]
    unmapped = [name for name in declared if name not in _NOVA_PATHS | _NOT_COMPARED]
    if unmapped:
        raise RuntimeError(f"convergence: no Nova field for stored field(s) {unmapped}")
    return tuple(name for name in declared if name in _NOVA_PATHS)


COMPARED_FIELDS = _check_field_coverage()
# The legacy single-job response (``GET /v1/score/{id}``) carries no criteria version,
# rescore flag, queue or start time: a legacy batch converges on the rest.
LEGACY_FIELDS = tuple(
    name
    for name in COMPARED_FIELDS
    if name not in {"criteria_version_id", "is_rescore", "queued_at", "started_at"}
)


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


def _nova_value(job: Mapping[str, Any], column: str) -> Any:
    value: Any = job
    for key in _NOVA_PATHS[column]:
        value = value.get(key) if isinstance(value, Mapping) else None
    if column == "status":
        return normalize_status(value)
    if column in _TIMES:
        return _time(value)
    if column in _LISTS and value is not None:
        return list(value)
    return value


def _expected(job: Mapping[str, Any], batch_id: str, columns: Sequence[str]) -> dict[str, Any]:
    expected = {column: _nova_value(job, column) for column in columns}
    expected["batch_id"] = batch_id
    return expected


def compare(
    truth: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    rejected: Mapping[str, set[str]],
    *,
    columns: Sequence[str] = COMPARED_FIELDS,
) -> Comparison:
    """``results`` maps scoring job id → stored row; ``rejected`` batch id → application ids.

    ``columns`` are the stored fields compared (``LEGACY_FIELDS`` for legacy batches).
    """
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
                for column, value in _expected(job, batch_id, columns).items()
                if row.get(column) != value
            ]
            comparison.mismatches.extend(wrong)
            summary.matching += not wrong
        comparison.batches.append(summary)
    return comparison
