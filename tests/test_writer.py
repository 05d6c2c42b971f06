"""The group-commit writer: what goes into one commit."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.events import parse_event
from receiver.ingest import Accepted
from receiver.writer import Writer
from tests.factories import NOW, inbound, score_completed


def accepted(scoring_job_id: str) -> Accepted:
    body = score_completed(scoring_job_id)
    return Accepted(
        inbound(f"m_{scoring_job_id}", body=body, scoring_job_id=scoring_job_id), parse_event(body)
    )


def test_next_group_waits_for_the_requests_just_answered(sqlite_engine: Engine) -> None:
    """A delivery sent right after its predecessor was answered joins the group queued
    meanwhile, instead of paying a commit of its own."""
    ticks = itertools.count()
    writer = Writer(sqlite_engine, now=lambda: NOW + timedelta(seconds=next(ticks)))
    path = sqlite_engine.url.database
    assert path is not None

    async def scenario() -> None:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the first group waits for SQLite's write lock

        async def first_then_follow_up() -> None:
            await writer.submit(accepted("sj_first"))
            await writer.submit(accepted("sj_follow_up"))  # what its client sends next

        chain = asyncio.ensure_future(first_then_follow_up())
        await asyncio.sleep(0.2)  # the first group is with the writer, stuck on the lock
        queued = [asyncio.ensure_future(writer.submit(accepted(f"sj_q{n}"))) for n in range(2)]
        await asyncio.sleep(0.05)
        holder.execute("ROLLBACK")
        holder.close()
        await asyncio.gather(chain, *queued)

    writer.start()
    try:
        asyncio.run(scenario())
    finally:
        writer.stop()
    with sqlite_engine.connect() as conn:
        groups = dict(
            conn.execute(sa.text("SELECT scoring_job_id, received_at FROM delivery")).all()
        )
    assert groups["sj_first"] != groups["sj_q0"]
    assert groups["sj_q0"] == groups["sj_q1"] == groups["sj_follow_up"]


def test_writer_keeps_its_connection_under_load_and_gives_it_back_when_idle(
    sqlite_engine: Engine,
) -> None:
    """Consecutive groups share one pooled connection (no check-out per commit); an idle
    writer holds none, so the pool's pre-ping checks it again before the next group."""
    pool = sqlite_engine.pool
    writer = Writer(sqlite_engine, now=lambda: NOW, release_after=0.3)

    async def scenario() -> list[int]:
        held = []
        for n in range(3):  # three groups in a row, each answered before the next
            await writer.submit(accepted(f"sj_{n}"))
            held.append(pool.checkedout())  # type: ignore[attr-defined]
        await asyncio.sleep(0.6)
        held.append(pool.checkedout())  # type: ignore[attr-defined]
        return held

    writer.start()
    try:
        held = asyncio.run(scenario())
    finally:
        writer.stop()
    assert held == [1, 1, 1, 0]
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
