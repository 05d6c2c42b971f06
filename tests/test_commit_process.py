"""The commit process: the writer's lane in a child process (``INGEST_WRITER=process``).

Real child processes on a real SQLite file: what they commit and answer, a child killed
mid-run, signals, and a parent that dies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from receiver import commit_process
from receiver.app import create_app
from receiver.commit import Batch, GroupCommitter
from receiver.commit_process import CommitFailed, ProcessLane, _decode, _encode
from receiver.ingest import Committed
from receiver.settings import Settings
from receiver.writer import ThreadLane, Writer
from storage.errors import StoreUnavailable
from storage.store.tables import JOBS
from tests.factories import (
    NOW,
    SECRET,
    nova_test_event,
    received,
    score_completed,
    score_failed,
    signed,
)

pytestmark = pytest.mark.slow  # each test starts Python child processes


def lane_for(engine: Engine) -> ProcessLane:
    return ProcessLane(str(engine.url), synchronous="FULL", log_format="json", log_level="warning")


def run_with(lane: ProcessLane, scenario: Callable[[Writer], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        writer = Writer(lane, now=lambda: NOW)
        await writer.start()
        try:
            return await scenario(writer)
        finally:
            await writer.stop()

    return asyncio.run(main())


def stored_jobs(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        query = sa.text("SELECT scoring_job_id FROM scoring_job ORDER BY scoring_job_id")
        return list(conn.execute(query).scalars())


def exited(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_deliveries_are_parsed_and_committed_in_a_child_process(sqlite_engine: Engine) -> None:
    """Each delivery gets its own answer, as the thread lane gives it, and the rows are
    written by another process, which is gone once the writer stops."""
    lane = lane_for(sqlite_engine)
    bodies = {f"sj_{n:02d}": score_completed(f"sj_{n:02d}") for n in range(20)}

    async def scenario(writer: Writer) -> tuple[list[Any], int | None]:
        pid = lane.pid
        mixed = [
            *(received(f"m_{job}", body) for job, body in bodies.items()),
            received("m_test", nova_test_event()),
            received("m_junk", b"not json"),
            received("m_again", bodies["sj_00"]),  # a second delivery of the same result
        ]
        answers = await asyncio.gather(*(writer.submit(item) for item in mixed))
        return answers, pid

    answers, pid = run_with(lane, scenario)

    assert pid is not None
    assert pid != os.getpid()
    assert [a.status for a in answers] == ["applied"] * 20 + [
        "recorded",
        "stored-unparsed",
        "duplicate",
    ]
    assert answers[0] == Committed("applied", "score.completed", "sj_00", None)
    assert answers[21].event is None
    assert answers[21].parse_error
    assert stored_jobs(sqlite_engine) == sorted(bodies)
    assert exited(pid, within=5)


def test_process_and_thread_lanes_answer_a_group_alike(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """The same group through either lane: the same answers, in the same order."""
    group = [
        received("m_1", score_completed("sj_1")),
        received("m_2", score_failed("sj_1")),
        received("m_3", b"{}"),
        received("m_4", nova_test_event()),
    ]

    async def submit_all(writer: Writer) -> list[Any]:
        return list(await asyncio.gather(*(writer.submit(item) for item in group)))

    other = tmp_path / "thread.db"  # the same migrated, empty database, for the other lane
    other.write_bytes(Path(str(sqlite_engine.url.database)).read_bytes())
    by_process = run_with(lane_for(sqlite_engine), submit_all)
    thread_engine = sa.create_engine(f"sqlite:///{other}")

    async def by_thread_lane() -> list[Any]:
        writer = Writer(ThreadLane(thread_engine), now=lambda: NOW)
        await writer.start()
        try:
            return await submit_all(writer)
        finally:
            await writer.stop()

    try:
        assert by_process == asyncio.run(by_thread_lane())
    finally:
        thread_engine.dispose()


def test_a_killed_commit_process_is_answered_503_and_replaced(sqlite_engine: Engine) -> None:
    """kill -9 of the child: its deliveries are 503 (Nova retries), a new child takes over."""
    lane = lane_for(sqlite_engine)

    async def scenario(writer: Writer) -> tuple[str, Any, str]:
        first = await writer.submit(received("m_1", score_completed("sj_1")))
        pid = lane.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        try:
            during: Any = await writer.submit(received("m_2", score_completed("sj_2")))
        except StoreUnavailable as exc:
            during = exc
        deadline = time.monotonic() + 30
        while not lane.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert lane.pid not in (None, pid)
        after = await writer.submit(received("m_3", score_completed("sj_3")))
        return first.status, during, after.status

    first, during, after = run_with(lane, scenario)

    assert (first, after) == ("applied", "applied")
    assert isinstance(during, StoreUnavailable)
    assert stored_jobs(sqlite_engine) == ["sj_1", "sj_3"]


def test_the_commit_process_runs_this_code_from_any_working_directory(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another ``receiver`` package in the working directory (another checkout, an older
    release being compared) is not what the child runs: it runs its parent's code."""
    decoy = tmp_path / "elsewhere" / "receiver"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the wrong receiver')\n")
    monkeypatch.chdir(decoy.parent)
    lane = lane_for(sqlite_engine)

    async def scenario(writer: Writer) -> Any:
        return await writer.submit(received("m_1", score_completed("sj_1")))

    assert run_with(lane, scenario).status == "applied"
    assert stored_jobs(sqlite_engine) == ["sj_1"]


