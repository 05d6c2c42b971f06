"""The writer's shutdown path: what is queued when it stops is committed, and a
delivery that comes after is refused (503 at the endpoint), never left waiting."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.ingest import Received
from receiver.writer import ThreadLane, Writer
from storage.errors import StoreUnavailable
from tests.factories import NOW, received, score_completed

pytestmark = pytest.mark.anyio


def delivery(scoring_job_id: str) -> Received:
    """A verified score.completed as the endpoint hands it to the writer."""
    return received(f"wh_{scoring_job_id}", score_completed(scoring_job_id))


def stored_jobs(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        query = sa.text("SELECT scoring_job_id FROM scoring_job ORDER BY scoring_job_id")
        return list(conn.execute(query).scalars())


async def test_stop_commits_every_delivery_queued_before_it(engine: Engine) -> None:
    """Deliveries waiting in the queue when stop is called are all applied, then it ends."""
    writer = Writer(ThreadLane(engine), now=lambda: NOW)
    await writer.start()
    ids = [f"sj_{n:02d}" for n in range(20)]
    waiting = [asyncio.ensure_future(writer.submit(delivery(i))) for i in ids]
    await asyncio.sleep(0)  # every submit has queued its delivery and now waits for it

    await writer.stop()

    assert [c.status for c in await asyncio.gather(*waiting)] == ["applied"] * len(ids)
    assert stored_jobs(engine) == ids


async def test_a_delivery_after_stop_is_refused_as_store_unavailable(engine: Engine) -> None:
    """A stopped writer answers at once with StoreUnavailable and stores nothing."""
    writer = Writer(ThreadLane(engine), now=lambda: NOW)
    await writer.start()
    await writer.stop()

    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(writer.submit(delivery("sj_late")), timeout=10)

    assert stored_jobs(engine) == []


async def test_a_writer_never_started_refuses_instead_of_hanging(engine: Engine) -> None:
    """An app used without its lifespan (writer not started): StoreUnavailable, no hang."""
    writer = Writer(ThreadLane(engine), now=lambda: NOW)

    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(writer.submit(delivery("sj_early")), timeout=10)

    await writer.stop()  # stopping a writer that never ran is harmless
    assert stored_jobs(engine) == []
