"""End-to-end: the receiver as deployed, a real uvicorn process on a real SQLite file.

These tests prove what only a real server can: duplicates across worker processes, acks that
survive ``kill -9``, draining on SIGTERM, 503 on a locked database, and clean output.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.signatures import sign
from tests.servers import (
    CLEAN_EXITS,
    GRACEFUL_SECONDS,
    Server,
    SignedDelivery,
    migrated_database,
    new_id,
    query,
    running_server,
    score_completed,
    server_env,
    spawn_server,
    sqlite_url,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CLIENT_TIMEOUT = httpx.Timeout(20.0)
RUN_TIMEOUT = 30.0  # no asyncio scenario of this file may take longer than this


async def _post_all(url: str, deliveries: Sequence[SignedDelivery]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        posts = (client.post(url, content=d.body, headers=d.headers) for d in deliveries)
        return await asyncio.gather(*posts)


def post_concurrently(url: str, deliveries: Sequence[SignedDelivery]) -> list[httpx.Response]:
    """Send every delivery at once, each on its own connection when it must."""
    return asyncio.run(asyncio.wait_for(_post_all(url, deliveries), RUN_TIMEOUT))


def statuses(responses: Sequence[httpx.Response]) -> list[str]:
    assert [r.status_code for r in responses] == [200] * len(responses), [
        (r.status_code, r.text) for r in responses if r.status_code != 200
    ]
    return [r.json()["status"] for r in responses]


@dataclass
class Ack:
    delivery: SignedDelivery
    sent_at: float
    answered_at: float


@dataclass
class Stream:
    """A steady stream of unique deliveries from several concurrent senders."""

    url: str
    sent: dict[str, SignedDelivery] = field(default_factory=dict)
    acked: dict[str, Ack] = field(default_factory=dict)
    stopped: bool = False

    async def _sender(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        while not self.stopped:
            delivery = score_completed(
                score=rng.randint(0, 10), verdict=rng.choice(["advance", "hold", "reject"])
            )
            self.sent[delivery.scoring_job_id] = delivery
            sent_at = time.monotonic()
            try:
                response = await client.post(
                    self.url, content=delivery.body, headers=delivery.headers
                )
            except httpx.TransportError:
                return  # the server went away (killed or shutting down): this sender is done
            if response.is_success:
                self.acked[delivery.scoring_job_id] = Ack(delivery, sent_at, time.monotonic())

    async def run(self, senders: int, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            tasks = [self._sender(client, random.Random(rng.random())) for _ in range(senders)]
            await asyncio.gather(*tasks)


def assert_stored_as_sent(database_url: str, stream: Stream) -> list[dict[str, Any]]:
    """Every acknowledged delivery is stored; every stored row is exactly what was sent."""
    rows = query(database_url, "SELECT * FROM scoring_job WHERE job_id = 'job-e2e'")
    by_id = {row["scoring_job_id"]: row for row in rows}
    missing = set(stream.acked) - set(by_id)
    assert not missing, f"{len(missing)} acknowledged deliveries lost, e.g. {sorted(missing)[:3]}"
    for scoring_job_id, row in by_id.items():
        sent = stream.sent[scoring_job_id]
        got = (row["status"], row["score"], row["verdict"], row["delivery_count"])
        assert got == ("completed", sent.score, sent.verdict, 1), scoring_job_id
        assert json.loads(row["strengths"]) == [f"strength of {scoring_job_id}"]
    inbox = query(database_url, "SELECT webhook_id, outcome FROM delivery")
    outcomes = {row["webhook_id"]: row["outcome"] for row in inbox}
    for ack in stream.acked.values():
        assert outcomes.get(ack.delivery.webhook_id) == "applied"
    return rows


def lock_database(path: Path) -> sqlite3.Connection:
    """Another process's view: a connection holding SQLite's write lock until closed."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def release(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK")
    conn.close()


# ---- duplicates ---------------------------------------------------------------------------


