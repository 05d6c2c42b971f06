"""Fake Nova's in-memory world: batches, scoring jobs and their deterministic outcomes.

A job's outcome (score or failure) is drawn at intake from an RNG seeded with the config
seed and the job's tenant, jobId and applicationId, so the same submission scores the same
way in every run. Its status is a function of the clock: pending until ``finished_at``
(``queued_at + score_delay``, spread a little per job), then completed or failed.
Timestamps are kept to milliseconds so that the API and the webhooks serve the same string.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from receiver.fake_nova.config import FakeNovaConfig
from storage.records import Api

Clock = Callable[[], datetime]
JobPhase = Literal["queued", "processing", "completed", "failed"]

_VERDICTS = (
    "Strong candidate with solid backend experience.",
    "Promising profile; some gaps in distributed systems.",
    "Adequate experience, limited ownership of production systems.",
    "Not a match for the seniority this role needs.",
)
_STRENGTHS = ("Python", "PostgreSQL", "API design", "Mentoring", "On-call ownership", "Testing")
_CONCERNS = ("Short tenures", "No cloud experience", "Limited scale", "Vague impact statements")
_FOCUS = ("System design", "Incident handling", "Team collaboration", "Data modelling")
_FAILURES = (
    ("RESUME_FETCH_FAILED", "Could not download the resume from the given URL"),
    ("AI_SCORING_FAILED", "The scoring model did not return a valid assessment"),
    ("TIMEOUT", "Scoring did not finish in time"),
)


def iso(moment: datetime) -> str:
    """Nova's timestamp format: UTC, milliseconds, ``Z`` (``2026-11-26T10:30:45.123Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An application refused at intake: no scoring job, no webhook."""

    application_id: str
    code: str
    message: str
    reason: str


@dataclass(slots=True)
class FakeJob:
    """One scoring job and its predetermined outcome."""

    id: str
    batch_id: str
    tenant_id: str
    job_id: str
    application_id: str
    criteria_version_id: str
    api: Api
    queued_at: datetime
    started_at: datetime
    finished_at: datetime
    failed: bool
    score: int | None = None
    assessment: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    def phase(self, now: datetime) -> JobPhase:
        """Where the job is at ``now``."""
        if now >= self.finished_at:
            return "failed" if self.failed else "completed"
        return "processing" if now >= self.started_at else "queued"


@dataclass(slots=True)
class FakeBatch:
    """A scoring batch: its jobs in submission order and its intake rejections."""

    id: str
    tenant_id: str
    job_id: str
    api: Api
    created_at: datetime
    jobs: list[FakeJob]
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def finished_at(self) -> datetime:
        return max((j.finished_at for j in self.jobs), default=self.created_at)

    def counts(self, now: datetime) -> tuple[int, int, int]:
        """``(total, completed, failed)`` at ``now``."""
        phases = [j.phase(now) for j in self.jobs]
        return len(phases), phases.count("completed"), phases.count("failed")


def classify_resume(application_id: str, resume: Mapping[str, Any]) -> Rejection | None:
    """Why intake refuses this resume, or None. Emulates Nova's pre-queue checks."""
    kind = resume.get("type")
    if kind == "text":
        content = resume.get("content")
        if not isinstance(content, str) or not content.strip():
            return Rejection(application_id, "RESUME_EMPTY", "Resume text is empty", "empty_text")
        return None
    if kind == "url":
        url = resume.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return Rejection(
                application_id, "RESUME_FETCH_FAILED", "Resume URL is not valid", "invalid_url"
            )
        if "corrupt" in url.lower():
            return Rejection(
                application_id,
                "RESUME_CORRUPTED",
                "Resume file appears to be corrupted",
                "missing_eof",
            )
        return None
    return Rejection(
        application_id, "RESUME_PARSE_FAILED", "Unsupported resume type", "unsupported_type"
    )


