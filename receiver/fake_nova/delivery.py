"""Signed webhook delivery from fake Nova, with seeded drop / duplicate / reorder / delay faults.

Events are taken from the state as jobs and batches finish, turned into deliveries (each
with an ``X-Webhook-Id`` that stays the same across retries and duplicates), shuffled when
asked, and sent in order once due. A non-2xx answer or a transport error is retried a few
times with a short doubling backoff, like Nova's own (much slower) schedule.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from receiver.fake_nova.config import FakeNovaConfig
from receiver.fake_nova.shapes import batch_event, score_event
from receiver.fake_nova.state import FakeNovaState
from receiver.signatures import sign
from receiver.vocabulary import EventName


@dataclass
class DeliveryStats:
    """What happened to the webhooks so far."""

    events: int = 0  # events produced (finished jobs and batches)
    dropped: int = 0  # events never sent (fault)
    duplicated: int = 0  # extra sends under the same X-Webhook-Id (fault)
    resent: int = 0  # extra sends under a new X-Webhook-Id (portal re-send fault)
    attempts: int = 0  # HTTP requests made
    delivered: int = 0  # deliveries answered 2xx
    retried: int = 0  # attempts that failed and were scheduled again
    failed: int = 0  # deliveries that exhausted their attempts


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt of a delivery, as ``fake-nova`` prints it."""

    delivery: Delivery
    status: int  # 0: no answer (refused, timeout)
    outcome: str | None  # the receiver's ``{"status": …}`` (applied, duplicate…), if any
    ms: float


OnAttempt = Callable[[Attempt], None]


@dataclass
class Delivery:
    """One webhook delivery: fixed id and body; a new timestamp and signature per attempt."""

    webhook_id: str
    event: str
    body: bytes
    subject: str  # scoringJobId or batchId, for tests and logs
    due: float = 0.0
    attempts: int = 0
    statuses: list[int] = field(default_factory=list)  # per attempt; 0 = transport error


class WebhookDeliverer:
    """Turns finished work into signed POSTs to ``config.deliver_to``."""

    def __init__(
        self,
        state: FakeNovaState,
        config: FakeNovaConfig,
        *,
        http: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_attempt: OnAttempt | None = None,
    ) -> None:
        self.state = state
        self.on_attempt = on_attempt
        self.config = config
        self._http = http
        self._owns_http = http is None
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = random.Random(f"delivery:{config.seed}")  # noqa: S311 -- seeded on purpose: reproducible fakes, not secrets
        self.queue: list[Delivery] = []
        self.sent: list[Delivery] = []  # every delivery that got a 2xx, in order
        self.dropped: list[Delivery] = []
        self.stats = DeliveryStats()

    async def aclose(self) -> None:
        """Close the HTTP client if fake Nova built it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.delivery_timeout)
        return self._http

    def _new_id(self) -> str:
        return f"msg_{self._rng.getrandbits(96):024x}"

    # -- producing deliveries -------------------------------------------------------------

    def collect(self) -> int:
        """Queue deliveries for everything that finished since the last call."""
        jobs, batches = self.state.take_finished()
        payloads: list[tuple[dict[str, Any], str]] = [(score_event(j), j.id) for j in jobs]
        if self.config.batch_events:
            payloads += [(batch_event(b, self.config.status_case), b.id) for b in batches]
        self.stats.events += len(payloads)
        if self.config.deliver_to is None:
            return 0
        due = self._monotonic() + self.config.delay
        fresh: list[Delivery] = []
        for payload, subject in payloads:
            body = json.dumps(payload, separators=(",", ":")).encode()
            delivery = Delivery(self._new_id(), payload["event"], body, subject, due)
            if self._rng.random() < self.config.drop:
                self.stats.dropped += 1
                self.dropped.append(delivery)
                continue
            fresh.append(delivery)
            if self._rng.random() < self.config.duplicate:
                self.stats.duplicated += 1
                fresh.append(Delivery(delivery.webhook_id, delivery.event, body, subject, due))
            if self._rng.random() < self.config.resend:
                self.stats.resent += 1
                fresh.append(Delivery(self._new_id(), delivery.event, body, subject, due))
        if self.config.reorder:
            window = self.config.reorder_window or len(fresh) or 1
            for start in range(0, len(fresh), window):
                chunk = fresh[start : start + window]
                self._rng.shuffle(chunk)
                fresh[start : start + window] = chunk
        self.queue.extend(fresh)
        return len(fresh)

    # -- sending --------------------------------------------------------------------------

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        oldest = self.config.legacy_header and self.config.construction == "body"
        return sign(
            self.config.secret,
            delivery.body,
            construction=self.config.construction,
            legacy_header=self.config.legacy_header,
            # The oldest generation sent only the signature: receivers fall back to a body hash.
            webhook_id=None if oldest else delivery.webhook_id,
            timestamp=None if oldest else self.state.now(),
            event_header=None if oldest else EventName(delivery.event).header,
        )

    async def _send(self, delivery: Delivery) -> None:
        assert self.config.deliver_to is not None
        delivery.attempts += 1
        self.stats.attempts += 1
        started = time.perf_counter()
        outcome: str | None = None
        try:
            response = await self._client().post(
                self.config.deliver_to, content=delivery.body, headers=self._headers(delivery)
            )
            status = response.status_code
            if self.on_attempt is not None:
                outcome = _answered_status(response)
        except (httpx.HTTPError, httpx.InvalidURL):
            status = 0  # like a timeout or refused connection: retried, then given up
        delivery.statuses.append(status)
        if self.on_attempt is not None:
            ms = (time.perf_counter() - started) * 1000
            self.on_attempt(Attempt(delivery, status, outcome, ms))
        if 200 <= status < 300:
            self.stats.delivered += 1
            self.sent.append(delivery)
        elif delivery.attempts < self.config.delivery_attempts:
            self.stats.retried += 1
            backoff = self.config.delivery_backoff * 2 ** (delivery.attempts - 1)
            delivery.due = self._monotonic() + backoff
            self.queue.append(delivery)
        else:
            self.stats.failed += 1

    async def deliver_pending(self) -> int:
        """Collect newly finished work and send every delivery that is due; return the count."""
        self.collect()
        now = self._monotonic()
        due = [d for d in self.queue if d.due <= now]
        self.queue = [d for d in self.queue if d.due > now]
        for delivery in due:
            await self._send(delivery)
        return len(due)

    def idle(self) -> bool:
        """Nothing left to score, announce or send."""
        return not self.queue and self.state.next_finish() is None

    async def run_until_idle(self, *, poll: float = 0.05, timeout: float = 60.0) -> DeliveryStats:
        """Deliver until every job has finished and every delivery is done or given up."""
        deadline = self._monotonic() + timeout
        while True:
            await self.deliver_pending()
            if self.idle():
                return self.stats
            if self._monotonic() >= deadline:
                raise TimeoutError("fake Nova deliveries did not finish in time")
            await self._sleep(poll)

    async def run_forever(self, *, poll: float = 0.2) -> None:
        """Background loop of the fake-nova server: deliver as jobs finish."""
        while True:
            await self.deliver_pending()
            await self._sleep(poll)


def _answered_status(response: httpx.Response) -> str | None:
    """The ``status`` field of the receiver's JSON answer (nova-sink's), if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("status") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None
