"""The dashboard benchmark's database: 100,000 results, their batches, deliveries and runs.

Plain multi-row inserts (the receiver's own write path would take minutes for this much),
then ``ANALYZE`` so the query planner sees the real sizes.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from receiver.signatures import fingerprint
from storage import schema
from storage.db import Engine, make_engine
from storage.store.tables import BATCHES, DELIVERIES, JOBS, REJECTED, RUNS

SECRET = "whsec_bench_dashboard_0123456789"  # noqa: S105 - a throwaway loopback secret
BATCH_SIZE = 25
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
VERDICTS = (
    "Strong candidate with solid backend experience.",
    "Promising profile; some gaps in distributed systems.",
    "Not a match for the seniority this role needs.",
)


def _chunks(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def populate(engine: Engine, *, results: int, jobs: int, now: datetime, seed: int = 1) -> None:
    """Fill a migrated database with ``results`` results and their deliveries."""
    rng = random.Random(seed)
    span = timedelta(hours=23)
    job_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    batch_rows: list[dict[str, Any]] = []
    rejected_rows: list[dict[str, Any]] = []
    batches = results // BATCH_SIZE
    for b in range(batches):
        batch_id = f"batch{b:05d}{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        job_id = f"job-{b % jobs:03d}"
        tracked = now - span + span * b / batches
        failed_here = 0
        for n in range(BATCH_SIZE):
            index = b * BATCH_SIZE + n
            sj = f"sj{index:06d}{uuid.UUID(int=rng.getrandbits(128)).hex[:14]}"
            finished = tracked + timedelta(seconds=rng.uniform(5, 600))
            failed = rng.random() < 0.05
            failed_here += failed
            score = None if failed else rng.randint(1, 10)
            verdict = None if failed else rng.choice(VERDICTS)
            job_rows.append(
                {
                    "scoring_job_id": sj,
                    "job_id": job_id,
                    "application_id": f"app-{index:06d}",
                    "batch_id": batch_id,
                    "tenant_id": "tenant-bench",
                    "status": "failed" if failed else "completed",
                    "nova_status": "failed" if failed else "completed",
                    "is_rescore": False,
                    "score": score,
                    "verdict": verdict,
                    "strengths": None if failed else ["Python", "PostgreSQL", "Mentoring"],
                    "concerns": None if failed else ["No on-call experience"],
                    "interview_focus": None if failed else ["System design"],
                    "error_code": "RESUME_FETCH_FAILED" if failed else None,
                    "error_message": "Could not download the resume" if failed else None,
                    "completed_at": None if failed else finished,
                    "failed_at": finished if failed else None,
                    "source": "webhook",
                    "first_seen_at": finished,
                    "updated_at": finished,
                    "delivery_count": 1,
                }
            )
            event = "score.failed" if failed else "score.completed"
            body = {
                "event": event,
                "tenantId": "tenant-bench",
                "scoringJobId": sj,
                "jobId": job_id,
                "applicationId": f"app-{index:06d}",
                "result": {"score": score, "assessment": {"verdict": verdict}},
                "completedAt": finished.isoformat(),
            }
            unparsed = rng.random() < 0.01
            received = finished + timedelta(seconds=rng.uniform(0.05, 3))
            delivery_rows.append(
                {
                    "delivery_key": f"msg_{sj}",
                    "webhook_id": f"msg_{sj}",
                    "event": None if unparsed else event,
                    "scoring_job_id": None if unparsed else sj,
                    "batch_id": None,
                    "outcome": "stored-unparsed" if unparsed else "applied",
                    "signature_scheme": "x-webhook-signature/id.timestamp.body",
                    "secret_fingerprint": fingerprint(SECRET),
                    "received_at": received,
                    "last_received_at": received,
                    "attempts": 1,
                    # An unparsed one: valid JSON plus a stray brace.
                    "raw_body": json.dumps(body).encode() + (b"}" if unparsed else b""),
                    "body_purged_at": None,
                }
            )
        batch_rows.append(
            {
                "batch_id": batch_id,
                "job_id": job_id,
                "tenant_id": "tenant-bench",
                "api": "v1",
                "status": "failed" if failed_here else "completed",
                "nova_status": "failed" if failed_here else "completed",
                "total_jobs": BATCH_SIZE + 1,
                "completed_jobs": BATCH_SIZE - failed_here,
                "failed_jobs": failed_here,
                "created_at": tracked,
                "completed_at": tracked + timedelta(minutes=10),
                "tracked_at": tracked,
                "last_reconciled_at": tracked + timedelta(minutes=15),
                "due": False,
            }
        )
        rejected_rows.append(
            {
                "batch_id": batch_id,
                "application_id": f"app-rejected-{b:05d}",
                "code": "INVALID_RESUME",
                "message": "The resume could not be parsed",
                "reason": None,
                "recorded_at": tracked,
            }
        )
    runs = [
        {
            "started_at": now - timedelta(hours=h),
            "finished_at": now - timedelta(hours=h) + timedelta(seconds=4),
            "dry_run": False,
            "batches_checked": 200,
            "results_added": rng.randint(0, 40),
            "results_updated": rng.randint(0, 10),
            "rejected_recorded": 0,
            "errors": {},
            "gaps_remaining": 0,
            "converged": True,
        }
        for h in range(20, 0, -1)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(BATCHES), batch_rows)
        conn.execute(sa.insert(REJECTED), rejected_rows)
        for chunk in _chunks(job_rows):
            conn.execute(sa.insert(JOBS), chunk)
        for chunk in _chunks(delivery_rows):
            conn.execute(sa.insert(DELIVERIES), chunk)
        conn.execute(sa.insert(RUNS), runs)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


@contextmanager
def database(workdir: Path, *, postgres: bool) -> Iterator[str]:
    """A migrated, empty database URL: a SQLite file, or a private PostgreSQL schema."""
    if not postgres:
        url = f"sqlite:///{workdir / 'dashboard.db'}"
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        yield url
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
    try:
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        admin.dispose()
