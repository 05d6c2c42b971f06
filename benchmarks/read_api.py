"""Read API on a large store: keyset pages and the change feed stay fast at any depth.

Builds a SQLite file with N results (default 100,000; ``--quick`` 20,000) in 400 batches,
each logged in the change feed, plus one update for every tenth result (a second change),
and deliveries for a tenth of them. Then times requests through the real app
(``create_app`` in-process, Starlette's TestClient: no network) against the same-run
baseline ``GET /healthz``, and reports medians. Deep pages are reached with the cursor of
the page before (what a client does), so their cost is the cost of one keyset query.

    uv run python benchmarks/read_api.py [--quick] [--json] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import dump_json, machine, table

from receiver.app import create_app
from receiver.settings import Settings
from receiver.tokens import create_token
from storage import schema
from storage.db import make_engine, transaction
from storage.records import BatchState, InboundDelivery, ScoringResult
from storage.store import ResultChange

KEY = "benchmark-read-key-0123456789"
SECRET = "whsec_benchmark_read_api_0123456789"  # noqa: S105 - the benchmark's own
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GROUP = 1000


def result(n: int, status: str = "completed") -> ScoringResult:
    return ScoringResult(
        scoring_job_id=f"sj_{n:07d}",
        status=status,  # type: ignore[arg-type]
        job_id=f"job-{n % 7}",
        application_id=f"app-{n:07d}",
        batch_id=f"batch-{n % 400:03d}",
        score=n % 11 if status == "completed" else None,
        verdict="benchmark" if status == "completed" else None,
        completed_at=T0 + timedelta(seconds=n) if status == "completed" else None,
        failed_at=T0 + timedelta(seconds=n) if status == "failed" else None,
    )


def build(url: str, count: int) -> None:
    engine = make_engine(url, synchronous="NORMAL")
    schema.upgrade(engine)
    try:
        with transaction(engine) as store:
            for b in range(400):
                state = BatchState(f"batch-{b:03d}", f"job-{b % 7}", status="completed")
                store.track_batch(state, now=T0 + timedelta(seconds=b))
        for start in range(0, count, GROUP):
            now = T0 + timedelta(seconds=start)
            batch = [result(n, "failed") for n in range(start, min(start + GROUP, count))]
            with transaction(engine) as store:
                created = store.insert_new_results(batch, source="webhook", now=now, delivered=True)
                store.log_changes([ResultChange(i, "created") for i in sorted(created)], now=now)
                for n in range(start, min(start + GROUP, count), 10):
                    store.record_delivery(
                        InboundDelivery(f"msg_{n}", f"msg_{n}", "score.failed", b"{}", "b", "fp"),
                        outcome="applied",
                        now=now,
                    )
        for start in range(0, count, GROUP * 10):
            now = T0 + timedelta(days=1, seconds=start)
            with transaction(engine) as store:
                changes = []
                for n in range(start, min(start + GROUP * 10, count), 10):
                    store.apply_result(result(n), source="reconcile", now=now)
                    changes.append(ResultChange(f"sj_{n:07d}", "updated"))
                store.log_changes(changes, now=now)
    finally:
        engine.dispose()


def timed(client: Any, path: str, params: dict[str, Any], runs: int) -> tuple[float, Any]:
    samples = []
    body: Any = None
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path} {params}: {answer.status_code} {answer.text}")
        body = answer.json()
    return statistics.median(samples), body


def deep_cursor(client: Any, path: str, pages: int, limit: int) -> str:
    """The cursor after ``pages`` pages, reached page by page like a client would."""
    cursor = None
    for _ in range(pages):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["after"] = cursor
        cursor = client.get(path, params=params).json()["next"]
    assert cursor is not None
    return str(cursor)


def measure(url: str, count: int, runs: int) -> list[dict[str, Any]]:
    from starlette.testclient import TestClient

    engine = make_engine(url)
    settings = Settings(
        _env_file=None, nova_webhook_secrets=SECRET, database_url=url, sink_secret_key=KEY
    )
    token = create_token(KEY, scope="read", ttl=timedelta(hours=1))
    rows = []
    with TestClient(create_app(settings, engine=engine)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        deep_results = deep_cursor(client, "/api/results", count // 1000 - 1, 1000)
        middle = deep_cursor(client, "/api/changes", count // 2000, 1000)
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("baseline /healthz", "/healthz", {}),
            ("results, first page of 50", "/api/results", {}),
            ("results, page of 1000", "/api/results", {"limit": 1000}),
            ("results, page after the last-but-one", "/api/results", {"after": deep_results}),
            ("results, one batch", "/api/results", {"batch": "batch-123"}),
            ("results, since 1h (none)", "/api/results", {"since": "1h"}),
            ("batches, first page", "/api/batches", {}),
            ("deliveries, first page", "/api/deliveries", {}),
            ("changes, from the start", "/api/changes", {"limit": 1000}),
            ("changes, from the middle", "/api/changes", {"limit": 1000, "after": middle}),
            ("changes, after=now", "/api/changes", {"after": "now"}),
            ("changes, one batch", "/api/changes", {"batch": "batch-123"}),
            ("changes, status=pending (none)", "/api/changes", {"status": "pending"}),
        ]
        for name, path, params in cases:
            ms, body = timed(client, path, params, runs)
            shown = len(body["data"]) if isinstance(body, dict) and "data" in body else "-"
            rows.append({"request": name, "median ms": round(ms, 2), "rows": shown})
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--results", type=int, default=None)
    args = parser.parse_args()
    count = args.results or (20_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'read.db'}"
        started = time.perf_counter()
        build(url, count)
        built = time.perf_counter() - started
        rows = measure(url, count, args.runs)
    if args.json:
        dump_json({"machine": machine(), "results": count, "rows": rows})
        return
    print(f"read API on {count:,} results ({count + count // 10:,} changes), SQLite")
    print(f"machine: {machine()}; built in {built:.1f} s; median of {args.runs} requests")
    print()
    columns = ["request", "median ms", "rows"]
    print(table([[row[c] for c in columns] for row in rows], columns))


if __name__ == "__main__":
    main()
