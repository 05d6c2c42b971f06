"""The CLI against real servers: ``send-test-webhook`` and ``fake-nova`` on loopback ports.

The ``send-test-webhook`` tests share one real receiver (uvicorn on a migrated SQLite file,
``tests.servers``), each with its own ids. The ``fake-nova`` tests get a receiver each: with
``--seed 1`` every fake-nova run hands out the same batch and scoring job ids, which would
collide in a shared database. Each command
is the installed ``nova-sink`` console script in a subprocess, run in ``tmp_path`` (no stray
``.env``) with an environment that holds only what the test sets. ``fake-nova`` runs in its
own session and its whole process group is killed afterwards.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_helpers import Ran, run_cli_subprocess, start_cli_process
from tests.servers import (
    SECRET,
    Server,
    free_port,
    migrated_database,
    query,
    running_server,
    server_env,
)

pytestmark = pytest.mark.slow

API_KEY = "sk_test_x"
TENANT = "t"
WRONG_SECRET = "whsec_notTheReceiversSecret0123456"
DEADLINE_SECONDS = 20.0
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class FakeNovaServer:
    base_url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def run_cli(cwd: Path, *args: str, database_url: str, **env: str) -> Ran:
    """Run ``nova-sink *args`` to completion with only the receiver's settings plus ``env``."""
    return run_cli_subprocess(cwd, *args, env=server_env(database_url, **env))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_SECONDS) -> None:
    """Poll ``condition`` until it holds; fail the test after a generous deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(POLL_SECONDS)
    pytest.fail(f"not within {timeout} s: {what}")


@contextmanager
def running_fake_nova(
    tmp_path: Path, *, deliver_to: str, drop: float = 0.0
) -> Iterator[FakeNovaServer]:
    """``nova-sink fake-nova`` on a free port, answering; its process group is killed after."""
    port = free_port()
    args = [
        "fake-nova",
        "--port",
        str(port),
        "--deliver-to",
        deliver_to,
        "--secret",
        SECRET,
        "--score-delay",
        "0",
        "--seed",
        "1",
        "--drop",
        str(drop),
    ]
    log_path = tmp_path / f"fake-nova-{port}.log"
    proc = start_cli_process(
        tmp_path, *args, env=server_env("sqlite:///unused.db"), log_path=log_path
    )
    server = FakeNovaServer(f"http://127.0.0.1:{port}", log_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=1.0) as client:

            def answering() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"fake-nova exited with {proc.returncode}:\n{server.output()}")
                with suppress(httpx.TransportError):
                    return client.get("/_fake/stats").status_code == 200
                return False

            wait_for(answering, "fake-nova answers")
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(name="receiver", scope="module")
def fixture_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real receiver for the module, configured with ``SECRET``."""
    workdir = tmp_path_factory.mktemp("receiver")
    with running_server(workdir, migrated_database(workdir / "sink.db")) as server:
        yield server


@pytest.fixture(name="own_receiver")
def fixture_own_receiver(tmp_path: Path) -> Iterator[Server]:
    """A real receiver on a database of its own, configured with ``SECRET``."""
    with running_server(tmp_path, migrated_database(tmp_path / "sink.db")) as server:
        yield server


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def stored_jobs(receiver: Server, job_id: str) -> dict[str, dict[str, Any]]:
    rows = query(receiver.database_url, "SELECT * FROM scoring_job WHERE job_id = :j", j=job_id)
    return {row["scoring_job_id"]: row for row in rows}


def create_batch(fake: FakeNovaServer, job_id: str, applications: int = 3) -> dict[str, Any]:
    """POST a scoring batch of text résumés to fake Nova; return its 202 body."""
    body = {
        "jobDescription": "Backend engineer: Python, PostgreSQL, webhooks.",
        "applications": [
            {
                "applicationId": f"{job_id}-app-{n}",
                "resume": {"type": "text", "content": f"Candidate {n}: eight years of Python."},
            }
            for n in range(applications)
        ],
    }
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Tenant-Id": TENANT}
    with httpx.Client(base_url=fake.base_url, timeout=10.0) as client:
        response = client.post(f"/v1/jobs/{job_id}/scoring-batches", json=body, headers=headers)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    assert len(created["scoringJobIds"]) == applications
    return created


def fake_get(fake: FakeNovaServer, path: str) -> Any:
    with httpx.Client(base_url=fake.base_url, timeout=10.0) as client:
        response = client.get(path)
    response.raise_for_status()
    return response.json()


# ---- send-test-webhook --------------------------------------------------------------------


def test_send_test_webhook_score_completed_is_applied_and_stored(
    receiver: Server, tmp_path: Path
) -> None:
    """A signed score.completed gets 200 "applied" and its result lands in the database."""
    scoring_job_id = new_id("sj")
    result = run_cli(
        tmp_path,
        "send-test-webhook",
        receiver.webhook_url,
        "--event",
        "score.completed",
        "--secret",
        SECRET,
        "--scoring-job-id",
        scoring_job_id,
        database_url=receiver.database_url,
    )
    assert result.code == 0, result
    assert result.out.startswith("200 ")
    assert "applied" in result.out
    rows = query(
        receiver.database_url,
        "SELECT status, score FROM scoring_job WHERE scoring_job_id = :id",
        id=scoring_job_id,
    )
    assert rows == [{"status": "completed", "score": 7}]


def test_send_test_webhook_test_event_is_recorded(receiver: Server, tmp_path: Path) -> None:
    """Nova's "test" event is acknowledged as recorded and kept in the inbox."""
    result = run_cli(
        tmp_path,
        "send-test-webhook",
        receiver.webhook_url,
        "--event",
        "test",
        "--secret",
        SECRET,
        database_url=receiver.database_url,
    )
    assert result.code == 0, result
    assert result.out.startswith("200 ")
    assert "recorded" in result.out
    inbox = query(receiver.database_url, "SELECT outcome FROM delivery WHERE event = 'test'")
    assert inbox == [{"outcome": "recorded"}]


