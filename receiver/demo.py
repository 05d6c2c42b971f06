"""``nova-sink demo``: the whole system end to end, on a temporary SQLite file.

Fake Nova and the receiver run as real uvicorn servers on loopback ports. A batch of
sample applications is submitted over HTTP, fake Nova delivers signed webhooks with some
dropped, duplicated and reordered, reconcile closes the gaps through the API, and the
local store is compared with fake Nova's truth, field by field.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from receiver.app import create_app
from receiver.convergence import Comparison, compare
from receiver.fake_nova import FakeNovaConfig, create_fake_nova
from receiver.fake_nova.delivery import DeliveryStats
from receiver.nova import NovaClient, build_http_client
from receiver.reconcile import Reconciler, Summary
from receiver.serving import bound_socket, port_of, serving
from receiver.settings import Settings
from receiver.submit import submit_batches
from storage import schema
from storage.db import Engine, make_engine, transaction

DEMO_SECRET = "whsec_nova_sink_demo_secret"  # noqa: S105 - a throwaway secret for loopback
DEMO_KEY = "sk_test_nova_sink_demo"
JOB_ID = "job-demo-backend-engineer"
TENANT = "demo-tenant"
JOB_DESCRIPTION = (
    "Senior Backend Engineer: Python, PostgreSQL, distributed systems; owns webhook "
    "ingestion and reconciliation pipelines end to end."
)


def sample_applications(count: int, *, rejected: int = 2) -> list[dict[str, Any]]:
    """``count`` applications, the last ``rejected`` of which fake Nova refuses at intake."""
    applications = []
    for n in range(1, count + 1):
        app_id = f"app-{n:04d}"
        if n > count - rejected:
            resume = {"type": "url", "url": f"https://files.example.com/{app_id}-corrupt.pdf"}
        elif n % 2:
            resume = {"type": "url", "url": f"https://files.example.com/{app_id}.pdf"}
        else:
            resume = {"type": "text", "content": f"# Candidate {n}\n\n{n % 9 + 1} years of Python."}
        applications.append({"applicationId": app_id, "resume": resume})
    return applications


@dataclass
class DemoResult:
    database: Path
    applications: int
    batches: int
    scoring_jobs: int
    rejected: int
    deliveries: DeliveryStats
    stored_by_webhooks: int
    summary: Summary
    comparison: Comparison


def _count_results(engine: Engine) -> int:
    with transaction(engine, write=False) as store:
        return sum(n for status, n in store.stats()["results"].items() if status != "pending")


def _local_view(engine: Engine) -> tuple[dict[str, Any], dict[str, set[str]]]:
    with transaction(engine, write=False) as store:
        return store.snapshot()


async def run_demo(
    workdir: Path,
    *,
    applications: int = 60,
    seed: int = 7,
    drop: float = 0.3,
    duplicate: float = 0.2,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the tour in ``workdir``; ``say`` narrates each step."""
    database = workdir / "nova_sink.db"
    url = f"sqlite:///{database}"
    engine = make_engine(url)
    schema.upgrade(engine)
    # Sockets held from the start, not free ports: a port chosen and let go can be taken
    # by any outgoing connection before the server binds it.
    receiver_socket, nova_socket = bound_socket(), bound_socket()
    receiver_url = f"http://127.0.0.1:{port_of(receiver_socket)}/webhooks/nova"
    nova_url = f"http://127.0.0.1:{port_of(nova_socket)}"
    settings = Settings(nova_webhook_secrets=DEMO_SECRET, database_url=url)
    fake = create_fake_nova(
        FakeNovaConfig(
            seed=seed,
            deliver_to=receiver_url,
            secret=DEMO_SECRET,
            drop=drop,
            duplicate=duplicate,
            reorder=True,
            failure_rate=0.1,
        ),
        background_delivery=False,
    )
    say(f"database   {database}")
    say(f"fake Nova  {nova_url}  (drops {drop:.0%}, duplicates {duplicate:.0%}, reorders)")
    say(f"receiver   {receiver_url}")
    try:
        async with (
            serving(create_app(settings, engine=engine), receiver_socket),
            serving(fake.app, nova_socket),
            build_http_client(nova_url) as http,
        ):
            client = NovaClient(http, api_key=DEMO_KEY, tenant_id=TENANT, rate_limit=50)
            now = lambda: datetime.now(UTC)  # noqa: E731 - the clock seam, inline
            created = await submit_batches(
                client,
                engine,
                job_id=JOB_ID,
                tenant_id=TENANT,
                fields={"jobDescription": JOB_DESCRIPTION, "jobTitle": "Senior Backend Engineer"},
                applications=sample_applications(applications),
                now=now,
            )
            jobs = sum(len(c.scoring_job_ids) for c in created)
            rejected = sum(len(c.rejected) for c in created)
            say(
                f"1. submitted {applications} applications in {len(created)} batches: "
                f"{jobs} scoring jobs, {rejected} rejected at intake"
            )
            deliveries = await fake.run_until_idle(timeout=120)
            stored = await asyncio.to_thread(_count_results, engine)
            say(
                f"2. fake Nova sent {deliveries.attempts} webhooks for {deliveries.events} events "
                f"({deliveries.dropped} dropped, {deliveries.duplicated} duplicated); "
                f"the receiver holds {stored} of {jobs} results"
            )
            # No 5-minute grace for pending jobs: the demo does not wait for stragglers.
            summary = await Reconciler(
                engine, client, now=now, grace=timedelta(0), concurrency=4
            ).run()
            say(
                f"3. reconcile checked {summary.batches_checked} batches: "
                f"{summary.results_added} results added, {summary.results_updated} updated, "
                f"{summary.rejected_recorded} rejections recorded, {summary.requests} API calls"
            )
            truth = fake.truth()
        results, local_rejected = await asyncio.to_thread(_local_view, engine)
    finally:
        receiver_socket.close()  # already closed when served; not when start-up failed
        nova_socket.close()
        engine.dispose()
    return DemoResult(
        database=database,
        applications=applications,
        batches=len(created),
        scoring_jobs=jobs,
        rejected=rejected,
        deliveries=deliveries,
        stored_by_webhooks=stored,
        summary=summary,
        comparison=compare(truth, results, local_rejected),
    )


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="nova-sink-demo-"))
