"""Dashboard page latency on a 100,000-result database (quality bar: every page < 100 ms).

Builds a database the size of the bar: 100,000 results in 4,000 batches of 25 (spread over
``--jobs`` Nova jobs), one webhook delivery per result plus 1 % stored unparsed, all received
in the last 24 hours (the worst case for the overview's 24-hour outcome counts), 20
reconcile runs. Serves it with the real receiver under uvicorn in its own process, signs in
through a login link, then requests every page kind (first pages, filtered pages, pages deep
behind a cursor, detail pages) sequentially, reporting p50/p95/max of the wall time each
request took from the client's side. Same-run baseline: ``GET /healthz`` (the floor of one
HTTP round trip to that server).

    uv run python benchmarks/dashboard.py [--quick] [--json] [--results N] [--jobs N]
                                          [--postgres]
    uv run python benchmarks/dashboard.py --screenshot docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _common import (
    clean_env,
    dump_json,
    machine,
    migrated_sqlite,
    percentile,
    start_uvicorn,
    table,
)

from receiver.demo import free_port
from receiver.signatures import fingerprint
from receiver.ui.auth import create_login_token, login_url
from storage import schema
from storage.db import Engine, make_engine
from storage.store.tables import BATCHES, DELIVERIES, JOBS, REJECTED, RUNS

KEY = "bench-dashboard-key-0123456789abcdef"
SECRET = "whsec_bench_dashboard_0123456789"  # noqa: S105 - a throwaway loopback secret
BATCH_SIZE = 25
TARGET_MS = 100.0
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
VERDICTS = (
    "Strong candidate with solid backend experience.",
    "Promising profile; some gaps in distributed systems.",
    "Not a match for the seniority this role needs.",
)


# ---- the database ---------------------------------------------------------------------------


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


# ---- the pages --------------------------------------------------------------------------------


def sample(engine: Engine) -> dict[str, Any]:
    """Ids and cursors to request: random batches, results, deliveries, mid-list cursors."""
    from receiver.ui.paging import encode_cursor

    with engine.connect() as conn:
        batches = [r[0] for r in conn.execute(sa.select(BATCHES.c.batch_id))]
        results = [r[0] for r in conn.execute(sa.select(JOBS.c.scoring_job_id))]
        deliveries = [r[0] for r in conn.execute(sa.select(DELIVERIES.c.id))]
        middle = conn.execute(
            sa.select(BATCHES.c.tracked_at, BATCHES.c.batch_id)
            .order_by(BATCHES.c.tracked_at.desc(), BATCHES.c.batch_id.desc())
            .offset(len(batches) // 2)
            .limit(1)
        ).one()
    rng = random.Random(2)
    return {
        "batches": rng.sample(batches, 50),
        "results": rng.sample(results, 50),
        "deliveries": rng.sample(deliveries, 50),
        "batch_cursor": encode_cursor(middle[0], middle[1]),
        "delivery_cursor": encode_cursor(sorted(deliveries)[len(deliveries) // 2]),
    }


def pages(s: dict[str, Any]) -> list[tuple[str, Callable[[int], str]]]:
    b, r, d = s["batches"], s["results"], s["deliveries"]
    return [
        ("GET /healthz (baseline)", lambda i: "/healthz"),
        ("overview", lambda i: "/ui/"),
        ("overview, mid-list cursor", lambda i: f"/ui/?after={s['batch_cursor']}"),
        ("overview ?status=failed", lambda i: "/ui/?status=failed"),
        ("overview ?job=", lambda i: "/ui/?job=job-000"),
        ("batch", lambda i: f"/ui/batches/{b[i % len(b)]}"),
        ("batch ?status=failed", lambda i: f"/ui/batches/{b[i % len(b)]}?status=failed"),
        ("result", lambda i: f"/ui/results/{r[i % len(r)]}"),
        ("deliveries", lambda i: "/ui/deliveries"),
        ("deliveries, mid-list cursor", lambda i: f"/ui/deliveries?before={s['delivery_cursor']}"),
        ("deliveries ?outcome=stored-unparsed", lambda i: "/ui/deliveries?outcome=stored-unparsed"),
        ("deliveries ?event=score.failed", lambda i: "/ui/deliveries?event=score.failed"),
        ("deliveries ?scoring_job=", lambda i: f"/ui/deliveries?scoring_job={r[i % len(r)]}"),
        ("delivery", lambda i: f"/ui/deliveries/{d[i % len(d)]}"),
    ]


def measure(base_url: str, s: dict[str, Any], *, requests: int) -> list[dict[str, Any]]:
    token = create_login_token([KEY], session_ttl=timedelta(hours=1), now=datetime.now(UTC))
    rows = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.get(f"/ui/login?token={token}").status_code == 200
        for name, path in pages(s):
            for i in range(3):  # warm-up: connection, template compilation, page cache
                client.get(path(i))
            times = []
            for i in range(requests):
                started = time.perf_counter()
                response = client.get(path(i))
                times.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
            rows.append(
                {
                    "page": name,
                    "p50_ms": percentile(times, 50),
                    "p95_ms": percentile(times, 95),
                    "max_ms": max(times),
                    "bytes": len(response.content),
                }
            )
    return rows


def screenshot(path: Path, *, width: int = 1024) -> None:
    """The README's picture: a small database with one batch of each state but
    unreachable, the overview at laptop width in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as tmp:
        url = migrated_sqlite(Path(tmp) / "shot.db")
        engine = make_engine(url)
        populate(engine, results=125, jobs=2, now=datetime.now(UTC), seed=5)
        with engine.begin() as conn:
            newest = [
                row[0]
                for row in conn.execute(
                    sa.select(BATCHES.c.batch_id).order_by(BATCHES.c.tracked_at.desc()).limit(2)
                )
            ]
            # The newest batch lost four webhooks and awaits reconcile: gaps.
            lost = sa.select(JOBS.c.scoring_job_id).where(JOBS.c.batch_id == newest[0]).limit(4)
            conn.execute(sa.delete(JOBS).where(JOBS.c.scoring_job_id.in_(lost)))
            conn.execute(
                sa.update(BATCHES)
                .where(BATCHES.c.batch_id == newest[0])
                .values(due=True, last_reconciled_at=None)
            )
            # The one before is still scoring at Nova: due.
            conn.execute(
                sa.update(BATCHES)
                .where(BATCHES.c.batch_id == newest[1])
                .values(
                    status="pending",
                    nova_status="processing",
                    completed_jobs=None,
                    failed_jobs=None,
                    due=True,
                    last_reconciled_at=None,
                )
            )
            conn.execute(
                sa.update(JOBS)
                .where(JOBS.c.batch_id == newest[1], JOBS.c.application_id > "app-000030")
                .values(status="pending", score=None, verdict=None)
            )
        engine.dispose()
        env = clean_env(
            NOVA_WEBHOOK_SECRETS=SECRET, DATABASE_URL=url, SINK_SECRET_KEY=KEY, LOG_LEVEL="warning"
        )
        server = start_uvicorn(
            "receiver.app:create_app", port=free_port(), log_path=Path(tmp) / "s.log", env=env
        )
        try:
            server.wait_ready()
            token = create_login_token([KEY], session_ttl=timedelta(hours=1), now=datetime.now(UTC))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": width, "height": 800})
                page.goto(login_url(server.base_url, token))
                page.wait_for_url("**/ui/")
                page.screenshot(path=str(path), full_page=True)
                browser.close()
        finally:
            server.stop()
    print(f"{path}: {path.stat().st_size:,} bytes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 results, 20 requests")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--results", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=20, help="Nova jobs the batches spread over")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--postgres", action="store_true", help="127.0.0.1:5432, database test")
    parser.add_argument("--screenshot", type=Path, help="only write the README's overview PNG")
    args = parser.parse_args()
    if args.screenshot is not None:
        screenshot(args.screenshot.resolve())
        return 0
    results = args.results or (20_000 if args.quick else 100_000)
    requests = args.requests or (20 if args.quick else 50)
    with (
        tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp,
        database(Path(tmp), postgres=args.postgres) as url,
    ):
        workdir = Path(tmp)
        engine = make_engine(url)
        started = time.perf_counter()
        populate(engine, results=results, jobs=args.jobs, now=datetime.now(UTC))
        built = time.perf_counter() - started
        s = sample(engine)
        engine.dispose()
        port = free_port()
        env = clean_env(
            NOVA_WEBHOOK_SECRETS=SECRET,
            DATABASE_URL=url,
            SINK_SECRET_KEY=KEY,
            LOG_LEVEL="warning",
            LOG_FORMAT="json",
        )
        server = start_uvicorn(
            "receiver.app:create_app", port=port, log_path=workdir / "server.log", env=env
        )
        try:
            server.wait_ready()
            rows = measure(server.base_url, s, requests=requests)
        finally:
            server.stop()
    report = {
        "machine": machine(),
        "database": "postgresql" if args.postgres else "sqlite",
        "results": results,
        "batches": results // BATCH_SIZE,
        "jobs": args.jobs,
        "deliveries": results,
        "requests_per_page": requests,
        "build_seconds": round(built, 1),
        "pages": rows,
        "target_ms": TARGET_MS,
        "all_pages_p95_under_target": all(
            row["p95_ms"] < TARGET_MS
            for row in rows
            if row["page"].startswith(("overview", "batch", "result", "deliver"))
        ),
    }
    if args.json:
        dump_json(report)
        return 0
    print(
        f"{report['database']}: {results:,} results in {results // BATCH_SIZE:,} batches over "
        f"{args.jobs} jobs, {results:,} deliveries in the last 24 h (built in {built:.1f} s); "
        f"{requests} sequential requests per page after 3 warm-ups"
    )
    print(
        table(
            [[r["page"], r["p50_ms"], r["p95_ms"], r["max_ms"], r["bytes"]] for r in rows],
            ["page", "p50 ms", "p95 ms", "max ms", "bytes"],
        )
    )
    verdict = "yes" if report["all_pages_p95_under_target"] else "NO"
    print(f"every page p95 < {TARGET_MS:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