def test_identical_concurrent_deliveries_across_workers_leave_one_result(tmp_path: Path) -> None:
    """2 sequential + 50 concurrent copies over 2 workers: one applied, every attempt counted."""
    url = migrated_database(tmp_path / "sink.db")
    delivery = score_completed()
    with running_server(tmp_path, url, workers=2) as server:
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            first = [
                client.post(server.webhook_url, content=delivery.body, headers=delivery.headers)
                for _ in range(2)
            ]
        rest = post_concurrently(server.webhook_url, [delivery] * 50)

    outcomes = statuses(first + rest)
    assert outcomes[:2] == ["applied", "duplicate"]
    assert set(outcomes) == {"applied", "duplicate"}
    assert outcomes.count("applied") == 1
    jobs = query(
        url, "SELECT * FROM scoring_job WHERE scoring_job_id = :id", id=delivery.scoring_job_id
    )
    assert [(j["score"], j["verdict"], j["delivery_count"]) for j in jobs] == [(7, "advance", 52)]
    inbox = query(
        url, "SELECT * FROM delivery WHERE scoring_job_id = :id", id=delivery.scoring_job_id
    )
    assert [(d["webhook_id"], d["attempts"]) for d in inbox] == [(delivery.webhook_id, 52)]


def test_concurrent_resends_with_new_webhook_ids_leave_one_result(tmp_path: Path) -> None:
    """50 concurrent Portal re-sends (new X-Webhook-Id each): one result, 50 inbox rows."""
    url = migrated_database(tmp_path / "sink.db")
    scoring_job_id = new_id("sj")
    resends = [score_completed(scoring_job_id=scoring_job_id) for _ in range(50)]
    with running_server(tmp_path, url, workers=2) as server:
        outcomes = statuses(post_concurrently(server.webhook_url, resends))

    assert outcomes.count("applied") == 1
    assert outcomes.count("duplicate") == 49
    jobs = query(url, "SELECT * FROM scoring_job WHERE scoring_job_id = :id", id=scoring_job_id)
    assert [j["delivery_count"] for j in jobs] == [50]
    inbox = query(url, "SELECT * FROM delivery WHERE scoring_job_id = :id", id=scoring_job_id)
    assert sorted(d["webhook_id"] for d in inbox) == sorted(d.webhook_id for d in resends)
    assert {d["attempts"] for d in inbox} == {1}


# ---- durability and shutdown --------------------------------------------------------------


async def _stream_then_kill(server: Server, stream: Stream) -> None:
    senders = asyncio.ensure_future(stream.run(senders=8, seed=2))
    await asyncio.sleep(1.5)
    server.kill_group()  # kill -9: no shutdown code of the receiver runs
    stream.stopped = True
    await senders


def test_every_acknowledged_delivery_survives_sigkill(tmp_path: Path) -> None:
    """SIGKILL mid-stream: every 2xx is on disk, no row half-written, the file serves again."""
    db_path = tmp_path / "sink.db"
    url = migrated_database(db_path)
    with running_server(tmp_path, url, name="killed") as server:
        stream = Stream(server.webhook_url)
        asyncio.run(asyncio.wait_for(_stream_then_kill(server, stream), RUN_TIMEOUT))
        assert server.wait(timeout=10) == -signal.SIGKILL
    assert len(stream.acked) >= 10, "the stream never got going; nothing was tested"

    rows = assert_stored_as_sent(url, stream)
    assert len(rows) >= len(stream.acked)
    assert query(url, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]

    after = score_completed()
    with running_server(tmp_path, url, name="restarted") as server:
        with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client:
            assert client.get("/readyz").status_code == 200
            response = client.post("/webhooks/nova", content=after.body, headers=after.headers)
        assert response.status_code == 200
        assert response.json() == {"status": "applied"}
    stored = query(
        url, "SELECT score FROM scoring_job WHERE scoring_job_id = :id", id=after.scoring_job_id
    )
    assert stored == [{"score": 7}]


async def _stream_then_terminate(server: Server, stream: Stream, db_path: Path) -> float:
    """Stream; stall the writer so requests are surely in flight; SIGTERM; unstall.

    Returns the monotonic time of the SIGTERM.
    """
    senders = asyncio.ensure_future(stream.run(senders=8, seed=3))
    await asyncio.sleep(0.5)
    lock = await asyncio.to_thread(lock_database, db_path)
    try:
        await asyncio.sleep(0.5)  # requests pile up behind the stalled writer
        terminated_at = time.monotonic()
        server.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
    finally:
        release(lock)
    await asyncio.to_thread(server.wait, GRACEFUL_SECONDS + 10)
    stream.stopped = True
    await senders
    return terminated_at