def test_commit_process_ignores_ctrl_c_and_stops_when_its_parent_closes(
    sqlite_engine: Engine,
) -> None:
    """SIGINT and SIGTERM reach the whole process group; the child keeps committing until
    its parent has drained and closes the pair, then exits cleanly."""
    lane = lane_for(sqlite_engine)

    async def scenario(writer: Writer) -> tuple[int, str]:
        pid = lane.pid
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        answer = await writer.submit(received("m_1", score_completed("sj_1")))
        return pid, answer.status

    pid, status = run_with(lane, scenario)

    assert status == "applied"
    assert exited(pid, within=5)


CHILD_OF_A_DOOMED_PARENT = """
import asyncio, sys
from receiver.commit_process import ProcessLane

async def main():
    lane = ProcessLane(sys.argv[1], synchronous="FULL", log_format="json", log_level="warning")
    await lane.start()
    print("child", lane.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_commit_process_exits_when_its_parent_is_killed(sqlite_engine: Engine) -> None:
    """kill -9 of the serving process: its commit process sees end-of-file and exits."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD_OF_A_DOOMED_PARENT, str(sqlite_engine.url)],
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        while not line.startswith("child "):
            line = parent.stdout.readline()
        child = int(line.split()[1])
        parent.kill()
        parent.wait()
    assert exited(child)


def test_app_built_from_settings_commits_in_a_child_process(sqlite_engine: Engine) -> None:
    """``serve``'s way (the app builds its own engine): the process lane, end to end."""
    settings = Settings(nova_webhook_secrets=SECRET, database_url=str(sqlite_engine.url))
    app = create_app(settings)
    assert isinstance(app.state.receiver.webhook.writer.lane, ProcessLane)
    body = score_completed("sj_app")
    with TestClient(app) as client:
        response = client.post("/webhooks/nova", content=body, headers=signed(body))
    assert (response.status_code, response.json()) == (200, {"status": "applied"})
    assert stored_jobs(sqlite_engine) == ["sj_app"]


