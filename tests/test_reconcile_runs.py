"""Reconcile runs as the database records them: a run that fails mid-way, and the
``/metrics`` gauges read from the recorded runs.

Fake Nova runs in process (httpx's ASGI transport) on a manual clock; the failure is an
unexpected exception raised by the transport on one request, as a bug or a broken proxy would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.fake_nova import FakeNova
from receiver.reconcile import Reconciler, Summary
from storage.db import transaction
from storage.records import BatchState
from tests.fake_nova_helpers import TENANT, ManualClock, make_client, make_fake

pytestmark = pytest.mark.anyio


class Broken(Exception):
    """What the transport raises: nothing the reconciler knows how to handle."""


def failing_for(app: Any, batch_id: str) -> Any:
    """``app`` as an ASGI app whose requests about ``batch_id`` raise ``Broken``."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and batch_id in scope["path"]:
            raise Broken(f"{scope['path']} broke")
        await app(scope, receive, send)

    return wrapped


async def run_once(engine: Engine, app: Any, clock: ManualClock) -> Summary:
    """One real run, one batch at a time, against ``app`` in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nova") as http:
        reconciler = Reconciler(engine, make_client(http, clock), now=clock.now, concurrency=1)
        return await reconciler.run()


def track_three_batches(engine: Engine, fake: FakeNova, clock: ManualClock) -> str:
    """Three tracked batches of two jobs; returns the id of the one reconciled last."""
    ids = []
    with transaction(engine) as store:
        for n in range(3):
            batch = fake.state.create_batch(f"job-{n}", TENANT, [f"app-{n}-a", f"app-{n}-b"])
            state = BatchState(batch.id, batch.job_id, TENANT, batch.api)
            store.track_batch(state, now=clock.now())
            ids.append(batch.id)
    return max(ids)  # a run takes the batches in id order


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


async def test_a_run_failing_mid_way_keeps_its_work_is_recorded_and_frees_the_lease(
    engine: Engine,
) -> None:
    """The error propagates; the batches reconciled before it stay stored and counted in
    the run's row, which is finished; no lease is left; the next run fills the rest."""
    clock = ManualClock()
    fake = make_fake(clock)
    last = track_three_batches(engine, fake, clock)

    with pytest.raises(Broken):
        await run_once(engine, failing_for(fake.app, last), clock)

    assert count(engine, "scoring_job") == 4  # the two batches committed before the failure
    assert count(engine, "lease") == 0
    with transaction(engine, write=False) as store:
        [failed_run] = store.list_runs()
    assert failed_run["finished_at"] is not None
    assert failed_run["results_added"] == 4

    clock.advance(60)
    second = await run_once(engine, fake.app, clock)

    assert second.converged, second.as_dict()
    assert second.results_added == 2
    assert count(engine, "scoring_job") == 6


async def test_metrics_show_the_runs_and_fixes_the_database_records(
    engine: Engine, make_app: Callable[..., Starlette]
) -> None:
    """``nova_sink_reconcile_runs`` and ``nova_sink_reconcile_fixes`` follow the runs
    recorded in the database (by whichever process ran them), a failed run included."""
    clock = ManualClock()
    fake = make_fake(clock)
    last = track_three_batches(engine, fake, clock)

    def scraped() -> tuple[float, float]:
        with TestClient(make_app(engine=engine)) as client:
            text = client.get("/metrics").text
        runs = re.search(r"^nova_sink_reconcile_runs (\S+)$", text, re.M)
        fixes = re.search(r"^nova_sink_reconcile_fixes (\S+)$", text, re.M)
        assert runs is not None, text
        assert fixes is not None, text
        return float(runs.group(1)), float(fixes.group(1))

    assert scraped() == (0, 0)
    with pytest.raises(Broken):
        await run_once(engine, failing_for(fake.app, last), clock)
    clock.advance(60)
    await run_once(engine, fake.app, clock)

    assert scraped() == (2, 6)
