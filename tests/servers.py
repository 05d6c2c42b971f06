"""Real receiver processes for end-to-end tests, signed Nova deliveries and raw requests to
send them, and their metrics to read back.

``running_server`` starts ``uvicorn --factory receiver.app:create_app`` as a subprocess on a
free port of 127.0.0.1, in its own session (so a test can signal the whole process group),
with an environment that holds only what the test sets. Output goes to a file, never a
pipe: a pipe nobody reads can block the server, and an unclosed one is a ResourceWarning.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from receiver.serving import free_port
from receiver.signatures import sign
from storage import schema
from storage.db import make_engine
from tests.cli_helpers import scrubbed_env, start_cli_process

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_e2eSecretForTests0123456789"
GRACEFUL_SECONDS = 5
STARTUP_SECONDS = 20.0
WEBHOOK_PATH = "/webhooks/nova"
# uvicorn re-raises the SIGTERM it handled once it has drained: -15 is a clean exit too.
CLEAN_EXITS = (0, -signal.SIGTERM)

_STARTED = "Application startup complete."


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def migrated_database(path: Path) -> str:
    """Create the schema in a new SQLite file; returns its URL."""
    url = sqlite_url(path)
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


def server_env(database_url: str, *, secret: str = SECRET, **extra: str) -> dict[str, str]:
    """The environment of a test server: the parent's, minus nova-sink settings, plus ours."""
    settings = {
        "NOVA_WEBHOOK_SECRETS": secret,
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    return scrubbed_env(**{**settings, **extra})


@dataclass
class Server:
    """One receiver process (uvicorn supervisor when ``--workers`` is given)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    database_url: str
    workers: int = 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_until_healthy(self, timeout: float = STARTUP_SECONDS) -> None:
        """Poll ``/healthz`` until it answers 200 and every worker has started.

        Fails early if the process died.
        """
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.proc.returncode}:\n{self.output()}"
                    )
                with suppress(httpx.TransportError):
                    healthy = client.get("/healthz").status_code == 200
                    # One worker answering is not enough to test several of them.
                    if healthy and self.output().count(_STARTED) >= self.workers:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"server not healthy after {timeout} s:\n{self.output()}")

    def signal(self, signum: int) -> None:
        """Signal the server process itself (uvicorn forwards to its workers)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the whole process group: supervisor and every worker, no goodbyes."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = GRACEFUL_SECONDS + 10) -> int:
        """SIGTERM, wait for the graceful exit; SIGKILL the group if it does not come."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.proc.wait(timeout=10)
            raise

    def cleanup(self) -> None:
        """Whatever happened in the test: no process of ours outlives it."""
        if self.proc.poll() is None:
            self.kill_group()
        try:
            self.proc.wait(timeout=10)
        finally:
            # A worker may outlive a supervisor that was stopped gracefully but raced.
            self.kill_group()


def spawn_server(
    tmp_path: Path,
    database_url: str,
    *,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "server",
) -> Server:
    """Start uvicorn on a free port; does not wait for it (see ``wait_until_healthy``)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "receiver.app:create_app",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SECONDS),
    ]
    if workers is not None:
        args += ["--workers", str(workers)]
    log_path = tmp_path / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args,
            cwd=tmp_path,  # no stray .env, and a relative default DATABASE_URL lands here
            env=dict(env) if env is not None else server_env(database_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(proc, port, log_path, database_url, workers=workers or 1)


def spawn_serve(
    tmp_path: Path, database_url: str, env: Mapping[str, str], *, workers: int
) -> Server:
    """Start ``nova-sink serve --workers N`` (serve's own supervisor and, on SQLite, its
    shared commit process) on a free port; does not wait for it."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    argv = ["serve", "--port", str(port), "--workers", str(workers)]
    proc = start_cli_process(tmp_path, *argv, env=dict(env), log_path=log_path)
    return Server(proc, port, log_path, database_url, workers=workers)


@contextmanager
def running_server(
    tmp_path: Path,
    database_url: str,
    *,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "server",
) -> Iterator[Server]:
    """A healthy server for the duration of the block; killed afterwards if still running."""
    server = spawn_server(tmp_path, database_url, workers=workers, env=env, name=name)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.cleanup()


# ---- deliveries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedDelivery:
    """One ``score.completed`` webhook as Nova would send it, and what it should store."""

    scoring_job_id: str
    webhook_id: str
    score: int
    verdict: str
    body: bytes
    headers: dict[str, str]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def score_completed(
    *,
    scoring_job_id: str | None = None,
    webhook_id: str | None = None,
    score: int = 7,
    verdict: str = "advance",
    secret: str = SECRET,
    now: datetime | None = None,
    construction: str = "id.timestamp.body",
) -> SignedDelivery:
    """A signed ``score.completed`` (newest header generation, id and timestamp signed
    unless ``construction`` says otherwise: a receiver pins one per secret).

    The body depends only on ``scoring_job_id``, ``score`` and ``verdict``: a re-send with a
    new ``webhook_id`` carries the same bytes, like a Portal re-send.
    """
    scoring_job_id = scoring_job_id or new_id("sj")
    webhook_id = webhook_id or new_id("wh")
    payload: dict[str, Any] = {
        "event": "score.completed",
        "tenantId": "acme-corp",
        "scoringJobId": scoring_job_id,
        "jobId": "job-e2e",
        "applicationId": f"app-{scoring_job_id}",
        "result": {
            "score": score,
            "assessment": {
                "verdict": verdict,
                "strengths": [f"strength of {scoring_job_id}"],
                "concerns": [],
                "interviewFocus": ["system design"],
            },
        },
        "completedAt": "2025-01-15T10:30:45Z",
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = sign(
        secret,
        body,
        construction=construction,
        webhook_id=webhook_id,
        timestamp=now or datetime.now(UTC),
        event_header="SCORE_COMPLETED",
    )
    return SignedDelivery(scoring_job_id, webhook_id, score, verdict, body, headers)


# ---- reading the database back ------------------------------------------------------------


def query(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of one read-only query, through a fresh engine (WAL recovery happens on open)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


# ---- raw requests, and the metrics they leave ------------------------------------------------


def raw_exchange(port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send ``data`` on a fresh connection; return what the server answered until it closed.

    A server that closes while we are still sending is an answer too (b"" or a partial one).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        if not read:
            return b""
        answer = b""
        with suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
        return answer


def request_with_header(size: int) -> bytes:
    """A ``GET /healthz`` whose head carries a ``size``-byte header."""
    return (
        b"GET /healthz HTTP/1.1\r\nHost: sink\r\nX-Padding: "
        + b"a" * size
        + b"\r\nConnection: close\r\n\r\n"
    )


def metric(base_url: str, line_start: str) -> float | None:
    """The value of the first ``/metrics`` line that starts with ``line_start``, or None."""
    with httpx.Client(base_url=base_url, timeout=5) as client:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return None
