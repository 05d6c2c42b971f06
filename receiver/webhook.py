"""``POST /webhooks/nova`` as a plain ASGI app: the delivery's way from socket to commit.

It is dispatched before Starlette's router and middleware (``receiver.app.ReceiverApp``):
every delivery is on the event loop's thread, which bounds one process's throughput, and
Starlette's layers (error and exception middleware, router, body-limit middleware,
``Request``, ``JSONResponse``, a send wrapper per layer) cost about as much Python per
delivery as the endpoint's own work.
The answers are prebuilt bytes. What the endpoint does, in order:

1. the body, at most ``max_body`` bytes (a larger declared length is refused before
   anything is read; a longer stream is cut off): 413;
2. the signature on the raw bytes, against each secret's pinned construction: 401;
3. the writer parses it (a body that does not parse is kept unparsed, never refused) and
   commits it, in its lane (``receiver.writer``); only then the 2xx. A database that
   cannot commit: 503.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from receiver.errors import PayloadError, SignatureError
from receiver.events import parse_event
from receiver.http_errors import UNAVAILABLE
from receiver.ingest import Received, event_ids
from receiver.metrics import Metrics
from receiver.pinning import PinPolicy
from receiver.signatures import ID_SIGNED, Verified, fingerprint, verify
from receiver.vocabulary import WebhookStatus, known_event
from receiver.writer import Lane, Writer
from storage.db import Engine, transaction
from storage.errors import StoreUnavailable
from storage.records import inbox_key, storable_webhook_id

log = structlog.get_logger("nova_sink.receiver")

PATH = "/webhooks/nova"

# Above this size the HMACs are computed in a worker thread: hashlib releases the GIL for
# large inputs, so forged 1 MiB bodies cannot stall the event loop (and the genuine ~1.5 KB
# deliveries queued behind them). Below it, the thread hand-off costs more than the hashing.
VERIFY_OFF_LOOP_BYTES = 64 * 1024
# At most this many large bodies are hashed at once: a flood of forgeries gets the cores
# left over by the event loop, never the threadpool other work (pins, readyz) needs.
VERIFY_THREADS = max(1, min(4, (os.cpu_count() or 2) - 1))

_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def _json_answer(status: int, content: dict[str, str], *extra: tuple[bytes, bytes]) -> _Answer:
    """A JSON answer as Starlette's ``JSONResponse`` renders it, built once."""
    body = json.dumps(content, separators=(",", ":")).encode()
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        *extra,
    ]
    return status, headers, body


# Keyed by the status text (a WebhookStatus is one): what the writer answers.
_STORED: dict[str, _Answer] = {
    status.value: _json_answer(200, {"status": status.value}) for status in WebhookStatus
}
_UNAUTHORIZED = _json_answer(401, {"error": "invalid signature"})
_UNAVAILABLE = _json_answer(
    UNAVAILABLE.status,
    {"error": UNAVAILABLE.message},
    *((name.lower().encode(), value.encode()) for name, value in UNAVAILABLE.headers.items()),
)
_TOO_LARGE = (
    413,
    [(b"content-length", b"17"), (b"content-type", b"text/plain; charset=utf-8")],
    b"Content Too Large",
)
_GONE = (400, [(b"content-length", b"0")], b"")  # nobody is left to read it


