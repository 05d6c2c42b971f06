"""One commit process for every worker (``receiver.commit_hub``): what ``serve --workers N``
runs on SQLite. Real processes, real sockets, a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.commit_hub import SharedCommitProcess
from receiver.commit_process import LaneConfig, ProcessLane
from receiver.writer import Writer
from storage.errors import StoreUnavailable
from tests.factories import NOW, received, score_completed
from tests.servers import SECRET, migrated_database, server_env, spawn_serve
from tests.servers import score_completed as signed_score_completed

pytestmark = pytest.mark.slow  # each test starts Python child processes


def shared_for(engine: Engine) -> SharedCommitProcess:
    return SharedCommitProcess(LaneConfig(str(engine.url), "FULL", "json", "warning"))


def worker_lane(engine: Engine, shared: SharedCommitProcess) -> ProcessLane:
    """A worker's lane, as ``create_app`` builds it under ``serve --workers N``."""
    return ProcessLane(
        str(engine.url), synchronous="FULL", log_format="json", log_level="warning",
        shared=shared.path,
    )  # fmt: skip


def stored_jobs(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        query = sa.text("SELECT scoring_job_id FROM scoring_job ORDER BY scoring_job_id")
        return list(conn.execute(query).scalars())


async def started_writers(lanes: list[ProcessLane]) -> list[Writer]:
    writers = [Writer(lane, now=lambda: NOW) for lane in lanes]
    for writer in writers:
        await writer.start()
    return writers


async def eventually_running(lane: ProcessLane, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not lane.running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert lane.running, "the worker did not connect again"


def test_two_workers_batches_are_committed_by_one_process_and_answered_to_their_own(
    sqlite_engine: Engine,
) -> None:
    """Interleaved deliveries from two workers, some the same result: one commit process
    serves both, and each worker gets, for each of its deliveries, that delivery's answer."""
    with shared_for(sqlite_engine) as shared:
        lanes = [worker_lane(sqlite_engine, shared), worker_lane(sqlite_engine, shared)]

        async def scenario() -> tuple[list[list[Any]], list[int | None]]:
            writers = await started_writers(lanes)
            try:
                jobs = [[f"sj_{w}_{n:02d}" for n in range(15)] for w in range(2)]
                submitted = [
                    [writer.submit(received(f"m_{job}", score_completed(job))) for job in theirs]
                    # Each worker also delivers worker 0's first result again: whichever
                    # copies commit after the first are duplicates.
                    + [writer.submit(received("m_again", score_completed(jobs[0][0])))]
                    for writer, theirs in zip(writers, jobs, strict=True)
                ]
                answers = await asyncio.gather(*(asyncio.gather(*s) for s in submitted))
                return [list(a) for a in answers], [lane.pid for lane in lanes]
            finally:
                for writer in writers:
                    await writer.stop()

        answers, pids = asyncio.run(scenario())
        shared_pid = shared.pid

    assert pids == [shared_pid, shared_pid]
    assert shared_pid not in (None, os.getpid())
    for w, theirs in enumerate(answers):
        assert [a.scoring_job_id for a in theirs[:15]] == [f"sj_{w}_{n:02d}" for n in range(15)]
    statuses = [a.status for theirs in answers for a in theirs]
    assert statuses.count("duplicate") == 2
    assert statuses.count("applied") == 30
    expected = sorted(f"sj_{w}_{n:02d}" for w in (0, 1) for n in range(15))
    assert stored_jobs(sqlite_engine) == expected


def test_a_worker_that_goes_away_leaves_the_others_committing(sqlite_engine: Engine) -> None:
    """One worker's connection closes without a word: the other keeps its answers."""
    with shared_for(sqlite_engine) as shared:
        gone, staying = worker_lane(sqlite_engine, shared), worker_lane(sqlite_engine, shared)

        async def scenario() -> list[str]:
            writers = await started_writers([gone, staying])
            try:
                await writers[0].submit(received("m_a", score_completed("sj_a")))
                assert gone._transport is not None
                gone._transport.abort()  # a worker killed mid-run: its socket just closes
                return [
                    (await writers[1].submit(received(f"m_{n}", score_completed(f"sj_{n}")))).status
                    for n in range(3)
                ]
            finally:
                await writers[1].stop()

        statuses = asyncio.run(scenario())

    assert statuses == ["applied"] * 3
    assert stored_jobs(sqlite_engine) == ["sj_0", "sj_1", "sj_2", "sj_a"]


def test_a_killed_shared_commit_process_is_replaced_and_its_workers_connect_again(
    sqlite_engine: Engine,
) -> None:
    """kill -9 of the shared process: its deliveries in hand are 503 (Nova retries), serve
    starts another on the same socket, and the worker commits through the new one."""
    with shared_for(sqlite_engine) as shared:
        lane = worker_lane(sqlite_engine, shared)
        first_pid = shared.pid
        assert first_pid is not None

        async def scenario() -> tuple[str, Any, str, int | None]:
            (writer,) = await started_writers([lane])
            try:
                first = await writer.submit(received("m_1", score_completed("sj_1")))
                os.kill(first_pid, signal.SIGKILL)
                try:
                    during: Any = await writer.submit(received("m_2", score_completed("sj_2")))
                except StoreUnavailable as exc:
                    during = exc
                await eventually_running(lane)
                after = await writer.submit(received("m_3", score_completed("sj_3")))
                return first.status, during, after.status, lane.pid
            finally:
                await writer.stop()

        first, during, after, pid_after = asyncio.run(scenario())
        replaced_by = shared.pid

    assert (first, after) == ("applied", "applied")
    assert isinstance(during, StoreUnavailable)
    assert pid_after == replaced_by
    assert replaced_by not in (None, first_pid)
    assert stored_jobs(sqlite_engine) == ["sj_1", "sj_3"]


def test_the_shared_commit_process_stops_with_serve_and_leaves_no_socket(
    sqlite_engine: Engine,
) -> None:
    """After the block: the process has exited, and its socket's private directory (only
    we may enter it) is gone."""
    with shared_for(sqlite_engine) as shared:
        pid, path = shared.pid, Path(shared.path)
        assert pid is not None
        assert path.is_socket()
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert not path.parent.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_serve_with_two_workers_on_sqlite_runs_one_commit_process(tmp_path: Path) -> None:
    """``nova-sink serve --workers 2`` on a SQLite file: deliveries reach both workers, all
    are stored, and a single commit process, a child of serve, committed them."""
    database_url = migrated_database(tmp_path / "sink.db")
    env = server_env(database_url, secret=SECRET)
    server = spawn_serve(tmp_path, database_url, env, workers=2)
    proc = server.proc
    deliveries = [signed_score_completed() for _ in range(12)]
    try:
        server.wait_until_healthy()
        for delivery in deliveries:  # a new connection each: both workers take some
            answer = httpx.post(server.webhook_url, content=delivery.body, headers=delivery.headers)
            assert answer.status_code == 200, answer.text
        children = children_of(proc.pid)
    finally:
        assert server.stop() == 0

    committers = [pid for pid, argv in children if b"receiver.commit_process" in argv]
    workers = [pid for pid, argv in children if b"spawn_main" in argv]
    assert len(workers) == 2
    assert len(committers) == 1
    assert not any(children_of(worker) for worker in workers)
    engine = sa.create_engine(database_url)
    try:
        assert len(stored_jobs(engine)) == len(deliveries)
    finally:
        engine.dispose()
    assert "sqlite_workers" not in server.output()


def children_of(parent: int) -> list[tuple[int, bytes]]:
    """(pid, command line) of each running child of ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
            found.append((int(entry.name), argv))
    return found


def test_a_shared_commit_process_that_cannot_start_is_an_error_that_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit process that dies before it is ready (here: a database URL no driver
    knows) fails ``serve``'s start with ``StoreUnavailable``, and no socket is left."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    shared = SharedCommitProcess(LaneConfig("nosuchdriver://x", "FULL", "json", "warning"))

    with pytest.raises(StoreUnavailable, match="did not start"), shared:
        pass

    assert list(tmp_path.iterdir()) == []


# A stand-in for serve: it holds the shared commit process, and the test kills it.
_SERVE_STAND_IN = """
import sys, time
from receiver.commit_hub import SharedCommitProcess
from receiver.commit_process import LaneConfig
with SharedCommitProcess(LaneConfig(sys.argv[1], "FULL", "json", "warning")) as shared:
    print("READY", shared.path, shared.pid, flush=True)
    time.sleep(600)
"""


def test_with_serve_killed_the_commit_process_still_commits_for_a_draining_worker(
    sqlite_engine: Engine,
) -> None:
    """kill -9 of serve ends the control socket while a worker is still draining: that
    worker's batches are still committed, and once it disconnects the process exits and
    removes its socket and private directory, which serve could no longer do."""
    with subprocess.Popen(
        [sys.executable, "-c", _SERVE_STAND_IN, str(sqlite_engine.url)], stdout=subprocess.PIPE
    ) as stand_in:
        assert stand_in.stdout is not None
        try:
            line = b""
            while not line.startswith(b"READY "):  # the processes' log lines come first
                line = stand_in.stdout.readline()
                assert line, "the stand-in for serve exited"
            socket_path, pid = line.split()[1:]
            lane = ProcessLane(
                str(sqlite_engine.url), synchronous="FULL", log_format="json", log_level="warning",
                shared=socket_path.decode(),
            )  # fmt: skip

            async def scenario() -> tuple[str, str]:
                (writer,) = await started_writers([lane])
                try:
                    before = await writer.submit(received("m_1", score_completed("sj_1")))
                    stand_in.kill()
                    stand_in.wait()
                    after = await writer.submit(received("m_2", score_completed("sj_2")))
                    return before.status, after.status
                finally:
                    await writer.stop()

            assert asyncio.run(scenario()) == ("applied", "applied")
        finally:
            stand_in.kill()
    assert_exits(int(pid))
    assert not Path(socket_path.decode()).parent.exists()
    assert stored_jobs(sqlite_engine) == ["sj_1", "sj_2"]


def test_serve_killed_with_workers_leaves_no_process_socket_or_port_behind(
    tmp_path: Path,
) -> None:
    """kill -9 of ``serve --workers 2`` on SQLite: uvicorn's workers would hold the port on
    their own; they notice that serve is gone and stop, the commit process follows once
    they have disconnected and removes its socket, and a new serve could bind the port."""
    database_url = migrated_database(tmp_path / "sink.db")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = server_env(database_url, secret=SECRET) | {"TMPDIR": str(temporary)}
    server = spawn_serve(tmp_path, database_url, env, workers=2)
    proc, port = server.proc, server.port
    try:
        server.wait_until_healthy()
        delivery = signed_score_completed()
        answer = httpx.post(server.webhook_url, content=delivery.body, headers=delivery.headers)
        assert answer.status_code == 200, answer.text
        children = children_of(proc.pid)
        assert sum(b"spawn_main" in argv for _, argv in children) == 2  # the workers
        assert sum(b"receiver.commit_process" in argv for _, argv in children) == 1
        assert len(commit_directories(temporary)) == 1

        proc.kill()
        proc.wait()
        for pid, _ in children:  # multiprocessing's resource tracker too
            assert_exits(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left, if the test failed
    assert commit_directories(temporary) == []
    with socket.create_server(("127.0.0.1", port)):  # the port is free again
        pass
    assert "supervisor_gone" in server.output()


def commit_directories(temporary: Path) -> list[Path]:
    """The commit sockets' private directories (not the workers' metrics directory)."""
    return [path for path in temporary.iterdir() if not path.name.startswith("nova-sink-metrics")]


def assert_exits(pid: int, within: float = 30.0) -> None:
    """``pid`` has exited (or is a zombie nobody reaps: this sandbox's init may not)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return
        if state[state.rindex(")") + 2] == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs after {within} s")
