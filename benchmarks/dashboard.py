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
import random
import sys
import tempfile
import time
from collections.abc import Callable
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
from _dashboard_data import BATCH_SIZE, SECRET, database, populate

from receiver.serving import free_port
from receiver.ui.auth import create_login_token, login_url
from storage.db import Engine, make_engine
from storage.store.tables import BATCHES, DELIVERIES, JOBS

KEY = "bench-dashboard-key-0123456789abcdef"
TARGET_MS = 100.0


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
