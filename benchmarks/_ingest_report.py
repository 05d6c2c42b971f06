"""The ingest benchmark's report: medians per setting and the tables it prints."""

from __future__ import annotations

import statistics
from typing import Any

from _common import table

TARGET_RATIO = {"sqlite": 0.5, "postgres": 0.3}
TARGET_P99_MS_AT_16 = 10.0
MEMORY_TARGET_MB = 30.0


def summarize(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (database, connections, workers)."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for c in comparisons:
        groups.setdefault((c["db"], c["connections"], c["workers"]), []).append(c)
    out = []
    for (db, connections, workers), items in groups.items():
        keys = ["bare_rps", "receiver_rps", "ratio", "receiver_p50_ms", "receiver_p99_ms",
                "bare_p99_ms", "bare_cpu_us", "receiver_cpu_us"]  # fmt: skip
        if all("base_rps" in i for i in items):  # --base: the older receiver, same rounds
            keys += ["base_rps", "base_ratio", "base_p99_ms", "base_cpu_us", "speedup"]
        med = {k: statistics.median(i[k] for i in items) for k in keys}
        out.append({"db": db, "connections": connections, "workers": workers, "runs": len(items),
                    "durable": all(i["durable"] for i in items), **med})  # fmt: skip
    return out


def report(result: dict[str, Any]) -> None:
    print(
        f"ingest benchmark (wrk, 1 thread): machine {result['machine']}, "
        f"uvicorn {result['uvicorn']}"
    )
    if "memory" in result:
        mem = result["memory"]
        for key, value in mem.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                print(f"  {key}: {value}")
            else:
                print(
                    f"  {key}: {value:,.1f}" if isinstance(value, float) else f"  {key}: {value:,}"
                )
        verdict = "PASS" if mem["growth_mb"] <= MEMORY_TARGET_MB else "MISS"
        print(
            f"  -> RSS growth {mem['growth_mb']:.1f} MB from 10k to "
            f"{mem['deliveries']:,} ({verdict})"
        )
        return
    rows = [
        [r["app"], r["db"], r["connections"], r["workers"], r["ok"], r["rps"], r["p50_ms"],
         r["p99_ms"], r["cpu_us_per_req"], r.get("commit_cpu_us_per_req", "-"),
         r["server_rss_mb"],
         r["status_errors"] + r["socket_errors"],
         r.get("durable", "-"), r["load_avg_1m"]]
        for r in result["runs"]
    ]  # fmt: skip
    print(table(rows, ["app", "db", "conns", "workers", "2xx", "req/s", "p50 ms", "p99 ms",
                       "CPU us/req", "of it commit", "RSS MB", "errors", "rows==2xx",
                       "load"]))  # fmt: skip
    print()
    rows = [
        [s["db"], s["connections"], s["workers"], s["runs"], s["bare_rps"], s["receiver_rps"],
         s["ratio"], s["receiver_p50_ms"], s["receiver_p99_ms"], s["bare_cpu_us"],
         s["receiver_cpu_us"],
         "PASS" if s["ratio"] >= TARGET_RATIO[s["db"]] else "MISS",
         ("PASS" if s["receiver_p99_ms"] <= TARGET_P99_MS_AT_16 else "MISS")
         if s["connections"] == 16 else "-",
         "yes" if s["durable"] else "NO"]
        for s in result["summary"]
    ]  # fmt: skip
    print(table(rows, ["db", "conns", "workers", "runs", "bare req/s", "recv req/s", "ratio",
                       "p50 ms", "p99 ms", "bare CPU us", "recv CPU us", "ratio target",
                       "p99<=10ms", "rows==2xx"]))  # fmt: skip
    with_base = [s for s in result["summary"] if "base_rps" in s]
    if with_base:
        print(f"\nagainst --base {result['base']} (its receiver in the same rounds):")
        rows = [
            [s["db"], s["connections"], s["base_rps"], s["receiver_rps"], s["speedup"],
             s["base_ratio"], s["ratio"], s["base_p99_ms"], s["receiver_p99_ms"],
             s["base_cpu_us"], s["receiver_cpu_us"]]
            for s in with_base
        ]  # fmt: skip
        print(table(rows, ["db", "conns", "base req/s", "recv req/s", "speedup", "base ratio",
                           "ratio", "base p99", "p99", "base CPU us", "recv CPU us"]))  # fmt: skip
    for c in result["comparisons"]:
        if c.get("base_durable") is False:
            print(f"!!! DURABILITY FAILURE of --base {c['db']} c={c['connections']} !!!")
        if not c["durable"]:
            print(f"!!! DURABILITY FAILURE {c['db']} c={c['connections']}: "
                  f"{c['rows']} rows vs {c['acked']} 2xx !!!")  # fmt: skip
