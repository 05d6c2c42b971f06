"""The convergence promise: lossy webhooks plus ONE reconcile equal Nova's truth, every time.

Fake Nova drops 30 %, duplicates 20 % and reorders its signed webhooks into the real
receiver (``create_app`` under uvicorn on a loopback port, a SQLite file); 1,000 scoring
jobs in 42 batches, some applications rejected at intake, were created through the API.
One reconcile run must then make the store equal fake Nova's truth field by field, and a
second run must find nothing to fix. Several seeds, so "100 % of the time" has evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.app import create_app
from receiver.convergence import compare
from receiver.fake_nova import FakeNovaConfig, create_fake_nova
from receiver.nova import NovaClient
from receiver.reconcile import Reconciler
from receiver.serving import bound_socket, port_of, serving
from receiver.settings import Settings
from receiver.submit import submit_batches
from storage.db import transaction
from tests.fake_nova_helpers import API_KEY, TENANT, asgi_client

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SECRET = "whsec_convergence_test_secret_0123"
JOBS = ("job-backend", "job-frontend", "job-data")
APPLICATIONS_PER_JOB = 350  # 14 batches of 25 per job: 42 batches
REJECTED_EVERY = 21  # 1 in 21 resumes is "corrupt": 50 rejections, 1,000 scoring jobs


def applications(job_number: int) -> list[dict[str, Any]]:
    """Text and URL resumes; every ``REJECTED_EVERY``-th one overall is refused at intake."""
    items = []
    for n in range(APPLICATIONS_PER_JOB):
        app_id = f"{JOBS[job_number]}-app-{n:04d}"
        if (job_number * APPLICATIONS_PER_JOB + n) % REJECTED_EVERY == REJECTED_EVERY - 1:
            resume = {"type": "url", "url": f"https://files.example.com/{app_id}-corrupt.pdf"}
        elif n % 2:
            resume = {"type": "url", "url": f"https://files.example.com/{app_id}.pdf"}
        else:
            resume = {"type": "text", "content": f"# {app_id}\n\nPython, PostgreSQL."}
        items.append({"applicationId": app_id, "resume": resume})
    return items


def local_view(engine: Engine) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    """(stored results by scoring job id, rejected application ids by batch id)."""
    with transaction(engine, write=False) as store:
        return store.snapshot()


@pytest.mark.parametrize("seed", [1, 2])
async def test_one_reconcile_after_lossy_webhooks_equals_nova_truth(
    engine: Engine, seed: int
) -> None:
    """Drops, duplicates and reordering are repaired by one run; a second run fixes 0."""
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    now = lambda: datetime.now(UTC)  # noqa: E731 - the clock seam, inline
    fake = create_fake_nova(
        FakeNovaConfig(
            seed=seed,
            deliver_to=f"http://127.0.0.1:{port}/webhooks/nova",
            secret=SECRET,
            drop=0.3,
            duplicate=0.2,
            reorder=True,
            failure_rate=0.1,
            delivery_backoff=0.05,
        ),
        background_delivery=False,
    )
    settings = Settings(
        nova_webhook_secrets=SECRET, database_url=engine.url.render_as_string(hide_password=False)
    )

    async with (
        fake,
        serving(create_app(settings, engine=engine), sock),
        asgi_client(fake.app) as http,
    ):
        client = NovaClient(http, api_key=API_KEY, tenant_id=TENANT, rate_limit=200)
        created = []
        for number, job_id in enumerate(JOBS):
            created += await submit_batches(
                client,
                engine,
                job_id=job_id,
                tenant_id=TENANT,
                fields={"jobDescription": f"{job_id}: senior engineer"},
                applications=applications(number),
                now=now,
            )
        deliveries = await fake.run_until_idle(timeout=120)
        results_before, _ = local_view(engine)

        first = await Reconciler(engine, client, now=now).run()
        truth = fake.truth()
        second = await Reconciler(engine, client, now=now).run()

    assert len(created) == 42
    assert sum(len(c.scoring_job_ids) for c in created) == 1000
    assert sum(len(c.rejected) for c in created) == 50
    assert deliveries.dropped > 0
    assert deliveries.duplicated > 0
    assert deliveries.failed == 0  # the receiver acknowledged every delivery it was sent
    terminal_before = sum(r["status"] != "pending" for r in results_before.values())
    assert terminal_before < 1000  # the webhooks alone left gaps

    results, rejected = local_view(engine)
    comparison = compare(truth, results, rejected)
    assert comparison.mismatches == []
    assert comparison.converged
    assert len(comparison.batches) == 42
    assert first.converged, first.as_dict()
    assert first.results_added + first.results_updated == 1000 - terminal_before
    assert first.errors == {}
    assert (second.results_added, second.results_updated, second.rejected_recorded) == (0, 0, 0)
    assert second.converged
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM scoring_job")).scalar_one()
    assert rows == 1000  # duplicates never became extra rows
