"""Hostile clients against a real uvicorn (issue 8, items 2, 7, 8 and 10).

Abandoned uploads are counted and quiet, every log line is one JSON object under
``LOG_FORMAT=json`` (uvicorn's own lines included), and ``serve`` bounds request heads.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass

import httpx
import pytest

from tests.cli_helpers import scrubbed_env
from tests.servers import (
    SECRET,
    Server,
    metric,
    migrated_database,
    raw_exchange,
    request_with_header,
    running_server,
    server_env,
    spawn_serve,
)

pytestmark = pytest.mark.slow

ABANDONED = 5


def abandon_upload(port: int) -> None:
    """Headers promising 1000 bytes, one byte of body, then gone."""
    head = (
        b"POST /webhooks/nova HTTP/1.1\r\nHost: sink\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    raw_exchange(port, head, read=False)


def wait_for_metric(base_url: str, line_start: str, value: float, timeout: float = 15) -> None:
    """Poll until the metric reaches ``value`` (the server notices a disconnect on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(base_url, line_start) == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{line_start} never reached {value}: {metric(base_url, line_start)}")


def non_json_lines(output: str) -> list[str]:
    bad = []
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(record, dict) or "event" not in record:
            bad.append(line)
    return bad


# ---- abandoned uploads and uvicorn's own lines (uvicorn --factory) ---------------------------


@dataclass(frozen=True)
class HostileRun:
    output: str
    abandoned_metric: float | None
    invalid_answer: bytes


@pytest.fixture(name="hostile_run", scope="module")
def fixture_hostile_run(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    """One server: abandoned uploads and a garbage request, then a graceful stop."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    url = migrated_database(tmp_path / "sink.db")
    with running_server(tmp_path, url, env=server_env(url, LOG_FORMAT="json")) as server:
        for _ in range(ABANDONED):
            abandon_upload(server.port)
        wait_for_metric(server.base_url, "nova_sink_abandoned_requests_total", ABANDONED)
        invalid = raw_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")
        abandoned = metric(server.base_url, "nova_sink_abandoned_requests_total")
        server.stop()
        output = server.output()
    return HostileRun(output, abandoned, invalid)


def test_abandoned_uploads_are_counted(hostile_run: HostileRun) -> None:
    """Each client that sent headers and one byte, then left, adds one to the counter."""
    assert hostile_run.abandoned_metric == ABANDONED


def test_abandoned_uploads_log_no_traceback_and_no_error(hostile_run: HostileRun) -> None:
    """A client going away is one info line each, never a ClientDisconnect traceback."""
    assert "Traceback" not in hostile_run.output
    assert "ClientDisconnect" not in hostile_run.output
    records = [json.loads(line) for line in hostile_run.output.splitlines() if line.strip()]
    assert [r for r in records if r.get("level") in {"error", "critical"}] == []
    assert sum(r.get("event") == "webhook_abandoned" for r in records) == ABANDONED


def test_every_log_line_is_one_json_object(hostile_run: HostileRun) -> None:
    """LOG_FORMAT=json: uvicorn's lines (start-up, invalid request, shutdown) are JSON too."""
    assert hostile_run.invalid_answer.startswith(b"HTTP/1.1 400")
    assert non_json_lines(hostile_run.output) == []
    events = [json.loads(line)["event"] for line in hostile_run.output.splitlines() if line]
    assert "Invalid HTTP request received." in events
    assert "Application startup complete." in events


# ---- nova-sink serve: request heads are bounded -----------------------------------------------


@pytest.fixture(name="served", scope="module")
def fixture_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`nova-sink serve --workers 2` on a free port, stopped after the module."""
    tmp_path = tmp_path_factory.mktemp("serve")
    url = migrated_database(tmp_path / "sink.db")
    env = scrubbed_env(NOVA_WEBHOOK_SECRETS=SECRET, DATABASE_URL=url, LOG_FORMAT="json")
    server = spawn_serve(tmp_path, url, env, workers=2)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=20)
        server.cleanup()


def test_serve_refuses_a_64_kib_header_and_stays_responsive(served: Server) -> None:
    """A 64 KiB header gets 431 (or a closed connection), never an answer; /healthz still 200."""
    answer = raw_exchange(served.port, request_with_header(64 * 1024))
    assert not answer.startswith(b"HTTP/1.1 200")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    with httpx.Client(base_url=served.base_url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200


REFUSED_HEADS = 'nova_sink_rejected_requests_total{status="431"}'


def test_serve_counts_each_refused_head_whichever_worker_is_scraped(served: Server) -> None:
    """Under --workers 2 (prometheus multiprocess mode) a 431 adds one to the count that
    every scrape shows, whichever worker refused the head and whichever answers."""
    before = metric(served.base_url, REFUSED_HEADS) or 0

    raw_exchange(served.port, request_with_header(64 * 1024))

    assert [metric(served.base_url, REFUSED_HEADS) for _ in range(4)] == [before + 1] * 4


def test_serve_accepts_ordinary_headers(served: Server) -> None:
    """A request with an 8 KiB header (a large proxy-added cookie, say) is served."""
    assert raw_exchange(served.port, request_with_header(8 * 1024)).startswith(b"HTTP/1.1 200")


def test_serve_writes_no_access_lines_at_the_default_log_level(served: Server) -> None:
    """``serve`` runs uvicorn without its access log (the receiver logs each delivery
    itself): at the default LOG_LEVEL=info no request leaves a uvicorn.access line."""
    raw_exchange(served.port, request_with_header(1024))
    records = [json.loads(line) for line in served.output().splitlines() if line.strip()]
    assert any(r.get("event") == "Application startup complete." for r in records)
    assert [r for r in records if r.get("logger") == "uvicorn.access"] == []


def test_serve_logs_are_json_from_supervisor_and_workers(served: Server) -> None:
    """With --workers, the supervisor's lines are JSON too (uvicorn's log_config)."""
    raw_exchange(served.port, request_with_header(64 * 1024))
    output = served.output()
    assert "Started parent process" in output
    assert non_json_lines(output) == []