def test_sigterm_drains_in_flight_requests_and_exits(tmp_path: Path) -> None:
    """SIGTERM with requests in flight: they are answered after commit, and the server exits."""
    db_path = tmp_path / "sink.db"
    url = migrated_database(db_path)
    with running_server(tmp_path, url) as server:
        stream = Stream(server.webhook_url)
        terminated_at = asyncio.run(
            asyncio.wait_for(_stream_then_terminate(server, stream, db_path), RUN_TIMEOUT)
        )
        exited_after = time.monotonic() - terminated_at
        assert server.proc.returncode in CLEAN_EXITS, server.output()

    drained = [a for a in stream.acked.values() if a.sent_at < terminated_at < a.answered_at]
    assert drained, "no request was in flight at SIGTERM; nothing was tested"
    assert_stored_as_sent(url, stream)
    assert exited_after < GRACEFUL_SECONDS + 5  # generous: proves "no hang", not speed


# ---- database trouble ---------------------------------------------------------------------


def test_locked_database_answers_503_with_retry_after_then_accepts(tmp_path: Path) -> None:
    """Write lock held elsewhere: 503 + Retry-After after the busy timeout; later 200 applied."""
    db_path = tmp_path / "sink.db"
    url = migrated_database(db_path)
    delivery = score_completed()
    with (
        running_server(tmp_path, url) as server,
        httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client,
    ):
        lock = lock_database(db_path)
        try:
            started = time.monotonic()
            locked = client.post("/webhooks/nova", content=delivery.body, headers=delivery.headers)
            waited = time.monotonic() - started
        finally:
            release(lock)
        stored_meanwhile = query(
            url,
            "SELECT (SELECT count(*) FROM scoring_job) AS jobs, "
            "(SELECT count(*) FROM delivery) AS deliveries",
        )
        retried = client.post("/webhooks/nova", content=delivery.body, headers=delivery.headers)

    assert locked.status_code == 503
    assert int(locked.headers["retry-after"]) > 0
    assert 4.0 <= waited < 15.0  # the busy timeout (5 s) was waited out, and nothing hung
    assert stored_meanwhile == [{"jobs": 0, "deliveries": 0}]
    assert retried.status_code == 200
    assert retried.json() == {"status": "applied"}


# ---- output hygiene -----------------------------------------------------------------------

CANARY_SECRET = "whsec_CANARYsecret123456789"
CANARY_KEY = "sk_test_CANARYKEY0123456789abcdef"
MAX_BODY = 65_536


@dataclass(frozen=True)
class LoggedRun:
    returncode: int
    output: str
    verified: dict[str, str]  # webhook id -> outcome of each verified delivery
    answers: dict[str, int]  # request kind -> status code


def _send_mixed_requests(server: Server) -> tuple[dict[str, str], dict[str, int]]:
    good = score_completed(secret=CANARY_SECRET)
    unparsed_id = new_id("wh")
    unparsed_body = b'{"event": "score.completed", not json'
    unparsed_headers = sign(
        CANARY_SECRET,
        unparsed_body,
        construction="id.timestamp.body",
        webhook_id=unparsed_id,
        timestamp=datetime.now(UTC),
    )
    forged = score_completed(secret="whsec_forgedSecret0123456789")
    oversized = b'{"event":"score.completed","pad":"' + b"x" * MAX_BODY + b'"}'
    bad_signature = {**good.headers, "x-webhook-signature": "sha256=" + "zz" * 32}
    # Latin-1 on the wire, as Starlette decodes it: compare_digest on str would raise.
    non_ascii_signature = httpx.Headers(good.headers, encoding="latin-1")
    non_ascii_signature["x-webhook-signature"] = "sha256=\xff\xfe"
    requests: dict[str, tuple[bytes, Mapping[str, str]]] = {
        "good": (good.body, good.headers),
        "unparsed": (unparsed_body, unparsed_headers),
        "forged": (forged.body, forged.headers),
        "oversized": (oversized, sign(CANARY_SECRET, oversized)),
        "bad_signature": (good.body, bad_signature),
        "non_ascii_signature": (good.body, non_ascii_signature),
        "unsigned": (good.body, {"content-type": "application/json"}),
    }
    answers: dict[str, int] = {}
    with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client:
        for kind, (body, headers) in requests.items():
            answers[kind] = client.post("/webhooks/nova", content=body, headers=headers).status_code
        answers["get"] = client.get("/webhooks/nova").status_code
        answers["metrics"] = client.get("/metrics").status_code
    verified = {good.webhook_id: "applied", unparsed_id: "stored-unparsed"}
    return verified, answers