def test_readyz_is_503_while_the_commit_process_is_being_replaced(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load balancer stops sending deliveries while there is no commit process to take
    them (each would be answered 503), and sends them again once a new one runs."""
    monkeypatch.setattr(commit_process, "RESTART_DELAY_SECONDS", 1.5)
    settings = Settings(nova_webhook_secrets=SECRET, database_url=str(sqlite_engine.url))
    app = create_app(settings)
    lane = app.state.receiver.webhook.writer.lane
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        pid = lane.pid
        os.kill(pid, signal.SIGKILL)
        seen = poll(lambda: client.get("/readyz"), until=lambda r: r.status_code == 503)
        assert seen.json() == {"status": "unavailable"}
        again = poll(lambda: client.get("/readyz"), until=lambda r: r.status_code == 200)
        assert lane.pid not in (None, pid)
        assert again.json()["status"] == "ready"


def poll(get: Callable[[], Any], *, until: Callable[[Any], bool], within: float = 15.0) -> Any:
    """``get()`` every 20 ms until ``until`` holds for its value (which it returns)."""
    deadline = time.monotonic() + within
    while True:
        value = get()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def test_ingest_writer_thread_and_a_passed_in_engine_keep_the_thread_lane(
    sqlite_engine: Engine,
) -> None:
    """``INGEST_WRITER=thread``, or an engine handed in (which no other process can use)."""
    url = str(sqlite_engine.url)
    threaded = create_app(
        Settings(nova_webhook_secrets=SECRET, database_url=url, ingest_writer="thread")
    )
    handed_in = create_app(Settings(nova_webhook_secrets=SECRET), engine=sqlite_engine)
    for app in (threaded, handed_in):
        assert isinstance(app.state.receiver.webhook.writer.lane, ThreadLane)


def test_failures_cross_the_pipe_as_what_the_endpoint_answers() -> None:
    """StoreUnavailable stays itself (503 + Retry-After); any other failure arrives as
    CommitFailed with its type and message (the endpoint answers 503 and logs it)."""
    ok = Committed("applied", "score.completed", "sj_1", None)
    assert _decode(_encode(ok)) == ok
    unavailable = _decode(_encode(StoreUnavailable("database is locked")))
    assert isinstance(unavailable, StoreUnavailable)
    assert str(unavailable) == "database is locked"
    failed = _decode(_encode(ValueError("bad row")))
    assert isinstance(failed, CommitFailed)
    assert str(failed) == "ValueError: bad row"


def test_a_batch_queued_past_the_wait_bound_is_refused_without_touching_the_database(
    sqlite_engine: Engine,
) -> None:
    """In whichever lane: a batch older than ``max_wait`` is StoreUnavailable, unstored."""
    committer = GroupCommitter(sqlite_engine, max_wait=1.0)
    old = Batch(NOW, time.monotonic() - 5, [received("m_old", score_completed("sj_old"))])
    fresh = Batch(NOW, time.monotonic(), [received("m_new", score_completed("sj_new"))])
    try:
        (late,), (ok,) = committer.commit_batches([old, fresh])
    finally:
        committer.release()
    assert isinstance(late, StoreUnavailable)
    assert isinstance(ok, Committed)
    assert ok.status == "applied"
    assert stored_jobs(sqlite_engine) == ["sj_new"]


def test_the_clocks_time_reaches_the_commit_process_as_the_same_instant(
    sqlite_engine: Engine,
) -> None:
    """The batch's time crosses the pipe as naive UTC (cheaper to pickle); the child must
    store the same instant, whatever offset the clock gave it, to the microsecond."""
    clock = datetime(
        2026, 11, 29, 15, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    lane = lane_for(sqlite_engine)

    async def main() -> None:
        writer = Writer(lane, now=lambda: clock)
        await writer.start()
        try:
            await writer.submit(received("m_clock", score_completed("sj_clock")))
        finally:
            await writer.stop()

    asyncio.run(main())
    with sqlite_engine.connect() as conn:
        stored = conn.execute(
            sa.select(JOBS.c.first_seen_at).where(JOBS.c.scoring_job_id == "sj_clock")
        ).scalar_one()
    assert stored == datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