class FakeNovaState:
    """Every batch and job fake Nova knows, and which of them it has announced by webhook."""

    def __init__(self, config: FakeNovaConfig, now: Clock) -> None:
        self.config = config
        self.clock = now
        self._ids = random.Random(f"ids:{config.seed}{config.id_salt}")  # noqa: S311 -- seeded on purpose: reproducible fakes, not secrets
        self.batches: dict[str, FakeBatch] = {}
        self.jobs: dict[str, FakeJob] = {}
        self._idempotency: dict[tuple[str, str, frozenset[str]], str] = {}
        self._criteria: dict[tuple[str, str], str] = {}
        self._unannounced_jobs: list[FakeJob] = []
        self._unannounced_batches: list[FakeBatch] = []

    def now(self) -> datetime:
        return _ms(self.clock())

    def new_id(self, api: Api = "v1", kind: str = "job") -> str:
        """A cuid-like id (v1) or an old-style ``sj_…`` / ``batch_…`` id (legacy)."""
        if api == "legacy":
            prefix = "batch_" if kind == "batch" else "sj_"
            return prefix + f"{self._ids.getrandbits(48):012x}"
        alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
        return "c" + "".join(self._ids.choice(alphabet) for _ in range(24))

    # -- intake ---------------------------------------------------------------------------

    def find_existing(self, tenant_id: str, job_id: str, application_ids: Iterable[str]) -> str:
        """The batch id an identical earlier submission created, or ``""``."""
        return self._idempotency.get((tenant_id, job_id, frozenset(application_ids)), "")

    def create_batch(
        self,
        job_id: str,
        tenant_id: str,
        applications: Sequence[str | Mapping[str, Any]],
        *,
        api: Api = "v1",
    ) -> FakeBatch:
        """Create a batch directly (tests, benchmarks), or after the HTTP layer validated it.

        ``applications`` are application ids (a text resume is assumed) or Nova request
        objects ``{applicationId, resume, applicationData?}``. Idempotent like Nova: the same
        tenant, jobId and set of application ids returns the existing batch.
        """
        items: list[Mapping[str, Any]] = [
            {"applicationId": a, "resume": {"type": "text", "content": "resume"}}
            if isinstance(a, str)
            else a
            for a in applications
        ]
        ids = [str(item["applicationId"]) for item in items]
        existing = self.find_existing(tenant_id, job_id, ids)
        if existing:
            return self.batches[existing]
        now = self.now()
        batch = FakeBatch(self.new_id(api, "batch"), tenant_id, job_id, api, now, [])
        for item in items:
            app_id = str(item["applicationId"])
            rejection = classify_resume(app_id, item.get("resume") or {})
            if rejection is not None:
                batch.rejected.append(rejection)
            else:
                batch.jobs.append(self._new_job(batch, app_id, now))
        batch.rejected.sort(key=lambda r: r.application_id)
        if batch.jobs:
            self.batches[batch.id] = batch
            self._idempotency[(tenant_id, job_id, frozenset(ids))] = batch.id
            self.jobs.update((j.id, j) for j in batch.jobs)
            self._unannounced_jobs.extend(batch.jobs)
            if api == "v1":
                self._unannounced_batches.append(batch)
        return batch

    def create_batches(
        self,
        count: int,
        jobs_per_batch: int,
        *,
        tenant_id: str = "tenant-bench",
        job_prefix: str = "job",
        api: Api = "v1",
    ) -> list[FakeBatch]:
        """``count`` batches of ``jobs_per_batch`` applications each, for benchmarks."""
        return [
            self.create_batch(
                f"{job_prefix}-{b:05d}",
                tenant_id,
                [f"app-{b:05d}-{a:03d}" for a in range(jobs_per_batch)],
                api=api,
            )
            for b in range(count)
        ]

    def _new_job(self, batch: FakeBatch, application_id: str, now: datetime) -> FakeJob:
        key = f"{self.config.seed}:{batch.tenant_id}:{batch.job_id}:{application_id}"
        rng = random.Random(key)  # noqa: S311 -- seeded on purpose: reproducible fakes, not secrets
        spread = self.config.score_delay * (0.5 + 0.5 * rng.random())
        criteria = self._criteria.setdefault((batch.tenant_id, batch.job_id), self.new_id())
        job = FakeJob(
            id=self.new_id(batch.api),
            batch_id=batch.id,
            tenant_id=batch.tenant_id,
            job_id=batch.job_id,
            application_id=application_id,
            criteria_version_id=criteria,
            api=batch.api,
            queued_at=now,
            started_at=_ms(now + timedelta(seconds=spread * 0.2)),
            finished_at=_ms(now + timedelta(seconds=spread)),
            failed=rng.random() < self.config.failure_rate,
        )
        if job.failed:
            job.error_code, job.error_message = rng.choice(_FAILURES)
        else:
            job.score = rng.randint(1, 10)
            job.assessment = {
                "verdict": rng.choice(_VERDICTS),
                "strengths": rng.sample(_STRENGTHS, rng.randint(1, 3)),
                "concerns": rng.sample(_CONCERNS, rng.randint(0, 2)),
                "interviewFocus": rng.sample(_FOCUS, rng.randint(1, 2)),
            }
        return job

    # -- lookups and progress -------------------------------------------------------------

    def find_batch(self, tenant_id: str, batch_id: str) -> FakeBatch | None:
        """The batch, if it exists for this tenant (another tenant's batch is not found)."""
        batch = self.batches.get(batch_id)
        return batch if batch is not None and batch.tenant_id == tenant_id else None

    def find_job(self, tenant_id: str, scoring_job_id: str) -> FakeJob | None:
        job = self.jobs.get(scoring_job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def take_finished(self) -> tuple[list[FakeJob], list[FakeBatch]]:
        """Jobs and v1 batches that became terminal since the last call, in finishing order."""
        now = self.now()
        jobs = [j for j in self._unannounced_jobs if j.finished_at <= now]
        if jobs:
            self._unannounced_jobs = [j for j in self._unannounced_jobs if j.finished_at > now]
            jobs.sort(key=lambda j: j.finished_at)
        batches = [b for b in self._unannounced_batches if b.finished_at <= now]
        if batches:
            self._unannounced_batches = [
                b for b in self._unannounced_batches if b.finished_at > now
            ]
            batches.sort(key=lambda b: b.finished_at)
        return jobs, batches

    def next_finish(self) -> datetime | None:
        """When the next unannounced job finishes (None: nothing left to announce)."""
        pending = [j.finished_at for j in self._unannounced_jobs]
        pending += [b.finished_at for b in self._unannounced_batches]
        return min(pending, default=None)
