"""``wrk`` as the load generator: distinct pre-signed bodies from a file, each sent once.

One wrk thread (a C event loop: it sends several times what a Python client can on the
same core) reads a pool file of ``<signature>\\t<webhook id>\\t<body>`` lines and sends them
in order; when the pool runs out it stops instead of repeating a body. ``done`` prints the
summary as one JSON line.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECRET = "whsec_benchmark_secret_0123456789"  # noqa: S105 - a throwaway loopback secret
PATH = "/webhooks/nova"

LUA = r"""
local sigs, ids, bodies = {}, {}, {}
local i = 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  local f = assert(io.open(args[1], "rb"))
  for line in f:lines() do
    local sig, id, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    sigs[#sigs + 1] = sig
    ids[#ids + 1] = id
    bodies[#bodies + 1] = body
  end
  f:close()
end

function request()
  i = i + 1
  if i > #bodies then
    wrk.thread:stop()  -- never send a body twice
    i = #bodies
  end
  headers["X-Webhook-Signature"] = sigs[i]
  headers["X-Webhook-Id"] = ids[i]
  return wrk.format("POST", "/webhooks/nova", headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "status_errors": %d, "connect": %d,'
    .. ' "read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def ensure_wrk() -> str:
    """The wrk binary; installs the Debian package when it is missing (the benchmark's setup)."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(
            "wrk is not installed and `apt-get install -y wrk` failed; "
            "benchmarks/ingest_httpx.py is the Python fallback"
        )
    return found


def signed_delivery(prefix: str, n: int, completed_at: str) -> tuple[bytes, dict[str, str]]:
    """One unique, signed ``score.completed`` as fake Nova sends it (body-only HMAC + id)."""
    from receiver.signatures import sign

    scoring_job_id = f"{prefix}-{n:08d}"
    body = json.dumps(
        {
            "event": "score.completed",
            "tenantId": "tenant-bench",
            "scoringJobId": scoring_job_id,
            "criteriaVersionId": "cv-bench-0001",
            "jobId": "job-bench",
            "applicationId": f"app-{scoring_job_id}",
            "result": {
                "score": n % 10 + 1,
                "assessment": {
                    "verdict": "Strong candidate with solid backend experience.",
                    "strengths": ["Python", "PostgreSQL", "API design"],
                    "concerns": ["Short tenures"],
                    "interviewFocus": ["System design", "Incident handling"],
                },
            },
            "completedAt": completed_at,
        },
        separators=(",", ":"),
    ).encode()
    return body, sign(SECRET, body, webhook_id=f"msg_{scoring_job_id}")


def write_pool(path: Path, prefix: str, count: int) -> Path:
    """``count`` distinct signed deliveries, one per line, for the Lua script."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with path.open("wb") as out:
        for n in range(count):
            body, headers = signed_delivery(prefix, n, stamp)
            line = f"{headers['x-webhook-signature']}\t{headers['x-webhook-id']}\t".encode()
            out.write(line + body + b"\n")
    return path


def run_wrk(
    base_url: str,
    *,
    connections: int,
    duration: float,
    pool: Path,
    workdir: Path,
    until: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One wrk run (1 thread); returns its summary with ``ok`` = 2xx answers.

    With ``until``, the run ends (SIGINT: wrk still prints its summary) as soon as
    ``until()`` is true: wrk's own clock only knows durations, and a stopped thread keeps
    the process waiting for the rest of it.
    """
    script = workdir / "deliveries.lua"
    if not script.exists():
        script.write_text(LUA)
    argv = [
        ensure_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--timeout", "30s", "-s", str(script), base_url + PATH, str(pool),
    ]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        if until is not None:
            while proc.poll() is None and not until():
                time.sleep(0.5)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate()
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            break
    else:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{stdout}\n{stderr}")
    socket_errors = sum(result[k] for k in ("connect", "read", "write", "timeout"))
    result["ok"] = result["requests"] - result["status_errors"]
    result["socket_errors"] = socket_errors
    result["seconds"] = result["duration_us"] / 1e6
    result["rps"] = result["ok"] / result["seconds"]
    return result
