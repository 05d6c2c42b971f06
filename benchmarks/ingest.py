"""Ingest throughput: signed, unique ``score.completed`` deliveries/s, receiver vs a bare app.

The load generator is ``wrk`` (one thread, a Lua script feeding distinct pre-signed bodies,
each sent once: ``benchmarks/_wrk.py``; installed with apt-get when missing). The receiver
runs as users run it, ``nova-sink serve`` (uvicorn inside; uvloop + httptools, no access
log, log level warning), and every receiver run is followed, in the same round, by a run of
the bare Starlette app (``_bare_app.py``: reads the body, answers 200) under uvicorn with
the same loop and parser, so the ratio compares runs seconds apart on the same loaded
machine.

- databases: a fresh migrated SQLite file (``SQLITE_SYNCHRONOUS=FULL``) and a scratch
  PostgreSQL database on the local server (``synchronous_commit`` on), both per run;
- ``--workers 2``: ``nova-sink serve --workers 2`` vs the bare app under ``uvicorn
  --workers 2``, on each database;
- after each receiver run the server is stopped (it drains) and the ``scoring_job`` rows
  are counted: they must equal the 2xx answers (warm-up included), else exit code 1;
- server CPU per delivery is read from ``/proc`` (the whole process tree).

    uv run python benchmarks/ingest.py [--quick] [--json] [--databases sqlite postgres]
    uv run python benchmarks/ingest.py --memory [--memory-total 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    PYTHON,
    ROOT,
    Proc,
    clean_env,
    dump_json,
    export_tree,
    machine,
    migrate_with,
    migrated_sqlite,
    rss_mb,
    start_process,
    start_uvicorn,
    uvicorn_impl,
)
from _ingest_report import MEMORY_TARGET_MB, report, summarize
from _wrk import SECRET, ensure_wrk, run_wrk, write_pool

from receiver.serving import free_port

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


# ---- databases ----------------------------------------------------------------------------


@contextmanager
def database(kind: str, workdir: Path, tag: str, tree: Path | None = None) -> Iterator[str]:
    """A fresh database for one run, migrated by this code or by ``tree``'s; yields its URL."""
    if kind == "sqlite":
        if tree is None:
            yield migrated_sqlite(workdir / f"ingest-{tag}.db")
        else:
            url = f"sqlite:///{workdir / f'ingest-{tag}.db'}"
            migrate_with(tree, url)
            yield url
        return
    import psycopg

    from storage import schema
    from storage.db import make_engine

    name = f"nova_bench_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{PG_SERVER}/{name}"
    try:
        if tree is None:
            engine = make_engine(url)
            schema.upgrade(engine)
            engine.dispose()
        else:
            migrate_with(tree, url)
        yield url
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def count_rows(url: str) -> int:
    import sqlalchemy as sa

    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM scoring_job")).scalar_one())
    finally:
        engine.dispose()


# ---- servers ------------------------------------------------------------------------------