def test_send_test_webhook_with_wrong_secret_exits_1_and_shows_401(
    receiver: Server, tmp_path: Path
) -> None:
    """A signature the receiver cannot verify is a 401, shown, and exit code 1."""
    scoring_job_id = new_id("sj")
    result = run_cli(
        tmp_path,
        "send-test-webhook",
        receiver.webhook_url,
        "--event",
        "score.completed",
        "--secret",
        WRONG_SECRET,
        "--scoring-job-id",
        scoring_job_id,
        database_url=receiver.database_url,
    )
    assert result.code == 1, result
    assert result.out.startswith("401 ")
    rows = query(
        receiver.database_url,
        "SELECT 1 FROM scoring_job WHERE scoring_job_id = :id",
        id=scoring_job_id,
    )
    assert rows == []


def test_send_test_webhook_legacy_header_signing_id_timestamp_body_is_accepted(
    own_receiver: Server, tmp_path: Path
) -> None:
    """X-Nova-Signature over id.timestamp.body verifies like the newest header does.

    On a receiver of its own: the module's receiver has pinned SECRET to body-only.
    """
    receiver = own_receiver
    scoring_job_id = new_id("sj")
    result = run_cli(
        tmp_path,
        "send-test-webhook",
        receiver.webhook_url,
        "--event",
        "score.completed",
        "--secret",
        SECRET,
        "--scoring-job-id",
        scoring_job_id,
        "--legacy-header",
        "--construction",
        "id.timestamp.body",
        database_url=receiver.database_url,
    )
    assert result.code == 0, result
    assert result.out.startswith("200 ")
    assert "applied" in result.out


def test_send_test_webhook_to_unreachable_url_fails_with_one_line(
    receiver: Server, tmp_path: Path
) -> None:
    """Nothing listening: exit 1 and one stderr line, no traceback."""
    url = f"http://127.0.0.1:{free_port()}/webhooks/nova"
    result = run_cli(
        tmp_path,
        "send-test-webhook",
        url,
        "--secret",
        SECRET,
        database_url=receiver.database_url,
    )
    assert result.code == 1, result
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert url in lines[0]


# ---- fake-nova ----------------------------------------------------------------------------


def test_fake_nova_delivers_a_result_for_every_scoring_job(
    own_receiver: Server, tmp_path: Path
) -> None:
    """Every scoring job of a batch posted to fake-nova reaches the receiver's database."""
    job_id = new_id("job")
    with running_fake_nova(tmp_path, deliver_to=own_receiver.webhook_url) as fake:
        created = create_batch(fake, job_id)
        expected = set(created["scoringJobIds"])
        wait_for(
            lambda: set(stored_jobs(own_receiver, job_id)) == expected,
            f"receiver stores every scoring job of {job_id}",
        )
        truth = fake_get(fake, "/_fake/truth")
    batches = [b for b in truth["batches"] if b["batch"]["id"] == created["batch"]["id"]]
    assert len(batches) == 1
    assert {job["id"] for job in batches[0]["scoringJobs"]} == expected


def test_fake_nova_says_what_it_accepts_and_prints_every_delivery_attempt(
    own_receiver: Server, tmp_path: Path
) -> None:
    """The banner names the API key rule and the secret's source; each attempt is a line."""
    job_id = new_id("job")
    with running_fake_nova(tmp_path, deliver_to=own_receiver.webhook_url) as fake:
        created = create_batch(fake, job_id)
        wait_for(
            lambda: all(f"{sj} [" in fake.output() for sj in created["scoringJobIds"]),
            "a line per delivered scoring job",
        )
        output = fake.output()

    assert "API key: any sk_test_… or sk_live_… key" in output
    assert "signed with --secret" in output
    attempts = [line for line in output.splitlines() if line.startswith("→ score.")]
    assert len(attempts) == 3
    assert all("← 200 applied" in line for line in attempts), attempts


def test_dropped_webhooks_are_recovered_by_track_and_reconcile(
    own_receiver: Server, tmp_path: Path
) -> None:
    """With --drop 1 nothing arrives; track + reconcile against fake-nova fill the gap."""
    job_id = new_id("job")
    with running_fake_nova(tmp_path, deliver_to=own_receiver.webhook_url, drop=1.0) as fake:
        created = create_batch(fake, job_id)
        batch_id = created["batch"]["id"]
        expected = set(created["scoringJobIds"])

        def all_dropped() -> bool:
            deliveries = fake_get(fake, "/_fake/stats")["deliveries"]
            # Every job's event plus batch.completed, each one dropped rather than sent.
            return bool(deliveries["dropped"] >= len(expected) + 1)

        wait_for(all_dropped, "fake-nova drops every webhook of the batch")
        assert fake_get(fake, "/_fake/stats")["deliveries"]["attempts"] == 0
        assert query(own_receiver.database_url, "SELECT count(*) AS n FROM delivery") == [{"n": 0}]
        assert stored_jobs(own_receiver, job_id) == {}

        nova = {"NOVA_API_URL": fake.base_url, "NOVA_API_KEY": API_KEY, "NOVA_TENANT_ID": TENANT}
        tracked = run_cli(
            tmp_path, "track", job_id, batch_id, database_url=own_receiver.database_url, **nova
        )
        assert tracked.code == 0, tracked
        reconciled = run_cli(tmp_path, "reconcile", database_url=own_receiver.database_url, **nova)
    assert reconciled.code == 0, reconciled
    assert set(stored_jobs(own_receiver, job_id)) == expected
