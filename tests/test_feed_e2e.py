"""A consumer of the change feed is killed and restarted mid-stream while webhooks and a
reconcile run: it still sees every change exactly once, in order.

Real parts only: the receiver under uvicorn on a loopback port, fake Nova submitting and
delivering signed webhooks (30 % dropped, 20 % duplicated, reordered) into it, a reconcile
run filling the gaps, and the consumer as a separate process (``tests/feed_consumer.py``)
that long-polls ``/api/changes`` and is ``kill -9``-ed twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver.app import create_app
from receiver.fake_nova import FakeNovaConfig, create_fake_nova
from receiver.nova import NovaClient
from receiver.reconcile import Reconciler
from receiver.serving import free_port, serving
from receiver.settings import Settings
from receiver.submit import submit_batches
from receiver.tokens import create_token
from storage.db import transaction
from storage.store import ChangeFilter
from tests.fake_nova_helpers import API_KEY, TENANT, asgi_client
from tests.servers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SECRET = "whsec_feed_e2e_secret_0123456789"
READ_KEY = "feed-e2e-read-key-0123456789"
APPLICATIONS = 150


class Consumer:
    """The consumer process: started, killed with SIGKILL, restarted on the same log."""

    def __init__(self, base_url: str, log: Path) -> None:
        self.base_url = base_url
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        token = create_token(READ_KEY, scope="read", ttl=timedelta(hours=1))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.feed_consumer", self.base_url, str(self.log)],
            cwd=ROOT,
            env={"FEED_TOKEN": token, "PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.kills += 1
        self.start()

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        text = self.log.read_text()
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    async def wait_for(self, count: int, timeout: float = 60) -> None:
        """Until the log holds ``count`` changes (the consumer process must stay alive)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.lines()) < count:
            assert self.proc is not None
            assert self.proc.poll() is None, "consumer died"
            assert loop.time() < deadline, f"consumer stuck at {len(self.lines())}/{count}"
            await asyncio.sleep(0.05)


def head_of(engine: Engine) -> int:
    with transaction(engine, write=False) as store:
        return store.change_head()


def feed(engine: Engine) -> list[dict[str, Any]]:
    with transaction(engine, write=False) as store:
        page = store.list_changes(after=0, flt=ChangeFilter(), limit=100_000)
    return [dict(row) for row in page.rows]


def applications() -> list[dict[str, Any]]:
    return [
        {"applicationId": f"app-{n:03d}", "resume": {"type": "text", "content": f"# {n}"}}
        for n in range(APPLICATIONS)
    ]


async def test_a_restarted_consumer_sees_every_change_once_in_order(
    engine: Engine, tmp_path: Path
) -> None:
    """Two kill -9s (during webhooks, during reconcile); the log equals the feed exactly."""
    port = free_port()
    now = lambda: datetime.now(UTC)  # noqa: E731 - the clock seam, inline
    fake = create_fake_nova(
        FakeNovaConfig(
            seed=7,
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
        _env_file=None,
        nova_webhook_secrets=SECRET,
        database_url=engine.url.render_as_string(hide_password=False),
        sink_secret_key=READ_KEY,
    )
    consumer = Consumer(f"http://127.0.0.1:{port}", tmp_path / "consumer.jsonl")

    async with (
        fake,
        serving(create_app(settings, engine=engine), port),
        asgi_client(fake.app) as http,
    ):
        client = NovaClient(http, api_key=API_KEY, tenant_id=TENANT, rate_limit=200)
        await submit_batches(
            client,
            engine,
            job_id="job-feed",
            tenant_id=TENANT,
            fields={"jobDescription": "feed test"},
            applications=applications(),
            now=now,
        )
        consumer.start()
        try:
            delivering = asyncio.create_task(fake.run_until_idle(timeout=120))
            await consumer.wait_for(10)
            consumer.restart()  # kill -9 while webhooks stream in
            stats = await delivering

            head = head_of(engine)
            reconciling = asyncio.create_task(Reconciler(engine, client, now=now).run())
            while head_of(engine) == head and not reconciling.done():
                await asyncio.sleep(0.01)
            consumer.restart()  # kill -9 once reconcile has begun writing changes
            summary = await reconciling

            expected = feed(engine)
            await consumer.wait_for(len(expected))
        finally:
            consumer.kill()

    consumed = consumer.lines()
    assert stats.dropped > 0
    assert summary.results_updated > 0  # reconcile really changed results during the test
    assert consumer.kills == 2
    assert [c["seq"] for c in consumed] == list(range(1, len(expected) + 1))
    assert [(c["seq"], c["scoring_job_id"], c["kind"], c["status"]) for c in consumed] == [
        (c["seq"], c["scoring_job_id"], c["kind"], c["status"]) for c in expected
    ]
    # Every result reached the consumer, and its last change holds the stored status.
    last_status = {c["scoring_job_id"]: c["status"] for c in consumed}
    with transaction(engine, write=False) as store:
        results, _ = store.snapshot()
    assert last_status == {sj: row["status"] for sj, row in results.items()}
