"""Reconcile throughput: 10,000 scoring jobs in 400 batches, every webhook lost.

Fake Nova runs under a real uvicorn in its own process (so client and server do not share
one event loop or core), with every job already terminal (``score_delay=0``) and no
webhook delivery at all. For each concurrency level a fresh SQLite database tracks the 400
batches (as ``submit`` would) and one ``Reconciler.run()`` is timed. Same-run baseline:
plain httpx GETs of the same 400 batch-status bodies at the same concurrency (the raw
fetch floor). Then convergence is checked field by field against ``GET /_fake/truth`` and
a second run must change nothing.

    uv run python benchmarks/reconcile.py [--quick] [--json] [--concurrency 8 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    PYTHON,
    Proc,
    clean_env,
    cpu_seconds,
    dump_json,
    machine,
    migrated_sqlite,
    start_process,
    table,
    uvicorn_impl,
)

from receiver.serving import free_port

TENANT = "tenant-bench"
API_KEY = "sk_test_bench"
TARGET_SECONDS = 10.0
DEFAULT_RATE_LIMIT = 15.0  # NOVA_RATE_LIMIT's default


# ---- the fake Nova server process ---------------------------------------------------------


def serve_fake(port: int, batches: int, jobs: int) -> None:
    """Child process: create the batches, then serve fake Nova until SIGTERM."""
    import uvicorn

    from receiver.fake_nova import FakeNovaConfig, create_fake_nova

    # deliver_to=None: no webhook is ever sent (the "all dropped" worst case for reconcile).
    fake = create_fake_nova(FakeNovaConfig(seed=42, score_delay=0.0, deliver_to=None))
    fake.state.create_batches(batches, jobs, tenant_id=TENANT)
    loop, http = uvicorn_impl()
    config = uvicorn.Config(
        fake.app,
        host="127.0.0.1",
        port=port,
        loop=loop,
        http=http,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


def start_fake(workdir: Path, batches: int, jobs: int) -> Proc:
    port = free_port()
    argv = [PYTHON, __file__, "--serve-fake", str(port), "--batches", str(batches),
            "--jobs", str(jobs)]  # fmt: skip
    proc = start_process(argv, port=port, log_path=workdir / "fake-nova.log", env=clean_env())
    proc.wait_ready("/_fake/stats")
    return proc


# ---- local store helpers ------------------------------------------------------------------


def track(url: str, truth: dict[str, Any]) -> None:
    """Track every batch of ``truth`` as just submitted: pending, due, no results yet."""
    from storage.db import make_engine, transaction
    from storage.records import BatchState

    engine = make_engine(url)
    now = datetime.now(UTC)
    try:
        with transaction(engine) as store:
            for entry in truth["batches"]:
                batch = entry["batch"]
                state = BatchState(
                    batch_id=batch["id"],
                    job_id=batch["jobId"],
                    tenant_id=entry["tenantId"],
                    api="v1",
                    status="pending",
                    total_jobs=batch["totalJobs"],
                )
                store.track_batch(state, now=now)
    finally:
        engine.dispose()


def local_view(engine: Any) -> tuple[dict[str, Any], dict[str, set[str]]]:
    from storage.db import transaction

    with transaction(engine, write=False) as store:
        return store.snapshot()


# ---- measurements -------------------------------------------------------------------------


async def raw_fetch(base_url: str, paths: list[str], concurrency: int) -> dict[str, Any]:
    """The floor: GET every batch body with plain httpx, same concurrency, no parsing."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Tenant-Id": TENANT}
    total_bytes = 0

    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:

        async def one(path: str) -> None:
            nonlocal total_bytes
            async with semaphore:
                response = await http.get(path, headers=headers)
                response.raise_for_status()
                total_bytes += len(response.content)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for path in paths:
                group.create_task(one(path))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "requests": len(paths), "bytes": total_bytes}


