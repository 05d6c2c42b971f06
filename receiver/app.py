"""The ASGI app: ``create_app`` is the composition root of the receiver.

Run with ``nova-sink serve`` or ``uvicorn --factory receiver.app:create_app``. The webhook
path does cheap rejections first (body limit, then signature: a forged request never
touches the database), parses, then waits for the writer to commit before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.errors import ConfigError, PayloadError, SignatureError
from receiver.events import Event, parse_event
from receiver.http_errors import ERROR_HANDLERS, UNAVAILABLE, json_answer
from receiver.ingest import Accepted, event_ids
from receiver.logs import configure_logging
from receiver.metrics import CONTENT_TYPE, Metrics
from receiver.pinning import PinPolicy
from receiver.read_api import ReadApi
from receiver.settings import Settings, load_settings
from receiver.signatures import ID_SIGNED, Verified, fingerprint, verify
from receiver.ui.routes import dashboard_routes
from receiver.vocabulary import known_event
from receiver.writer import Writer
from storage import schema
from storage.db import Engine, make_engine, transaction
from storage.errors import SchemaOutOfDate, StoreUnavailable
from storage.records import InboundDelivery, inbox_key, storable_webhook_id

log = structlog.get_logger("nova_sink.receiver")

# Above this size the HMACs are computed in a worker thread: hashlib releases the GIL for
# large inputs, so forged 1 MiB bodies cannot stall the event loop (and the genuine ~1.5 KB
# deliveries queued behind them). Below it, the thread hand-off costs more than the hashing.
VERIFY_OFF_LOOP_BYTES = 64 * 1024
# At most this many large bodies are hashed at once: a flood of forgeries gets the cores
# left over by the event loop, never the threadpool other work (pins, readyz) needs.
VERIFY_THREADS = max(1, min(4, (os.cpu_count() or 2) - 1))


def _utcnow() -> datetime:
    return datetime.now(UTC)


# The constructions whose signed message includes X-Webhook-Id (receiver.signatures).
def _delivery_key(verified: Verified, body_sha256: str) -> str:
    """The inbox row's identity: the body hash, plus the webhook id only when the matched
    signature covers it (NOVA.md decision 4): an unsigned id can be made up by anyone."""
    signed_id = verified.webhook_id if verified.construction in ID_SIGNED else None
    return inbox_key(body_sha256, signed_id)


def _event_label(name: str | None) -> str:
    """A bounded label set: a new event type must not grow the metrics without limit.
    Aliases count as the event they spell (``webhook.test`` is ``test``)."""
    if name is None:
        return "unparsed"
    known = known_event(name)
    return known.value if known is not None else "other"


class Receiver:
    """Request handlers over the app's collaborators (keys, writer, engine, clock: ``now``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        now: Callable[[], datetime],
        metrics: Metrics,
    ) -> None:
        secrets = settings.webhook_secrets()
        self.keys = [secret.encode() for secret in secrets]
        self.fingerprints = [fingerprint(secret) for secret in secrets]
        self.pins = PinPolicy(self.fingerprints, settings.nova_signature_construction)
        self._hashing = asyncio.Semaphore(VERIFY_THREADS)
        self.tolerance = timedelta(seconds=settings.webhook_tolerance_seconds)
        self.engine = engine
        self.now = now
        self.metrics = metrics
        self.writer = Writer(engine, now=now)

    async def webhook(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await self._read_body(request)
        if body is None:
            return Response(status_code=400)  # nobody is left to read it
        try:
            verified = await self._verify(request, body)
        except SignatureError as exc:
            self.metrics.verification_failures.labels(exc.reason).inc()
            log.warning("webhook_rejected", reason=exc.reason, bytes=len(body))
            # Generic on purpose: the caller learns nothing about which check failed.
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        except StoreUnavailable as exc:  # claiming a signature pin needs the database
            self.metrics.rejected.labels("503").inc()
            log.error("webhook_pin_unavailable", error=str(exc))
            return _unavailable()
        event: Event | None = None
        parse_error: str | None = None
        try:
            event = parse_event(body)
        except PayloadError as exc:
            parse_error = str(exc)
        digest = hashlib.sha256(body).hexdigest()
        key = _delivery_key(verified, digest)
        name, scoring_job_id, batch_id = event_ids(event)
        delivery = InboundDelivery(
            delivery_key=key,
            webhook_id=storable_webhook_id(verified.webhook_id),
            event=name,
            body=body,
            signature_scheme=verified.scheme,
            secret_fingerprint=self.fingerprints[verified.secret_index],
            scoring_job_id=scoring_job_id,
            batch_id=batch_id,
            body_sha256=digest,
        )
        try:
            status = await self.writer.submit(Accepted(delivery, event))
        except StoreUnavailable as exc:
            self.metrics.rejected.labels("503").inc()
            log.error("webhook_not_stored", delivery=key, event_type=name, error=str(exc))
            return _unavailable()
        except Exception:  # a signed payload must never produce a 500: Nova retries a 503
            self.metrics.rejected.labels("503").inc()
            log.exception("webhook_ingest_failed", delivery=key, event_type=name)
            return _unavailable()
        elapsed = time.perf_counter() - started
        self.metrics.deliveries.labels(_event_label(name), status).inc()
        self.metrics.ingest_seconds.observe(elapsed)
        log.info(
            "webhook",
            delivery=key,
            webhook_id=delivery.webhook_id,
            event_type=name,
            scoring_job_id=scoring_job_id,
            outcome=status,
            scheme=verified.scheme,
            parse_error=parse_error,
            ms=round(elapsed * 1000, 2),
        )
        return JSONResponse({"status": status})

    async def _read_body(self, request: Request) -> bytes | None:
        """The whole body; None when the client went away first (counted, one quiet line)."""
        try:
            return await request.body()
        except ClientDisconnect:
            self.metrics.abandoned.inc()
            log.info("webhook_abandoned", reason="client_disconnect")
            return None
        except HTTPException as exc:  # the route's body limit: its middleware answers 413
            if exc.status_code == 413:
                self.metrics.rejected.labels("413").inc()
                log.info("webhook_rejected", reason="body_too_large")
            raise

    async def _verify(self, request: Request, body: bytes) -> Verified:
        """Verify against each secret's pinned construction; claim the pin on a first match."""
        headers, now, allowed = request.headers, self.now(), self.pins.allowed
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

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        # The body is the same whatever failed: the driver's error names the database host,
        # port and name, which is for the operator's log, not for whoever asks.
        try:
            revision = await run_in_threadpool(schema.current, self.engine)
        except StoreUnavailable as exc:
            log.warning("not_ready", reason="database_unavailable", error=str(exc))
            return JSONResponse({"status": "unavailable"}, status_code=503)
        if revision != schema.HEAD:
            log.warning("not_ready", reason="schema", current=revision, expected=schema.HEAD)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "schema": revision})

    async def metrics_endpoint(self, _request: Request) -> Response:
        try:
            runs = await run_in_threadpool(self._run_totals)
        except StoreUnavailable:
            runs = None
        if runs is not None:
            self.metrics.reconcile_runs.set(runs[0])
            self.metrics.reconcile_fixes.set(runs[1])
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def _run_totals(self) -> tuple[int, int]:
        with transaction(self.engine, write=False) as store:
            return store.reconcile_totals()


