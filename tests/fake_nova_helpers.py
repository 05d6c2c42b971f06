"""Builders for tests that talk to fake Nova or receive its webhooks (no patching, real parts)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from receiver.fake_nova import FakeNova, FakeNovaConfig, create_fake_nova
from receiver.nova import NovaClient

API_KEY = "sk_test_canary_5f1e0c"
TENANT = "acme-corp"
SECRET = "whsec_test_secret_for_fake_nova"
RECEIVER_URL = "http://receiver/webhooks/nova"
START = datetime(2026, 11, 26, 10, 30, 45, 123000, tzinfo=UTC)


class ManualClock:
    """A wall clock and a monotonic clock that move only when told (or when slept on)."""

    def __init__(self, start: datetime = START) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        await asyncio.sleep(0)  # still let other tasks run


@dataclass(frozen=True)
class Received:
    """One request a ``Recorder`` got."""

    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """A tiny ASGI webhook receiver: records every request, answers the scripted statuses."""

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.requests: list[Received] = []
        self._statuses = list(statuses)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        self.requests.append(Received(dict(request.headers), body))
        status = self._statuses.pop(0) if self._statuses else 200
        await Response(b"{}", status, media_type="application/json")(scope, receive, send)

    @property
    def payloads(self) -> list[Any]:
        return [r.payload for r in self.requests]


def asgi_client(app: Any, base_url: str = "http://nova") -> httpx.AsyncClient:
    """An httpx client that calls ``app`` in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def make_fake(
    clock: ManualClock | None = None,
    receiver: Recorder | None = None,
    **config: Any,
) -> FakeNova:
    """A fake Nova on a manual clock, delivering into ``receiver`` when one is given."""
    clock = clock or ManualClock()
    http = asgi_client(receiver, "http://receiver") if receiver is not None else None
    if receiver is not None:
        config.setdefault("deliver_to", RECEIVER_URL)
        config.setdefault("delivery_backoff", 0.0)
    config.setdefault("secret", SECRET)
    return create_fake_nova(
        FakeNovaConfig(**config),
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        http=http,
        background_delivery=False,
    )


def make_client(http: httpx.AsyncClient, clock: ManualClock | None = None, **kw: Any) -> NovaClient:
    """A ``NovaClient`` whose rate limiter and Retry-After dates use ``clock``."""
    clock = clock or ManualClock()
    kw.setdefault("api_key", API_KEY)
    kw.setdefault("tenant_id", TENANT)
    kw.setdefault("rate_limit", 0)
    return NovaClient(http, monotonic=clock.monotonic, sleep=clock.sleep, now=clock.now, **kw)


def batch_body(count: int = 3, *, description: str = "Senior backend engineer") -> dict[str, Any]:
    """A valid create-batch request with ``count`` text resumes."""
    return {
        "jobDescription": description,
        "applications": [
            {"applicationId": f"app-{i:03d}", "resume": {"type": "text", "content": "# CV"}}
            for i in range(count)
        ],
    }