async def reconcile_once(
    url: str, base_url: str, concurrency: int, rate_limit: float
) -> tuple[Any, float]:
    from receiver.nova import NovaClient, build_http_client
    from receiver.reconcile import Reconciler
    from storage.db import make_engine

    engine = make_engine(url)
    try:
        async with build_http_client(base_url) as http:
            client = NovaClient(http, api_key=API_KEY, tenant_id=TENANT, rate_limit=rate_limit)
            reconciler = Reconciler(
                engine, client, now=lambda: datetime.now(UTC), concurrency=concurrency
            )
            started = time.perf_counter()
            summary = await reconciler.run()
            elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    return summary, elapsed


def verify(url: str, truth: dict[str, Any]) -> tuple[bool, int, int]:
    from receiver.convergence import compare
    from storage.db import make_engine

    engine = make_engine(url)
    try:
        results, rejected = local_view(engine)
    finally:
        engine.dispose()
    comparison = compare(truth, results, rejected)
    return comparison.converged, len(comparison.mismatches), len(results)


async def one_level(
    workdir: Path, fake: Proc, truth: dict[str, Any], concurrency: int, rate_limit: float
) -> dict[str, Any]:
    url = migrated_sqlite(workdir / f"reconcile-c{concurrency}.db")
    await asyncio.to_thread(track, url, truth)
    paths = [
        f"/v1/jobs/{e['batch']['jobId']}/scoring-batches/{e['batch']['id']}"
        for e in truth["batches"]
    ]
    floor = await raw_fetch(fake.base_url, paths, concurrency)
    server_cpu_before = cpu_seconds(fake.pid)
    client_cpu_before = time.process_time()
    try:
        summary, elapsed = await reconcile_once(url, fake.base_url, concurrency, rate_limit)
    except Exception as exc:  # noqa: BLE001 - a failed run is a result to report, not a crash
        return _failed_level(concurrency, rate_limit, floor, exc)
    client_cpu = time.process_time() - client_cpu_before
    server_cpu = cpu_seconds(fake.pid) - server_cpu_before
    converged, mismatches, stored = await asyncio.to_thread(verify, url, truth)
    second, second_elapsed = await reconcile_once(url, fake.base_url, concurrency, rate_limit)
    second_changes = (
        second.results_added + second.results_updated + second.results_enriched
        + second.rejected_recorded
    )  # fmt: skip
    jobs = sum(len(e["scoringJobs"]) for e in truth["batches"])
    return {
        "concurrency": concurrency,
        "rate_limit": rate_limit,
        "jobs": jobs,
        "batches": len(truth["batches"]),
        "seconds": elapsed,
        "jobs_per_s": jobs / elapsed,
        "requests": summary.requests,
        "results_added": summary.results_added,
        "errors": dict(summary.errors),
        "gaps_remaining": summary.gaps_remaining,
        "summary_converged": summary.converged,
        "converged_vs_truth": converged,
        "mismatches": mismatches,
        "rows_stored": stored,
        "second_run_changes": second_changes,
        "second_run_batches_checked": second.batches_checked,
        "second_run_seconds": second_elapsed,
        "floor_seconds": floor["seconds"],
        "floor_bytes": floor["bytes"],
        "ratio_floor_over_reconcile": floor["seconds"] / elapsed,
        "slowdown_vs_floor": elapsed / floor["seconds"],
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "under_target": elapsed < TARGET_SECONDS,
    }


