"""The group-commit writer: what goes into one commit."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.ingest import Received
from receiver.writer import ThreadLane, Writer
from tests.factories import NOW, received, score_completed


def delivery(scoring_job_id: str) -> Received:
    return received(f"m_{scoring_job_id}", score_completed(scoring_job_id))


def test_batches_queued_while_a_group_commits_are_committed_together(
    sqlite_engine: Engine,
) -> None:
    """Deliveries handed over in separate loop turns while the lane is busy go into its
    next group, one commit for all of them (the clock ticks once per batch: a group's rows
    carry its last batch's time)."""
    ticks = itertools.count()
    writer = Writer(ThreadLane(sqlite_engine), now=lambda: NOW + timedelta(seconds=next(ticks)))
    path = sqlite_engine.url.database
    assert path is not None

    async def scenario() -> None:
        await writer.start()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the first group waits for SQLite's write lock
        first = asyncio.ensure_future(writer.submit(delivery("sj_first")))
        await asyncio.sleep(0.2)  # the first group is with the lane, stuck on the lock
        queued = []
        for n in range(3):  # three batches: one loop turn each
            queued.append(asyncio.ensure_future(writer.submit(delivery(f"sj_q{n}"))))
            await asyncio.sleep(0.02)
        holder.execute("ROLLBACK")
        holder.close()
        await asyncio.gather(first, *queued)
        await writer.stop()

    asyncio.run(scenario())
    with sqlite_engine.connect() as conn:
        groups = dict(
            conn.execute(sa.text("SELECT scoring_job_id, received_at FROM delivery")).all()
        )
    assert groups["sj_first"] != groups["sj_q0"]
    assert groups["sj_q0"] == groups["sj_q1"] == groups["sj_q2"]


def test_writer_keeps_its_connection_under_load_and_gives_it_back_when_idle(
    sqlite_engine: Engine,
) -> None:
    """Consecutive groups share one pooled connection (no check-out per commit); an idle
    writer holds none, so the pool's pre-ping checks it again before the next group."""
    pool = sqlite_engine.pool
    writer = Writer(ThreadLane(sqlite_engine, release_after=0.3), now=lambda: NOW)

    async def scenario() -> list[int]:
        await writer.start()
        held = []
        for n in range(3):  # three groups in a row, each answered before the next
            await writer.submit(delivery(f"sj_{n}"))
            held.append(pool.checkedout())  # type: ignore[attr-defined]
        await asyncio.sleep(0.6)
        held.append(pool.checkedout())  # type: ignore[attr-defined]
        await writer.stop()
        return held

    held = asyncio.run(scenario())
    assert held == [1, 1, 1, 0]
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