def start_server(
    kind: str, workers: int, url: str | None, log: Path, tree: Path | None = None
) -> Proc:
    """``kind``: ``receiver`` (this tree), ``base`` (the receiver of ``tree``), ``bare``.

    A receiver runs as users run it, ``nova-sink serve`` (uvicorn inside, with serve's own
    settings: the request-head guard, no ``server`` header); the bare app under uvicorn with
    the same event loop and HTTP parser."""
    env = clean_env(LOG_LEVEL="warning", LOG_FORMAT="json")
    port = free_port()
    if kind != "bare":
        assert url is not None, "a receiver needs a database"
        assert kind == "receiver" or tree is not None, "a base run needs the exported tree"
        root = ROOT if kind == "receiver" else tree
        # -P and PYTHONPATH: the tree's own receiver, whatever is installed in the venv.
        env.update(
            NOVA_WEBHOOK_SECRETS=SECRET, DATABASE_URL=url, SQLITE_SYNCHRONOUS="FULL",
            PYTHONPATH=str(root),
        )  # fmt: skip
        argv = [PYTHON, "-P", "-m", "receiver.cli", "serve", "--port", str(port)]
        proc = start_process(
            [*argv, "--workers", str(workers)], port=port, log_path=log, env=env, cwd=root
        )
    elif workers == 1:
        proc = start_uvicorn("_bare_app:create_app", port=port, log_path=log, env=env)
    else:
        loop, http = uvicorn_impl()
        argv = [
            PYTHON, "-m", "uvicorn", "_bare_app:create_app", "--factory",
            "--app-dir", str(BENCH_DIR), "--port", str(port), "--workers", "2",
            "--loop", loop, "--http", http, "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        proc = start_process(argv, port=port, log_path=log, env=env)
    proc.wait_ready("/healthz")
    return proc


def _proc_stats() -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` of every process, the fields after the command's name."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        stats[int(entry.name)] = raw[raw.rindex(")") + 2 :].split()
    return stats


def tree_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU of ``pid`` and its descendants still alive (with what each reaped),
    by role: ``commit`` for the commit processes (``receiver.commit_process``), ``serving``
    for the rest. The split says which side a change moved the time to."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    stats = {
        process: (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
        for process, fields in _proc_stats().items()
    }
    roles = {"serving": 0.0, "commit": 0.0}
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        roles[_role(current)] += stats.get(current, (0, 0.0))[1]
        frontier += [child for child, (parent, _) in stats.items() if parent == current]
    return roles


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "serving"
    return "commit" if b"receiver.commit_process" in argv else "serving"


def commit_rss_mb(pid: int) -> float:
    """RSS of the commit processes that ``pid`` started (0 when it runs none)."""
    return sum(
        rss_mb(child)
        for child, fields in _proc_stats().items()
        if int(fields[1]) == pid and _role(child) == "commit"
    )


def tree_rss_mb(pid: int) -> float:
    """RSS of the serving process: the worker itself for one worker."""
    return rss_mb(pid)


# ---- one run ------------------------------------------------------------------------------


def one_run(
    kind: str,
    db: str,
    *,
    connections: int,
    workers: int,
    args: argparse.Namespace,
    pools: dict[str, Path],
    workdir: Path,
    tree: Path | None = None,
) -> dict[str, Any]:
    tag = f"{kind}-{db}-c{connections}-w{workers}-{time.monotonic_ns()}"
    log = workdir / f"{tag}.log"
    with contextmanager(_maybe_db)(kind, db, workdir, tag, tree) as url:
        proc = start_server(kind, workers, url, log, tree)
        try:
            warm = run_wrk(
                proc.base_url,
                connections=connections,
                duration=1,
                pool=pools["warm"],
                workdir=workdir,
            )
            cpu_before = tree_cpu_seconds(proc.pid)
            res = run_wrk(
                proc.base_url, connections=connections, duration=args.duration,
                pool=pools["main"], workdir=workdir,
            )  # fmt: skip
            cpu_after = tree_cpu_seconds(proc.pid)
            by_role = {role: cpu_after[role] - cpu_before[role] for role in cpu_after}
            cpu = sum(by_role.values())
            res["server_rss_mb"] = rss_mb(proc.pid)
        finally:
            exit_code = proc.stop()
        res.update(
            app=kind, db=db, connections=connections, workers=workers, server_exit=exit_code,
            warm_ok=warm["ok"], server_cpu_s=cpu,
            cpu_us_per_req=cpu / res["ok"] * 1e6 if res["ok"] else float("nan"),
            commit_cpu_us_per_req=(
                by_role["commit"] / res["ok"] * 1e6 if res["ok"] else float("nan")
            ),
            pool_exhausted=res["requests"] >= args.pool,
            p50_ms=res["p50_us"] / 1000, p99_ms=res["p99_us"] / 1000,
            load_avg_1m=machine()["load_avg_1m"],
        )  # fmt: skip
        if url is not None:
            rows = count_rows(url)
            acked = res["ok"] + warm["ok"]
            # wrk ends a run with requests in flight that the server still commits: every
            # 2xx must be stored, and at most one request per connection more.
            in_flight = 2 * connections * workers
            res.update(rows=rows, acked=acked, durable=acked <= rows <= acked + in_flight)
    return res


def _maybe_db(
    kind: str, db: str, workdir: Path, tag: str, tree: Path | None
) -> Iterator[str | None]:
    if kind == "bare":
        yield None
        return
    with database(db, workdir, tag, tree if kind == "base" else None) as url:
        yield url


def compare(
    bare: dict[str, Any], recv: dict[str, Any], base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The receiver against the bare app of the same round (and the ``--base`` receiver)."""
    against_base = {}
    if base is not None:
        against_base = {
            "base_rps": base["rps"],
            "base_ratio": base["rps"] / bare["rps"] if bare["rps"] else float("nan"),
            "base_p99_ms": base["p99_ms"],
            "base_cpu_us": base["cpu_us_per_req"],
            "speedup": recv["rps"] / base["rps"] if base["rps"] else float("nan"),
            "base_durable": base["durable"],
        }
    return {
        **against_base,
        "db": recv["db"],
        "connections": recv["connections"],
        "workers": recv["workers"],
        "bare_rps": bare["rps"],
        "receiver_rps": recv["rps"],
        "ratio": recv["rps"] / bare["rps"] if bare["rps"] else float("nan"),
        "bare_p99_ms": bare["p99_ms"],
        "receiver_p50_ms": recv["p50_ms"],
        "receiver_p99_ms": recv["p99_ms"],
        "bare_cpu_us": bare["cpu_us_per_req"],
        "receiver_cpu_us": recv["cpu_us_per_req"],
        "durable": recv["durable"],
        "rows": recv["rows"],
        "acked": recv["acked"],
    }


# ---- memory -------------------------------------------------------------------------------


def memory_check(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """RSS of the serving and the commit process after 10,000 and after ``--memory-total``
    deliveries (each body distinct), on the first of ``--databases``."""
    total = args.memory_total
    chunk = 100_000
    db = args.databases[0]
    with database(db, workdir, "memory") as url:
        proc = start_server("receiver", 1, url, workdir / "memory.log")
        acked, sent, started = 0, 0, time.perf_counter()
        rss_10k, commit_10k = 0.0, 0.0
        try:
            while sent < total:
                size = 10_000 if sent == 0 else min(chunk, total - sent)
                pool = write_pool(workdir / "memory.pool", f"mem-{sent:08d}", size)
                target = sent + size

                def pool_used(target: int = target) -> bool:
                    return count_rows(url) >= target - 16  # the last few may be in flight

                res = run_wrk(
                    proc.base_url, connections=16, duration=3600, pool=pool, workdir=workdir,
                    until=pool_used,
                )  # fmt: skip
                acked += res["ok"]
                sent += size
                if size == 10_000 and rss_10k == 0.0:
                    rss_10k, commit_10k = rss_mb(proc.pid), commit_rss_mb(proc.pid)
                print(
                    f"memory: {sent:,} sent, {acked:,} 2xx, RSS {rss_mb(proc.pid):.1f} MB"
                    f" (commit process {commit_rss_mb(proc.pid):.1f} MB)",
                    file=sys.stderr,
                )
            rss_n, commit_n = rss_mb(proc.pid), commit_rss_mb(proc.pid)
        finally:
            proc.stop()
        rows = count_rows(url)
    return {
        "db": db,
        "deliveries": sent,
        "rss_after_10k_mb": rss_10k,
        "rss_after_all_mb": rss_n,
        "commit_rss_after_10k_mb": commit_10k,
        "commit_rss_after_all_mb": commit_n,
        # Both processes: the serving one and the commit process that holds the writer.
        "growth_mb": (rss_n + commit_n) - (rss_10k + commit_10k),
        "target_mb": MEMORY_TARGET_MB,
        "rows": rows,
        "acked": acked,
        "durable": rows >= acked,  # wrk stops mid-flight at the end of a pool: rows may lead
        "seconds": time.perf_counter() - started,
    }


# ---- the benchmark ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_wrk()
    loop, http = uvicorn_impl()
    result: dict[str, Any] = {
        "benchmark": "ingest (wrk)",
        "machine": machine(),
        "uvicorn": {"loop": loop, "http": http, "access_log": False},
        "duration_s": args.duration,
        "runs": [],
        "comparisons": [],
    }
    with tempfile.TemporaryDirectory(prefix="nova-bench-ingest-") as tmp:
        workdir = Path(tmp)
        if args.memory:
            result["memory"] = memory_check(args, workdir)
            return result
        pools = {
            # Nova's scoring job ids grow with time (cuid), so a later delivery's id sorts
            # after every stored one: the warm-up's ids sort before the main run's ("boot" <
            # "main"), or every id-ordered index would take the main run in its middle.
            "warm": write_pool(workdir / "warm.pool", "boot", 2_000),
            "main": write_pool(workdir / "main.pool", "main", args.pool),
        }
        plan = [
            (db, c, 1)
            for db in args.databases
            for c in args.connections
            for _ in range(args.rounds)
        ]
        if args.workers_run:
            plan += [(db, 64, 2) for db in args.databases]
        tree = export_tree(args.base, workdir / "base") if args.base else None
        if tree is not None:
            result["base"] = args.base
        for db, connections, workers in plan:
            setup = {"connections": connections, "workers": workers, "args": args}
            recv = one_run("receiver", db, **setup, pools=pools, workdir=workdir)
            base = None
            if tree is not None and workers == 1:
                base = one_run("base", db, **setup, pools=pools, workdir=workdir, tree=tree)
            bare = one_run("bare", db, **setup, pools=pools, workdir=workdir)
            result["runs"] += [bare, recv] + ([base] if base else [])
            result["comparisons"].append(compare(bare, recv, base))
            c = result["comparisons"][-1]
            vs_base = f", base ratio {c['base_ratio']:.2f}" if base else ""
            print(f"{db} c={connections} w={workers}: ratio {c['ratio']:.2f}{vs_base}, "
                  f"receiver p99 {c['receiver_p99_ms']:.1f} ms, rows {c['rows']} / 2xx "
                  f"{c['acked']}", file=sys.stderr)  # fmt: skip
    result["summary"] = summarize(result["comparisons"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 round")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"],
                        choices=["sqlite", "postgres"])  # fmt: skip
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (8)")
    parser.add_argument("--rounds", type=int, default=None, help="receiver/bare pairs (2)")
    parser.add_argument("--pool", type=int, default=400_000, help="distinct signed bodies")
    parser.add_argument("--no-workers-run", dest="workers_run", action="store_false",
                        help="skip the serve --workers 2 runs")  # fmt: skip
    parser.add_argument("--base", default=None,
                        help="also run the receiver of this git revision in every round "
                             "(before/after, alternating)")  # fmt: skip
    parser.add_argument("--memory", action="store_true",
                        help="RSS after 10k vs --memory-total (first of --databases)")  # fmt: skip
    parser.add_argument("--memory-total", type=int, default=1_000_000)
    args = parser.parse_args()
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
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