def _failed_level(
    concurrency: int, rate_limit: float, floor: dict[str, Any], exc: BaseException
) -> dict[str, Any]:
    leaves: list[BaseException] = [exc]
    while any(isinstance(e, BaseExceptionGroup) for e in leaves):
        leaves = [
            x for e in leaves for x in (e.exceptions if isinstance(e, BaseExceptionGroup) else [e])
        ]
    return {
        "concurrency": concurrency,
        "rate_limit": rate_limit,
        "failed": f"{type(leaves[0]).__name__}: {leaves[0]}",
        "floor_seconds": floor["seconds"],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nova-bench-reconcile-") as tmp:
        workdir = Path(tmp)
        fake = start_fake(workdir, args.batches, args.jobs)
        try:
            async with httpx.AsyncClient(base_url=fake.base_url, timeout=60) as http:
                truth = (await http.get("/_fake/truth")).json()
            levels = [
                await one_level(workdir, fake, truth, c, args.rate_limit) for c in args.concurrency
            ]
        finally:
            fake.stop()
    requests = args.batches
    return {
        "benchmark": "reconcile",
        "machine": machine(),
        "batches": args.batches,
        "jobs_per_batch": args.jobs,
        "target_seconds": TARGET_SECONDS,
        "levels": levels,
        "note_default_rate_limit": {
            "nova_rate_limit": DEFAULT_RATE_LIMIT,
            "requests": requests,
            "floor_seconds": requests / DEFAULT_RATE_LIMIT,
        },
    }


def report(result: dict[str, Any]) -> None:
    jobs = result["batches"] * result["jobs_per_batch"]
    print(f"reconcile benchmark: {jobs:,} scoring jobs in {result['batches']} batches, "
          f"all terminal, no webhooks delivered")  # fmt: skip
    print(f"machine: {result['machine']}")
    print()
    rows = [
        [
            lv["concurrency"], lv["rate_limit"], lv["seconds"], lv["jobs_per_s"], lv["requests"],
            lv["floor_seconds"], lv["slowdown_vs_floor"], lv["client_cpu_s"], lv["server_cpu_s"],
            "yes" if lv["converged_vs_truth"] else f"NO ({lv['mismatches']} mismatches)",
            lv["second_run_changes"],
        ]
        for lv in result["levels"]
        if "failed" not in lv
    ]  # fmt: skip
    headers = ["concurrency", "rate limit/s", "seconds", "jobs/s", "requests", "floor s",
               "x floor", "client CPU s", "fake CPU s", "converged", "2nd-run changes"]  # fmt: skip
    print(table(rows, headers))
    print()
    for lv in result["levels"]:
        if "failed" in lv:
            print(f"!!! c={lv['concurrency']}: RUN FAILED: {lv['failed']} "
                  f"(floor was {lv['floor_seconds']:.2f} s) !!!")  # fmt: skip
            continue
        ok = lv["converged_vs_truth"] and lv["second_run_changes"] == 0 and not lv["errors"]
        verdict = "PASS" if lv["under_target"] else "MISS"
        print(f"c={lv['concurrency']}: {lv['seconds']:.2f} s vs target < {TARGET_SECONDS:.0f} s "
              f"-> {verdict}; floor/reconcile ratio {lv['ratio_floor_over_reconcile']:.2f}; "
              f"rows {lv['rows_stored']:,}; errors {lv['errors'] or 'none'}; "
              f"correctness {'OK' if ok else 'FAILED'}")  # fmt: skip
        if not ok:
            print("!!! CORRECTNESS FAILURE: the store does not equal fake Nova's truth, or a "
                  "second run changed something !!!")  # fmt: skip
    note = result["note_default_rate_limit"]
    print()
    print(
        f"note: at the default NOVA_RATE_LIMIT={note['nova_rate_limit']:g}/s the "
        f"{note['requests']} batch GETs alone take >= {note['floor_seconds']:.1f} s "
        "(the token bucket spaces requests 1/rate apart), whatever the concurrency."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 batches instead of 400")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rate-limit", type=float, default=1000.0,
                        help="NovaClient rate limit (req/s; 0 disables it; 1000 = the max "
                             "NOVA_RATE_LIMIT accepts)")  # fmt: skip
    parser.add_argument("--batches", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--serve-fake", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batches is None:
        args.batches = 100 if args.quick else 400
    if args.serve_fake is not None:
        serve_fake(args.serve_fake, args.batches, args.jobs)
        return 0
    result = asyncio.run(run(args))
    if args.json:
        dump_json(result)
    else:
        report(result)
    failed = any(
        "failed" in lv or not (lv["converged_vs_truth"] and lv["second_run_changes"] == 0)
        for lv in result["levels"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
