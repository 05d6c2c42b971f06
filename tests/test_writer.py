"""The group-commit writer: what goes into one commit."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.commit import Batch
from receiver.ingest import Committed, Received
from receiver.writer import Done, SpreadLane, ThreadLane, Writer
from storage.errors import StoreUnavailable
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


class HeldLane:
    """A lane that keeps what it is sent until told to answer: which lane got what."""

    def __init__(self) -> None:
        self.running = False
        self.held: list[tuple[Batch, Done]] = []

    async def start(self) -> None:
        self.running = True

    def send(self, batch: Batch, done: Done) -> None:
        self.held.append((batch, done))

    def answer(self) -> None:
        batch, done = self.held.pop(0)
        done(
            [Committed("applied", "score.completed", row.delivery_key, None) for row in batch.rows]
        )

    async def stop(self) -> None:
        self.running = False


def test_spread_lanes_hand_each_batch_to_the_lane_with_the_fewest_in_hand() -> None:
    """A batch goes to an idle lane before a busy one; answers reach their own waiters."""
    first, second = HeldLane(), HeldLane()
    writer = Writer(SpreadLane([first, second]), now=lambda: NOW)

    async def scenario() -> list[str | None]:
        await writer.start()
        a = asyncio.ensure_future(writer.submit(delivery("sj_a")))
        await asyncio.sleep(0)  # one loop turn: one batch
        await asyncio.sleep(0)
        b = asyncio.ensure_future(writer.submit(delivery("sj_b")))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [len(lane.held) for lane in (first, second)] == [1, 1]
        second.answer()  # the second lane is idle again: it takes the next batch
        c = asyncio.ensure_future(writer.submit(delivery("sj_c")))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [len(lane.held) for lane in (first, second)] == [1, 1]
        first.answer()
        second.answer()
        return [(await f).scoring_job_id for f in (a, b, c)]

    assert asyncio.run(scenario()) == ["m_sj_a", "m_sj_b", "m_sj_c"]


def test_spread_lanes_pass_over_a_lane_that_is_not_running() -> None:
    """A lane being replaced (its commit process died) takes no batches; the writer still
    runs on the other, and is down only when every lane is."""
    first, second = HeldLane(), HeldLane()
    lanes = SpreadLane([first, second])
    writer = Writer(lanes, now=lambda: NOW)

    async def scenario() -> None:
        await writer.start()
        first.running = False
        pending = [asyncio.ensure_future(writer.submit(delivery(f"sj_{n}"))) for n in range(3)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert (len(first.held), len(second.held)) == (0, 1)
        second.answer()
        await asyncio.gather(*pending)
        second.running = False
        assert not lanes.running
        with pytest.raises(StoreUnavailable):
            await writer.submit(delivery("sj_down"))

    asyncio.run(scenario())


def test_two_lanes_on_postgresql_store_concurrent_repeats_of_a_result_once(
    postgres_engine: Engine,
) -> None:
    """Two lanes commit at once, as two instances do: every repeat of a result, whichever
    lane has it, is answered and counted on the one result, which the change feed records
    once, numbered without a gap."""
    jobs = [f"sj_{n:02d}" for n in range(12)]
    copies = 5
    lanes = SpreadLane([ThreadLane(postgres_engine), ThreadLane(postgres_engine)])
    writer = Writer(lanes, now=lambda: NOW)

    async def scenario() -> list[str]:
        await writer.start()
        try:
            tasks = []
            for copy in range(copies):
                for job in jobs:
                    item = received(f"m_{job}_{copy}", score_completed(job), webhook_id=f"w{copy}")
                    tasks.append(asyncio.ensure_future(writer.submit(item)))
                await asyncio.sleep(0.001)  # separate batches, spread over both lanes
            return [answer.status for answer in await asyncio.gather(*tasks)]
        finally:
            await writer.stop()

    statuses = asyncio.run(scenario())
    assert sorted(statuses) == sorted(
        ["applied"] * len(jobs) + ["duplicate"] * (len(statuses) - len(jobs))
    )
    with postgres_engine.connect() as conn:
        query = sa.text("SELECT scoring_job_id, delivery_count FROM scoring_job")
        counts = dict(conn.execute(query).all())
        seqs = list(conn.execute(sa.text("SELECT seq FROM result_change ORDER BY seq")).scalars())
        created = conn.execute(
            sa.text(
                "SELECT count(DISTINCT scoring_job_id) FROM result_change WHERE kind = 'created'"
            )
        ).scalar_one()
    assert counts == dict.fromkeys(jobs, copies)
    assert seqs == list(range(1, len(jobs) + 1))
    assert created == len(jobs)