def _unavailable() -> Response:
    return json_answer(UNAVAILABLE)


def _settings_from_environment() -> Settings:
    """Factory mode (``uvicorn --factory``): read the environment, configure logging, and
    stop with one line and exit code 2 on a configuration error instead of a traceback."""
    try:
        settings = load_settings()
        settings.webhook_secrets()
    except ConfigError as exc:
        print(f"nova-sink: configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.resolved_log_format(), settings.log_level)
    return settings


class SchemaGate:
    """Refuse to start on an out-of-date schema with one line, not a traceback.

    It answers the lifespan startup itself when the check fails: an exception raised in
    Starlette's lifespan reaches uvicorn's log as a twenty-line traceback.
    """

    def __init__(self, app: ASGIApp, *, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            try:
                await run_in_threadpool(schema.check, self.engine)
            except (SchemaOutOfDate, StoreUnavailable) as exc:
                await receive()  # lifespan.startup
                await send({"type": "lifespan.startup.failed", "message": f"nova-sink: {exc}"})
                # Re-raise like Starlette's router does: uvicorn, having seen the failure
                # message, exits quietly; a TestClient raises instead of hanging.
                raise
        await self.app(scope, receive, send)


def _read_keys(settings: Settings) -> list[str] | None:
    """The read-API keys (newest first), or None (API disabled) when SINK_SECRET_KEY is unset."""
    return settings.read_token_keys() if settings.sink_secret_key is not None else None


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    now: Callable[[], datetime] = _utcnow,
    check_schema: bool = True,
) -> Starlette:
    """Build the receiver. Every argument is a seam; with none it reads the environment."""
    if settings is None:
        settings = _settings_from_environment()
    owns_engine = engine is None
    db = engine or make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    receiver = Receiver(settings, engine=db, now=now, metrics=Metrics())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(receiver.load_pins)
        receiver.writer.start()
        try:
            yield
        finally:
            # Drain: every queued delivery is committed (and answered) before we exit.
            await run_in_threadpool(receiver.writer.stop)
            if owns_engine:
                db.dispose()

    routes: list[BaseRoute] = [
        Route(
            "/webhooks/nova",
            receiver.webhook,
            methods=["POST"],
            max_body_size=settings.webhook_max_body_bytes,
        ),
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/readyz", receiver.readyz, methods=["GET"]),
        Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        *ReadApi(db, keys=_read_keys(settings), now=now).routes(),
        *dashboard_routes(settings, engine=db, now=now, secret_fingerprints=receiver.fingerprints),
    ]
    middleware = [Middleware(SchemaGate, engine=db)] if check_schema else []
    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=middleware, exception_handlers=ERROR_HANDLERS
    )
    # Starlette's slash redirect builds its Location from the request's Host header (an open
    # redirect): /webhooks/nova/ is a plain 404 instead, like every other unknown path.
    app.router.redirect_slashes = False
    app.state.receiver = receiver
    return app
