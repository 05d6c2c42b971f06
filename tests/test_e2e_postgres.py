"""Several instances on one PostgreSQL database: the database, not the process, deduplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.servers import SignedDelivery, running_server, score_completed

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(90)]

COPIES = 60


@pytest.fixture(name="shared_url")
def fixture_shared_url(postgres_engine: Engine) -> str:
    """The URL of the test's private, migrated PostgreSQL schema, for server processes."""
    return postgres_engine.url.render_as_string(hide_password=False)


async def _post_to_both(urls: list[str], delivery: SignedDelivery) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=COPIES)) as http:
        return await asyncio.gather(
            *(
                http.post(urls[n % len(urls)], content=delivery.body, headers=delivery.headers)
                for n in range(COPIES)
            )
        )


def test_identical_deliveries_to_two_instances_leave_one_result(
    tmp_path: Path, shared_url: str, postgres_engine: Engine
) -> None:
    """60 concurrent copies spread over two instances (2 workers each): exactly one applied."""
    delivery = score_completed()
    with (
        running_server(tmp_path, shared_url, workers=2, name="a") as first,
        running_server(tmp_path, shared_url, workers=2, name="b") as second,
    ):
        responses = asyncio.run(_post_to_both([first.webhook_url, second.webhook_url], delivery))

    assert [r.status_code for r in responses] == [200] * COPIES
    outcomes = [r.json()["status"] for r in responses]
    assert outcomes.count("applied") == 1
    assert set(outcomes) == {"applied", "duplicate"}
    with postgres_engine.connect() as conn:
        jobs = conn.execute(
            sa.text("SELECT score, delivery_count FROM scoring_job WHERE scoring_job_id = :id"),
            {"id": delivery.scoring_job_id},
        ).all()
        inbox = conn.execute(
            sa.text("SELECT attempts FROM delivery WHERE webhook_id = :id"),
            {"id": delivery.webhook_id},
        ).all()
    assert [tuple(row) for row in jobs] == [(7, COPIES)]
    assert [tuple(row) for row in inbox] == [(COPIES,)]
