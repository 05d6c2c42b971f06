"""Fallback ingest benchmark (Python load generator), for a machine without ``wrk``.

``benchmarks/ingest.py`` (wrk) is the benchmark of record; this one caps at what one Python
load-generator process can send (~1,100 req/s on 2 cores), which flatters the ratio.

Both apps run under the same real uvicorn (a subprocess: 1 process, ``--factory``, the
same loop/http implementation, no access log, log level warning):

- ``receiver``  ``receiver.app:create_app`` on a fresh migrated SQLite file (FULL sync);
- ``bare``      ``benchmarks/_bare_app.py``: reads the body, answers 200 (the baseline).

The load generator is a separate process: one ``httpx.AsyncClient`` with N keep-alive
connections and N workers, bodies signed before the clock starts, a warm-up, then a fixed
duration. After each receiver run the server is stopped (it drains) and the rows in
``scoring_job`` are counted: they must equal the 200 answers (warm-up included). Any
mismatch is printed loudly and makes the exit code 1.

    uv run python benchmarks/ingest_httpx.py [--quick] [--json] [--connections 16 64]
    uv run python benchmarks/ingest_httpx.py --memory [--quick]   # RSS after 10k vs after N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
    percentile,
    rss_mb,
    start_uvicorn,
    table,
    uvicorn_impl,
)
from _wrk import SECRET, signed_delivery

from receiver.demo import free_port

PATH = "/webhooks/nova"
TARGET_RATIO = 0.5
TARGET_P99_MS_AT_16 = 10.0
MEMORY_TARGET_MB = 30.0
APPS = {"bare": "_bare_app:create_app", "receiver": "receiver.app:create_app"}


# ---- the load generator (a separate process) ------------------------------------------------


def make_pool(prefix: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [signed_delivery(prefix, n, stamp) for n in range(count)]


async def blast(
    clients: list[httpx.AsyncClient],
    pool: list[tuple[bytes, dict[str, str]]],
    connections: int,
    deadline: float | None,
) -> dict[str, Any]:
    """Send ``pool`` with ``connections`` workers until it is used up or ``deadline``."""
    indexes = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            i = next(indexes)
            if i >= len(pool) or (deadline is not None and time.perf_counter() >= deadline):
                return
            body, headers = pool[i]
            started = time.perf_counter()
            try:
                response = await client.post(PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(connections):
            group.create_task(worker(clients[n % len(clients)]))
    elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "statuses": statuses,
        "errors": errors,
        "exhausted": next(indexes) > len(pool),
    }


async def loadgen(cfg: dict[str, Any]) -> dict[str, Any]:
    connections = cfg["connections"]
    # One client (and pool) per connection: httpx's pool scans its connections on every
    # request, so one pool of 64 costs the load generator far more CPU than 64 pools of 1.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    out: dict[str, Any] = {"connections": connections}
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=cfg["url"], limits=limits, timeout=30.0)
            )
            for _ in range(connections)
        ]
        if cfg.get("count"):  # fixed-count mode (memory check): sign and send in chunks
            ok, sent, chunk = 0, 0, 10_000
            while sent < cfg["count"]:
                size = min(chunk, cfg["count"] - sent)
                pool = make_pool(f"{cfg['prefix']}-{sent:08d}", size)
                res = await blast(clients, pool, connections, None)
                ok += res["statuses"].get(200, 0)
                sent += size
            out.update(ok=ok, sent=sent)
            return out
        warmup_pool = make_pool(cfg["prefix"] + "-w", cfg["warmup"])
        warm = await blast(clients, warmup_pool, connections, None)
        # Enough bodies for a fast server; running out is reported, not hidden.
        pool = make_pool(cfg["prefix"] + "-t", int(cfg["pool_rate"] * cfg["duration"]))
        cpu_before = cpu_seconds(cfg["server_pid"])
        own_cpu_before = time.process_time()
        res = await blast(clients, pool, connections, time.perf_counter() + cfg["duration"])
        server_cpu = cpu_seconds(cfg["server_pid"]) - cpu_before
        own_cpu = time.process_time() - own_cpu_before
    lat = res["latencies"]
    ok = res["statuses"].get(200, 0)
    out.update(
        warmup_ok=warm["statuses"].get(200, 0),
        warmup_statuses={str(k): v for k, v in warm["statuses"].items()},
        ok=ok,
        statuses={str(k): v for k, v in res["statuses"].items()},
        errors=dict(res["errors"]) | {f"warmup_{k}": v for k, v in warm["errors"].items()},
        seconds=res["elapsed"],
        rps=ok / res["elapsed"],
        p50_ms=percentile(lat, 50) * 1000,
        p99_ms=percentile(lat, 99) * 1000,
        max_ms=max(lat, default=float("nan")) * 1000,
        pool_exhausted=res["exhausted"],
        server_cpu_s=server_cpu,
        server_cpu_us_per_req=server_cpu / ok * 1e6 if ok else float("nan"),
        loadgen_cpu_s=own_cpu,
    )
    return out


def run_loadgen(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator in its own process; returns its JSON answer."""
    done = subprocess.run(
        [PYTHON, __file__, "--loadgen", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---- servers ------------------------------------------------------------------------------


def start_app(kind: str, workdir: Path, tag: str) -> tuple[Proc, str | None]:
    url = None
    env = clean_env(LOG_LEVEL="warning", LOG_FORMAT="json")
    if kind == "receiver":
        url = migrated_sqlite(workdir / f"ingest-{tag}.db")
        env.update(NOVA_WEBHOOK_SECRETS=SECRET, DATABASE_URL=url)
    port = free_port()
    proc = start_uvicorn(APPS[kind], port=port, log_path=workdir / f"{kind}-{tag}.log", env=env)
    proc.wait_ready("/healthz")
    return proc, url


def count_rows(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
                for table in ("scoring_job", "delivery")
            }
    finally:
        engine.dispose()


def one_run(kind: str, connections: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tag = f"c{connections}-{time.monotonic_ns()}"
    proc, url = start_app(kind, workdir, tag)
    try:
        result = run_loadgen(
            {
                "url": proc.base_url,
                "connections": connections,
                "duration": args.duration,
                "warmup": args.warmup,
                "pool_rate": args.pool_rate,
                "prefix": f"sj-{tag}",
                "server_pid": proc.pid,
            }
        )
        result["server_rss_mb"] = rss_mb(proc.pid)
    finally:
        exit_code = proc.stop()
    result.update(app=kind, server_exit=exit_code, log_bytes=proc.log_path.stat().st_size)
    if url is not None:
        rows = count_rows(url)
        acked = result["ok"] + result["warmup_ok"]
        result.update(rows=rows, acked=acked, durable=rows["scoring_job"] == acked)
    return result


def memory_check(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    total = args.memory_total or (50_000 if args.quick else 200_000)
    proc, url = start_app("receiver", workdir, "memory")
    try:
        cfg = {"url": proc.base_url, "connections": 16, "server_pid": proc.pid}
        first = run_loadgen(cfg | {"count": 10_000, "prefix": "mem-a"})
        rss_10k = rss_mb(proc.pid)
        started = time.perf_counter()
        rest = run_loadgen(cfg | {"count": total - 10_000, "prefix": "mem-b"})
        seconds = time.perf_counter() - started
        rss_n = rss_mb(proc.pid)
    finally:
        proc.stop()
    assert url is not None
    rows = count_rows(url)
    acked = first["ok"] + rest["ok"]
    growth = rss_n - rss_10k
    per_million = growth / (total - 10_000) * 990_000
    return {
        "deliveries": total,
        "rss_after_10k_mb": rss_10k,
        f"rss_after_{total}_mb": rss_n,
        "growth_mb": growth,
        "growth_extrapolated_to_1m_mb": per_million,
        "target_mb_at_1m": MEMORY_TARGET_MB,
        "rows": rows,
        "acked": acked,
        "durable": rows["scoring_job"] == acked,
        "rate_during_rest": rest["ok"] / seconds,
    }


# ---- report -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    loop, http = uvicorn_impl()
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "machine": machine(),
        "uvicorn": {"loop": loop, "http": http, "workers": 1, "access_log": False},
        "duration_s": args.duration,
        "runs": [],
        "comparisons": [],
    }
    with tempfile.TemporaryDirectory(prefix="nova-bench-ingest-") as tmp:
        workdir = Path(tmp)
        if args.memory:
            result["memory"] = memory_check(args, workdir)
            return result
        for connections in args.connections:
            for _ in range(args.rounds):
                bare = one_run("bare", connections, args, workdir)
                recv = one_run("receiver", connections, args, workdir)
                result["runs"] += [bare, recv]
                result["comparisons"].append(
                    {
                        "connections": connections,
                        "bare_rps": bare["rps"],
                        "receiver_rps": recv["rps"],
                        "ratio": recv["rps"] / bare["rps"] if bare["rps"] else float("nan"),
                        "receiver_p50_ms": recv["p50_ms"],
                        "receiver_p99_ms": recv["p99_ms"],
                        "cpu_ratio": bare["server_cpu_us_per_req"] / recv["server_cpu_us_per_req"],
                        "durable": recv["durable"],
                    }
                )
    return result


def report(result: dict[str, Any]) -> None:
    print("ingest benchmark: signed unique score.completed deliveries -> SQLite (FULL sync)")
    print(f"machine: {result['machine']}")
    print(f"uvicorn: {result['uvicorn']}")
    if "memory" in result:
        mem = result["memory"]
        print()
        print(f"memory: {mem['deliveries']:,} deliveries at 16 connections")
        for key, value in mem.items():
            print(f"  {key}: {value:.1f}" if isinstance(value, float) else f"  {key}: {value}")
        verdict = "PASS" if mem["growth_extrapolated_to_1m_mb"] <= MEMORY_TARGET_MB else "MISS"
        print(f"  -> growth extrapolated to 1M: {mem['growth_extrapolated_to_1m_mb']:.1f} MB "
              f"(target <= {MEMORY_TARGET_MB:.0f} MB, linear extrapolation) {verdict}")  # fmt: skip
        if not mem["durable"]:
            print(f"!!! DURABILITY FAILURE: {mem['rows']} rows vs {mem['acked']} acknowledged !!!")
        return
    print(f"{result['duration_s']} s per run, after a warm-up; latency measured by the client")
    print()
    rows = [
        [
            r["app"], r["connections"], r["ok"], r["rps"], r["p50_ms"], r["p99_ms"],
            r["max_ms"], r["server_cpu_us_per_req"], r["loadgen_cpu_s"], r["server_rss_mb"],
            sum(int(v) for k, v in r["statuses"].items() if k != "200") + sum(r["errors"].values()),
            "yes" if r["pool_exhausted"] else "",
        ]
        for r in result["runs"]
    ]  # fmt: skip
    headers = ["app", "conns", "200s", "req/s", "p50 ms", "p99 ms", "max ms",
               "server CPU us/req", "loadgen CPU s", "RSS MB", "non-200", "pool out"]  # fmt: skip
    print(table(rows, headers))
    print()
    rows = [
        [
            c["connections"], c["bare_rps"], c["receiver_rps"], c["ratio"], c["cpu_ratio"],
            c["receiver_p99_ms"],
            "PASS" if c["ratio"] >= TARGET_RATIO else "MISS",
            ("PASS" if c["receiver_p99_ms"] <= TARGET_P99_MS_AT_16 else "MISS")
            if c["connections"] == 16 else "-",
            "yes" if c["durable"] else "NO",
        ]
        for c in result["comparisons"]
    ]  # fmt: skip
    headers = ["conns", "bare req/s", "receiver req/s", "ratio", "CPU/req ratio",
               "receiver p99 ms", f"ratio>={TARGET_RATIO}", f"p99<={TARGET_P99_MS_AT_16:g}ms",
               "rows==acks"]  # fmt: skip
    print(table(rows, headers))
    for r in result["runs"]:
        if r["app"] == "receiver" and not r["durable"]:
            print(
                f"!!! DURABILITY FAILURE at {r['connections']} connections: "
                f"{r['rows']['scoring_job']} scoring_job rows vs {r['acked']} 200 answers !!!"
            )
    for r in result["runs"]:
        if r["app"] == "receiver":
            print(f"receiver c={r['connections']}: rows {r['rows']}, acked {r['acked']}, "
                  f"server log {r['log_bytes']:,} bytes, exit {r['server_exit']}")  # fmt: skip
    print()
    print("CPU/req ratio = bare server CPU per request / receiver server CPU per request: less")
    print("sensitive to the shared machine than req/s (the load generator shares the 2 cores).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs (default 5 s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=1, help="bare/receiver pairs per level")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests per run")
    parser.add_argument("--pool-rate", type=float, default=5000.0,
                        help="pre-signed bodies per second of duration")  # fmt: skip
    parser.add_argument(
        "--memory", action="store_true", help="RSS after 10k vs N deliveries (200k; quick 50k)"
    )
    parser.add_argument("--memory-total", type=int, default=None)
    parser.add_argument("--loadgen", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen is not None:
        print(json.dumps(asyncio.run(loadgen(json.loads(args.loadgen)))))
        return 0
    if args.duration is None:
        args.duration = 2.0 if args.quick else 5.0
    if args.warmup is None:
        args.warmup = 200 if args.quick else 500
    result = run(args)
    if args.json:
        dump_json(result)
    else:
        report(result)
    if "memory" in result:
        return 0 if result["memory"]["durable"] else 1
    return 0 if all(c["durable"] for c in result["comparisons"]) else 1


if __name__ == "__main__":
    sys.exit(main())
