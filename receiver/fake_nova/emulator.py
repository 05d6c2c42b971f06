"""``FakeNova``: state, API app, webhook deliverer and API faults wired together.

In tests and the demo, talk to ``fake.app`` through ``httpx.ASGITransport`` and drive the
webhooks explicitly (``await fake.run_until_idle()``); as a server (``run_fake_nova``),
a background task started by the app's lifespan delivers webhooks as jobs finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.fake_nova import shapes
from receiver.fake_nova.app import FakeNovaApi, build_app
from receiver.fake_nova.config import FakeNovaConfig
from receiver.fake_nova.delivery import DeliveryStats, OnAttempt, WebhookDeliverer
from receiver.fake_nova.faults import ApiFaults
from receiver.fake_nova.state import Clock, FakeNovaState


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FakeNova:
    """A local Nova: ``.app`` (ASGI), ``.state``, ``.deliverer``, ``.truth()``.

    ``http`` delivers the webhooks (tests: an ASGITransport client); ``on_attempt`` hears of
    every delivery attempt (``fake-nova`` prints them).
    """

    def __init__(
        self,
        config: FakeNovaConfig,
        *,
        now: Clock = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        background_delivery: bool = True,
        on_attempt: OnAttempt | None = None,
    ) -> None:
        self.config = config
        self.state = FakeNovaState(config, now)
        self.faults = ApiFaults(config, monotonic=monotonic)
        self.deliverer = WebhookDeliverer(
            self.state, config, http=http, monotonic=monotonic, sleep=sleep, on_attempt=on_attempt
        )
        self.api = FakeNovaApi(self.state, self.faults)
        self._background = background_delivery and config.deliver_to is not None
        extra = [
            Route("/_fake/truth", self._truth_endpoint),
            Route("/_fake/stats", self._stats_endpoint),
        ]
        self.app: Starlette = build_app(self.api, extra, lifespan=self._lifespan)

    def truth(self) -> dict[str, Any]:
        """Every batch with its jobs and rejections, as the API serves them now (JSON-able)."""
        batches = list(self.state.batches.values())
        return shapes.truth(batches, self.state.now(), self.config.status_case)

    @property
    def delivery_stats(self) -> DeliveryStats:
        return self.deliverer.stats

    async def deliver_pending(self) -> int:
        """Send the webhooks that are due now; return how many were attempted."""
        return await self.deliverer.deliver_pending()

    async def run_until_idle(self, *, poll: float = 0.05, timeout: float = 60.0) -> DeliveryStats:
        """Deliver until every job has finished and every webhook is sent or given up."""
        return await self.deliverer.run_until_idle(poll=poll, timeout=timeout)

    async def aclose(self) -> None:
        await self.deliverer.aclose()

    async def __aenter__(self) -> FakeNova:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _truth_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.truth())

    async def _stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(
            {"deliveries": vars(self.deliverer.stats), "api": vars(self.faults.stats)}
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Server mode: deliver webhooks in the background while the app runs."""
        task = asyncio.create_task(self.deliverer.run_forever()) if self._background else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.aclose()


# The name the demo, the tests and the benchmarks build fake Nova by. The class itself, not a
# wrapper: a wrapper repeated every seam and its default, and had to follow each change.
create_fake_nova = FakeNova


def run_fake_nova(
    config: FakeNovaConfig,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    log_level: str = "info",
    on_attempt: OnAttempt | None = None,
) -> None:
    """Serve fake Nova with uvicorn until interrupted (the ``fake-nova`` command)."""
    import uvicorn  # lazy: only the server mode needs it

    fake = create_fake_nova(config, on_attempt=on_attempt)
    server = uvicorn.Server(
        uvicorn.Config(
            fake.app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    server.run()