@pytest.fixture(name="logged_run", scope="module")
def _logged_run(tmp_path_factory: pytest.TempPathFactory) -> LoggedRun:
    """One server with canary secrets, hit with good and bad requests, then stopped."""
    tmp_path = tmp_path_factory.mktemp("canary")
    url = migrated_database(tmp_path / "sink.db")
    env = server_env(
        url,
        secret=CANARY_SECRET,
        NOVA_API_KEY=CANARY_KEY,
        WEBHOOK_MAX_BODY_BYTES=str(MAX_BODY),
        LOG_FORMAT="json",
        LOG_LEVEL="debug",
    )
    with running_server(tmp_path, url, env=env, name="canary") as server:
        verified, answers = _send_mixed_requests(server)
        returncode = server.stop()
        output = server.output()
    return LoggedRun(returncode, output, verified, answers)


def test_mixed_requests_get_the_documented_answers(logged_run: LoggedRun) -> None:
    """Sanity for the canary run: each kind of request got its contract status."""
    assert logged_run.answers == {
        "good": 200,
        "unparsed": 200,
        "forged": 401,
        "oversized": 413,
        "bad_signature": 401,
        "non_ascii_signature": 401,
        "unsigned": 401,
        "get": 405,
        "metrics": 200,
    }
    assert logged_run.returncode in CLEAN_EXITS


def test_secrets_never_appear_in_server_output(logged_run: LoggedRun) -> None:
    """Neither the webhook secret nor the API key shows up in stdout/stderr, whole or in part."""
    for canary in (CANARY_SECRET, "CANARYsecret", CANARY_KEY, "CANARYKEY"):
        assert canary not in logged_run.output


# ---- start-up on an unmigrated database ---------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    returncode: int
    output: str


@pytest.fixture(name="refusal", scope="module")
def _refusal(tmp_path_factory: pytest.TempPathFactory) -> Refusal:
    """uvicorn started on a database file that has no schema; waits for it to give up."""
    tmp_path = tmp_path_factory.mktemp("unmigrated")
    server = spawn_server(tmp_path, sqlite_url(tmp_path / "empty.db"), name="unmigrated")
    try:
        returncode = server.wait(timeout=30)
    finally:
        server.cleanup()
    return Refusal(returncode, server.output())


def test_refuses_to_start_on_unmigrated_database(refusal: Refusal) -> None:
    """Non-zero exit, and the output says what to run."""
    assert refusal.returncode != 0
    assert "nova-sink db upgrade" in refusal.output


# Known bugs last, so that `pytest -x` runs everything else first.


def test_logs_one_json_line_per_verified_delivery(logged_run: LoggedRun) -> None:
    """LOG_FORMAT=json: each verified delivery logs one JSON line (id, event, outcome, ms)."""
    lines = []
    for text in logged_run.output.splitlines():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "webhook":
            lines.append(record)
    for webhook_id, outcome in logged_run.verified.items():
        mine = [line for line in lines if line.get("webhook_id") == webhook_id]
        assert len(mine) == 1, f"{webhook_id}: {mine}\n{logged_run.output}"
        assert mine[0]["outcome"] == outcome
        assert "event_type" in mine[0]
        assert isinstance(mine[0]["ms"], int | float)


def test_unmigrated_database_refusal_has_no_traceback(refusal: Refusal) -> None:
    """The refusal is one clear line, not a Python traceback."""
    assert "Traceback" not in refusal.output, refusal.output
