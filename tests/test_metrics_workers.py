"""``/metrics`` under ``nova-sink serve --workers 2``: every scrape shows the whole server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from receiver.metrics import prepare_multiprocess_dir
from receiver.serving import free_port
from tests.cli_helpers import start_cli_process
from tests.servers import SECRET, Server, migrated_database, score_completed, server_env

DELIVERIES = 12
SCRAPES = 8
_APPLIED = re.compile(
    r'^nova_sink_deliveries_total\{event="score.completed",outcome="applied"\} (\S+)$', re.M
)


def serve(tmp_path: Path, database_url: str, workers: int) -> Server:
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    env = server_env(database_url, secret=SECRET)
    proc = start_cli_process(
        tmp_path,
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        env=env,
        log_path=log_path,
    )
    return Server(proc, port, log_path, database_url, workers=workers)


@pytest.mark.slow
def test_every_scrape_of_a_two_worker_server_shows_every_delivery(tmp_path: Path) -> None:
    """Deliveries spread over two workers; each of several scrapes counts all of them."""
    server = serve(tmp_path, migrated_database(tmp_path / "sink.db"), workers=2)
    try:
        server.wait_until_healthy()
        for _ in range(DELIVERIES):
            delivery = score_completed()
            # A new connection each time, so that both workers take deliveries.
            answer = httpx.post(server.webhook_url, content=delivery.body, headers=delivery.headers)
            assert answer.status_code == 200, answer.text
        counts = []
        for _ in range(SCRAPES):
            text = httpx.get(f"{server.base_url}/metrics").text
            found = _APPLIED.search(text)
            counts.append(float(found.group(1)) if found else 0.0)
    finally:
        server.stop()

    assert counts == [float(DELIVERIES)] * SCRAPES


def test_a_configured_metrics_directory_is_emptied_at_start(tmp_path: Path) -> None:
    """Files of an earlier run would add their counts to this run's: they are removed."""
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")

    path, created = prepare_multiprocess_dir(str(tmp_path))

    assert (path, created) == (tmp_path, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_new_run_removes_the_metrics_directories_of_killed_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` killed with -9 leaves its temporary directory behind; the next ``serve``
    removes those whose process is gone, and keeps those of a running one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"nova-sink-metrics-{int(gone.stdout)}-abc123"
    dead.mkdir()
    (dead / "counter_1.db").write_bytes(b"stale")
    alive = tmp_path / f"nova-sink-metrics-{os.getpid()}-def456"
    alive.mkdir()
    unrelated = tmp_path / "nova-sink-metrics-notapid-x"
    unrelated.mkdir()

    path, created = prepare_multiprocess_dir(None)

    assert created
    assert path.parent == tmp_path
    assert path.name.startswith(f"nova-sink-metrics-{os.getpid()}-")
    assert not dead.exists()
    assert alive.exists()
    assert unrelated.exists()
