"""Shared helpers for the benchmarks: servers in subprocesses, ports, RSS/CPU, reporting.

The benchmarks never assert timings: they print what they measured next to a baseline
measured in the same run (the machine is shared and noisy), and the ratio between them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Settings the receiver reads: the developer's shell must not leak them into a bench server.
_OWN_PREFIXES = ("NOVA_", "DATABASE_URL", "SQLITE_", "LOG_", "WEBHOOK_", "SINK_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def export_tree(revision: str, into: Path) -> Path:
    """The project's files at ``revision`` (``git archive``), to run that version's server."""
    import tarfile
    from io import BytesIO

    if revision.startswith("-"):  # git would read it as one of its options
        raise SystemExit(f"--base: {revision!r} is not a revision")

    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def migrate_with(tree: Path, url: str) -> None:
    """Migrate ``url`` to the head of the code in ``tree`` (each version has its own)."""
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); from storage import schema; "
        f"from storage.db import make_engine; schema.upgrade(make_engine({url!r}))"
    )
    subprocess.run([PYTHON, "-c", code], check=True, cwd=tree, env=clean_env())


def migrated_sqlite(path: Path) -> str:
    """A new SQLite file at the current schema; returns its URL."""
    from storage import schema
    from storage.db import make_engine

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


def uvicorn_impl() -> tuple[str, str]:
    """The (loop, http) uvicorn's ``auto`` would pick; the benchmarks pin them explicitly."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        loop = "asyncio"
    else:
        loop = "uvloop"
    try:
        import httptools  # noqa: F401
    except ImportError:
        http = "h11"
    else:
        http = "httptools"
    return loop, http


@dataclass
class Proc:
    """A server subprocess whose output goes to a file (never a pipe nobody reads)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
                try:
                    if client.get(path).status_code < 500:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_process(
    argv: Sequence[str], *, port: int, log_path: Path, env: Mapping[str, str], cwd: Path = ROOT
) -> Proc:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    return Proc(proc, port, log_path)


def start_uvicorn(
    app: str,
    *,
    port: int,
    log_path: Path,
    env: Mapping[str, str],
    factory: bool = True,
    app_dir: Path = BENCH_DIR,
) -> Proc:
    """``python -m uvicorn`` (one process, no supervisor: its pid is the server's).

    ``app_dir`` comes first on the server's ``sys.path``: an exported tree there runs that
    version of ``receiver`` instead of the installed one.
    """
    loop, http = uvicorn_impl()
    argv = [
        PYTHON, "-m", "uvicorn", app,
        "--app-dir", str(app_dir),
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", loop, "--http", http,
        "--log-level", "warning", "--no-access-log",
        "--timeout-keep-alive", "5",
    ]  # fmt: skip
    if factory:
        argv.append("--factory")
    return start_process(argv, port=port, log_path=log_path, env=env)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of unsorted ``values`` (q in [0, 100])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(c) for c in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def dump_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
