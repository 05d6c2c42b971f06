"""SQLite's write lock as the writer's lane takes it: by polling, soon after each miss.

Real SQLite files; the lock is held by a second connection. The waits are counted through
the ``sleep`` and ``clock`` seams, never timed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.commit import GroupCommitter
from receiver.ingest import Committed
from storage.db import BUSY_TIMEOUT_MS, WriteLane, take_write_lock
from storage.errors import StoreUnavailable
from tests.factories import NOW, received, score_completed


class FakeTime:
    """``sleep`` and ``clock`` for ``take_write_lock``: records each wait, and frees the
    lock (commits the holder) after ``free_after`` of them."""

    def __init__(self, holder: sqlite3.Connection, free_after: int | None) -> None:
        self.waits: list[float] = []
        self.now = 0.0
        self._holder = holder
        self._free_after = free_after

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if len(self.waits) == self._free_after:
            self._holder.execute("COMMIT")

    def clock(self) -> float:
        return self.now

    def take(self, begin: Callable[[], object], *, timeout: float = 5) -> None:
        """``take_write_lock`` on this fake time."""
        take_write_lock(begin, timeout=timeout, sleep=self.sleep, clock=self.clock)


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "lock.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
    return path


@pytest.fixture
def holder(file: Path) -> Iterator[sqlite3.Connection]:
    """A second connection holding the write lock."""
    conn = sqlite3.connect(file, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    conn.close()


@pytest.fixture
def lane(file: Path) -> Iterator[sqlite3.Connection]:
    """A connection without a busy timeout, as the lane's is."""
    conn = sqlite3.connect(file, isolation_level=None, timeout=0)
    yield conn
    conn.close()


@pytest.mark.parametrize(
    ("free_after", "waits"),
    [
        (1, [0.0002]),
        (4, [0.0002, 0.0004, 0.0008, 0.0016]),
        (8, [0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.004, 0.004, 0.004]),
    ],
)
def test_a_missed_write_lock_is_tried_again_soon_and_taken_as_soon_as_it_is_free(
    holder: sqlite3.Connection, lane: sqlite3.Connection, free_after: int, waits: list[float]
) -> None:
    time = FakeTime(holder, free_after)
    time.take(lambda: lane.execute("BEGIN IMMEDIATE"))
    assert lane.in_transaction
    assert time.waits == pytest.approx(waits)


def test_a_write_lock_held_past_the_timeout_is_the_lock_error(
    holder: sqlite3.Connection, lane: sqlite3.Connection
) -> None:
    time = FakeTime(holder, free_after=None)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        time.take(lambda: lane.execute("BEGIN IMMEDIATE"), timeout=0.05)
    assert not lane.in_transaction
    assert 0.05 <= sum(time.waits) <= 0.05 + 0.004


def test_an_error_other_than_a_taken_lock_is_not_retried(lane: sqlite3.Connection) -> None:
    time = FakeTime(lane, free_after=None)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        time.take(lambda: lane.execute("INSERT INTO missing VALUES (1)"))
    assert time.waits == []


def busy_timeout(conn: sa.Connection) -> int:
    return int(conn.connection.driver_connection.execute("PRAGMA busy_timeout").fetchone()[0])


def test_the_lane_commits_once_another_writer_lets_go_of_the_lock(sqlite_engine: Engine) -> None:
    """Its connection has no busy timeout: without the polling it would fail at once."""
    path = sqlite_engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.2, other.execute, ["COMMIT"]).start()
    committer = GroupCommitter(sqlite_engine, max_wait=10)
    try:
        (outcome,) = committer.commit([received("m_1", score_completed("sj_1"))], NOW)
    finally:
        committer.release()
        other.close()
    assert isinstance(outcome, Committed)
    assert outcome.status == "applied"


def test_the_lanes_connection_goes_back_to_the_pool_with_its_busy_timeout(
    sqlite_engine: Engine,
) -> None:
    lane = WriteLane(sqlite_engine)
    with lane.transaction() as store:
        assert busy_timeout(store.conn) == 0
    lane.release()
    with sqlite_engine.connect() as conn:  # the pool's one connection, given back
        assert busy_timeout(conn) == BUSY_TIMEOUT_MS


def test_the_lane_answers_unavailable_when_the_lock_stays_taken_past_the_timeout(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane begins on the driver's connection: its lock error must still be the
    store's "unavailable" (the endpoint's 503), not the driver's own exception."""
    monkeypatch.setattr("storage.db.BUSY_TIMEOUT_MS", 50)
    path = sqlite_engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    lane = WriteLane(sqlite_engine)
    try:
        with pytest.raises(StoreUnavailable, match="database is locked"), lane.transaction():
            pass
    finally:
        lane.release()
        other.close()
