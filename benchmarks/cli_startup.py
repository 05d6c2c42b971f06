"""CLI start-up: wall time of ``nova-sink --help`` and ``nova-sink results list``.

Runs the venv's console script directly (not ``uv run``, which adds its own start-up), on
an empty migrated SQLite database, against the same-run baseline ``python -c pass``.
Reports medians, ratios and the heaviest imports (``python -X importtime``) of
``results list``.

Bytecode: this environment sets PYTHONDONTWRITEBYTECODE=1 and the project itself is an
editable install, so ``receiver``/``storage`` are compiled from source on every start
(site-packages was byte-compiled by ``uv sync --compile-bytecode``). The benchmark reports
both that "as configured" case and a "warm bytecode" case that points PYTHONPYCACHEPREFIX
at a temporary directory (nothing is written into the source tree).

    uv run python benchmarks/cli_startup.py [--quick] [--json] [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _common import PYTHON, ROOT, clean_env, dump_json, machine, migrated_sqlite, table

TARGET_SECONDS = 0.3
SCRIPT = Path(PYTHON).with_name("nova-sink")


def wall(argv: Sequence[str], env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(list(argv), env=dict(env), cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


def measure(cases: dict[str, list[str]], env: Mapping[str, str], runs: int) -> dict[str, Any]:
    """Interleave the cases run by run so that machine noise hits them alike."""
    for argv in cases.values():  # one untimed run each: page cache, and the bytecode cache
        wall(argv, env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            times[name].append(wall(argv, env))
    return {
        name: {"median": statistics.median(t), "min": min(t), "max": max(t), "runs": t}
        for name, t in times.items()
    }


_HEAVY = frozenset(
    {
        "starlette",
        "uvicorn",
        "httpx",
        "alembic",
        "pydantic",
        "sqlmodel",
        "rich",
        "prometheus_client",
        "stamina",
        "structlog",
        "sqlalchemy",
        "typer",
        "psycopg",
    }
)
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_profile(env: Mapping[str, str], top: int) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "-X", "importtime", str(SCRIPT), "results", "list"],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    entries = []
    for line in done.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            own, cumulative, indent, name = match.groups()
            entries.append((name, int(own), int(cumulative), len(indent) // 2))
    total_us = sum(own for _, own, _, _ in entries)
    # Top-level packages (depth 1) by cumulative time: what the CLI actually pulled in.
    roots: dict[str, float] = {}
    for name, _own, cumulative, depth in entries:
        if depth == 1:
            package = name.split(".")[0]
            roots[package] = roots.get(package, 0) + cumulative
    return {
        "total_ms": total_us / 1000,
        "modules": len(entries),
        "top_cumulative": sorted(
            ({"module": n, "cumulative_ms": c / 1000, "depth": d} for n, _, c, d in entries),
            key=lambda e: -float(e["cumulative_ms"]),
        )[:top],
        "top_self": sorted(
            ({"module": n, "self_ms": o / 1000} for n, o, _, _ in entries),
            key=lambda e: -float(e["self_ms"]),
        )[:top],
        "packages": sorted(
            ({"package": p, "cumulative_ms": c / 1000} for p, c in roots.items()),
            key=lambda e: -float(e["cumulative_ms"]),  # type: ignore[arg-type]
        )[:top],
        "heavy_loaded": sorted({n.split(".")[0] for n, *_ in entries} & _HEAVY),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nova-bench-cli-") as tmp:
        url = migrated_sqlite(Path(tmp) / "empty.db")
        cases = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "nova-sink --help": [str(SCRIPT), "--help"],
            "nova-sink results list": [str(SCRIPT), "results", "list"],
        }
        base_env = clean_env(DATABASE_URL=url)
        configured = measure(cases, base_env, args.runs)
        warm_env = dict(base_env, PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
        warm_env.pop("PYTHONDONTWRITEBYTECODE", None)
        warm = measure(cases, warm_env, args.runs)
        imports = import_profile(warm_env, args.top)
    return {
        "benchmark": "cli_startup",
        "machine": machine(),
        "script": str(SCRIPT),
        "runs": args.runs,
        "target_seconds": TARGET_SECONDS,
        "pythondontwritebytecode": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "as_configured": configured,
        "warm_bytecode": warm,
        "imports_results_list": imports,
    }


def report(result: dict[str, Any]) -> None:
    print(f"CLI start-up: median of {result['runs']} runs, console script {result['script']}")
    print(f"machine: {result['machine']}")
    configured = (
        f"as configured (PYTHONDONTWRITEBYTECODE={result['pythondontwritebytecode']}, "
        "project compiled from source each start)"
    )
    for label, key in (
        (configured, "as_configured"),
        ("warm bytecode (PYTHONPYCACHEPREFIX in a temp dir)", "warm_bytecode"),
    ):
        data = result[key]
        base = data["python -c pass"]["median"]
        print()
        print(label)
        rows = [
            [
                name, d["median"], d["min"], d["max"], d["median"] / base,
                d["median"] - base,
                "-" if name.startswith("python") else
                ("PASS" if d["median"] < TARGET_SECONDS else "MISS"),
            ]
            for name, d in data.items()
        ]  # fmt: skip
        print(table(rows, ["command", "median s", "min s", "max s", "x python",
                           "over python s", f"< {TARGET_SECONDS} s"]))  # fmt: skip
    imports = result["imports_results_list"]
    print()
    print(f"python -X importtime nova-sink results list (warm bytecode): "
          f"{imports['total_ms']:.0f} ms in {imports['modules']} modules")  # fmt: skip
    print(f"heavy packages loaded: {', '.join(imports['heavy_loaded']) or 'none'}")
    print()
    print(table([[e["package"], e["cumulative_ms"]] for e in imports["packages"]],
                ["top-level import", "cumulative ms"]))  # fmt: skip
    print()
    print(table([[e["module"], e["self_ms"]] for e in imports["top_self"]],
                ["module", "self ms"]))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs instead of 10")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 5 if args.quick else 10
    if not SCRIPT.exists():
        print(f"console script not found: {SCRIPT} (run `uv sync`)", file=sys.stderr)
        return 2
    result = run(args)
    if args.json:
        dump_json(result)
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