class _Refused(Exception):
    """The request is answered with ``answer`` before anything is stored."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer[0])
        self.answer = answer


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, the first of repeated ones (as Starlette's
    ``Headers.get``), decoded as latin-1: the bytes on the wire, one character each."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key not in found:
            found[key] = value.decode("latin-1")
    return found


def _declared_length(headers: dict[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _delivery_key(verified: Verified, body_sha256: str) -> str:
    """The inbox row's identity: the body hash, plus the webhook id only when the matched
    signature covers it (NOVA.md decision 4): an unsigned id can be made up by anyone."""
    signed_id = verified.webhook_id if verified.construction in ID_SIGNED else None
    return inbox_key(body_sha256, signed_id)


def _peek(body: bytes) -> tuple[str | None, str | None]:
    """(event name, scoring job id) of a delivery that was not stored, for its log line.

    The writer parses deliveries; one it could not store was answered before it said what
    the delivery was. A 503 is rare, so parsing again here costs nothing that matters
    (large bodies excepted: not on the event loop).
    """
    if len(body) > VERIFY_OFF_LOOP_BYTES:
        return None, None
    try:
        name, scoring_job_id, _ = event_ids(parse_event(body))
    except PayloadError:
        return None, None
    return name, scoring_job_id


@functools.lru_cache(maxsize=64)
def _event_label(name: str | None) -> str:
    """A bounded label set: a new event type must not grow the metrics without limit.
    Aliases count as the event they spell (``webhook.test`` is ``test``)."""
    if name is None:
        return "unparsed"
    known = known_event(name)
    return known.value if known is not None else "other"


class WebhookEndpoint:
    """The ASGI app of ``POST /webhooks/nova`` over its collaborators (secrets, pins, the
    writer's lane, engine for pin claims, metrics, the clock ``now``)."""

    def __init__(
        self,
        secrets: list[str],
        *,
        construction: str,
        tolerance: timedelta,
        max_body: int,
        engine: Engine,
        lane: Lane,
        now: Callable[[], datetime],
        metrics: Metrics,
    ) -> None:
        self.keys = [secret.encode() for secret in secrets]
        self.fingerprints = [fingerprint(secret) for secret in secrets]
        self.pins = PinPolicy(self.fingerprints, construction)
        self._hashing = asyncio.Semaphore(VERIFY_THREADS)
        self.tolerance = tolerance
        self.max_body = max_body
        self.engine = engine
        self.now = now
        self.metrics = metrics
        self.writer = Writer(lane, now=now)
        # The delivery counter's children by (event label, status): both sets are bounded,
        # and ``labels()`` costs more than the increment on every delivery.
        self._counted: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, headers, body = await self.handle(scope, receive)
        # A copy: the prebuilt list is shared, and a server or middleware may add to it.
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive) -> _Answer:
        """The answer to one request; a 2xx only once the delivery is committed."""
        started = time.perf_counter()
        headers = _headers(scope)
        try:
            body = await self._read_body(headers, receive)
            verified = await self._verify(headers, body)
        except _Refused as refused:
            return refused.answer
        digest = hashlib.sha256(body).hexdigest()
        key = _delivery_key(verified, digest)
        received = Received(
            body=body,
            delivery_key=key,
            webhook_id=storable_webhook_id(verified.webhook_id),
            signature_scheme=verified.scheme,
            secret_fingerprint=self.fingerprints[verified.secret_index],
            body_sha256=digest,
        )
        try:
            committed = await self.writer.submit(received)
        except Exception as exc:  # a signed payload must never produce a 500: Nova retries a 503
            self.metrics.rejected.labels("503").inc()
            event, scoring_job_id = _peek(body)
            what = {"delivery": key, "event_type": event, "scoring_job_id": scoring_job_id}
            if isinstance(exc, StoreUnavailable):
                log.error("webhook_not_stored", **what, error=str(exc))
            else:
                log.exception("webhook_ingest_failed", **what)
            return _UNAVAILABLE
        elapsed = time.perf_counter() - started
        status, name = committed.status, committed.event
        labels = (_event_label(name), status)
        counter = self._counted.get(labels)
        if counter is None:
            counter = self._counted[labels] = self.metrics.deliveries.labels(*labels)
        counter.inc()
        self.metrics.ingest_seconds.observe(elapsed)
        log.info(
            "webhook",
            delivery=key,
            webhook_id=received.webhook_id,
            event_type=name,
            scoring_job_id=committed.scoring_job_id,
            outcome=status,
            scheme=verified.scheme,
            parse_error=committed.parse_error,
            ms=round(elapsed * 1000, 2),
        )
        return _STORED[status]

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        """The whole body, refused past the limit (declared, or streamed: reading stops
        there) or when the client went away first (counted, one quiet line)."""
        declared = _declared_length(headers)
        size = 0
        chunks: list[bytes] = []
        more = declared is None or declared <= self.max_body
        while more:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                self.metrics.abandoned.inc()
                log.info("webhook_abandoned", reason="client_disconnect")
                raise _Refused(_GONE)
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = size <= self.max_body and message.get("more_body", False)
        if size > self.max_body or (declared is not None and declared > self.max_body):
            self.metrics.rejected.labels("413").inc()
            log.info("webhook_rejected", reason="body_too_large")
            raise _Refused(_TOO_LARGE)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _verify(self, headers: dict[str, str], body: bytes) -> Verified:
        """Verify against each secret's pinned construction, claiming the pin on a first
        match; refused (401) on any mismatch, 503 when a pin cannot be claimed."""
        try:
            return await self._verified(headers, body)
        except SignatureError as exc:
            self.metrics.verification_failures.labels(exc.reason).inc()
            log.warning("webhook_rejected", reason=exc.reason, bytes=len(body))
            # Generic on purpose: the caller learns nothing about which check failed.
            raise _Refused(_UNAUTHORIZED) from None
        except StoreUnavailable as exc:  # claiming a signature pin needs the database
            self.metrics.rejected.labels("503").inc()
            log.error("webhook_pin_unavailable", error=str(exc))
            raise _Refused(_UNAVAILABLE) from None

    async def _verified(self, headers: dict[str, str], body: bytes) -> Verified:
        now, allowed = self.now(), self.pins.allowed
        if len(body) > VERIFY_OFF_LOOP_BYTES:
            async with self._hashing:
                verified = await run_in_threadpool(
                    verify,
                    self.keys,
                    headers,
                    body,
                    now=now,
                    tolerance=self.tolerance,
                    allowed=allowed,
                )
        else:
            verified = verify(
                self.keys, headers, body, now=now, tolerance=self.tolerance, allowed=allowed
            )
        index = verified.secret_index
        if self.pins.needs_claim(index):
            # Once per secret per process: the database row decides between racing workers.
            winner = await run_in_threadpool(self._claim_pin, index, verified.construction)
            self.pins.learn(index, winner)
            log.info("signature_pinned", secret=self.fingerprints[index], construction=winner)
            if winner != verified.construction:
                raise SignatureError("construction_not_pinned")
        return verified

    def _claim_pin(self, index: int, construction: str) -> str:
        with transaction(self.engine) as store:
            return store.claim_pin(self.fingerprints[index], construction, now=self.now())

    def load_pins(self) -> None:
        """Read the learned pins at start-up (an optimisation: a claim reads them anyway)."""
        if not self.pins.auto:
            return
        try:
            with transaction(self.engine, write=False) as store:
                pins = store.signature_pins()
        except Exception as exc:  # noqa: BLE001 - no schema yet, database down: learn lazily
            log.warning("signature_pins_not_loaded", error=type(exc).__name__)
            return
        self.pins.load({name: pin.construction for name, pin in pins.items()})
