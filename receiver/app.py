"""The ASGI app: ``create_app`` is the composition root of the receiver.

Run with ``nova-sink serve`` or ``uvicorn --factory receiver.app:create_app``. The webhook
path does cheap rejections first (body limit, then signature: a forged request never
touches the database), parses, then waits for the writer to commit before answering.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.errors import ConfigError, PayloadError, SignatureError
from receiver.events import Event, parse_event
from receiver.ingest import Accepted, event_ids
from receiver.logs import configure_logging
from receiver.metrics import CONTENT_TYPE, Metrics
from receiver.read_api import ReadApi
from receiver.settings import Settings, load_settings
from receiver.signatures import Verified, fingerprint, verify
from receiver.writer import Writer
from storage import schema
from storage.db import Engine, make_engine, transaction
from storage.errors import SchemaOutOfDate, StoreUnavailable
from storage.records import InboundDelivery, inbox_key, storable_webhook_id

log = structlog.get_logger("nova_sink.receiver")

RETRY_AFTER_SECONDS = "5"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# The constructions whose signed message includes X-Webhook-Id (receiver.signatures).
_ID_SIGNED = frozenset({"id.timestamp.body"})


def _delivery_key(verified: Verified, body_sha256: str) -> str:
    """The inbox row's identity: the body hash, plus the webhook id only when the matched
    signature covers it (NOVA.md decision 4): an unsigned id can be made up by anyone."""
    signed_id = verified.webhook_id if verified.construction in _ID_SIGNED else None
    return inbox_key(body_sha256, signed_id)


_KNOWN_EVENTS = frozenset({"score.completed", "score.failed", "batch.completed", "test"})


def _event_label(name: str | None) -> str:
    """A bounded label set: a new event type must not grow the metrics without limit."""
    if name is None:
        return "unparsed"
    return name if name in _KNOWN_EVENTS else "other"


class Receiver:
    """Request handlers over the app's collaborators (keys, writer, engine, clock)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        clock: Callable[[], datetime],
        metrics: Metrics,
    ) -> None:
        secrets = settings.webhook_secrets()
        self.keys = [secret.encode() for secret in secrets]
        self.fingerprints = [fingerprint(secret) for secret in secrets]
        self.tolerance = timedelta(seconds=settings.webhook_tolerance_seconds)
        self.engine = engine
        self.clock = clock
        self.metrics = metrics
        self.writer = Writer(engine, clock=clock)

    async def webhook(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()
        try:
            verified = verify(
                self.keys, request.headers, body, now=self.clock(), tolerance=self.tolerance
            )
        except SignatureError as exc:
            self.metrics.verification_failures.labels(exc.reason).inc()
            log.warning("webhook_rejected", reason=exc.reason, bytes=len(body))
            # Generic on purpose: the caller learns nothing about which check failed.
            return JSONResponse({"error": "invalid signature"}, status_code=401)
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

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        try:
            revision = await run_in_threadpool(schema.current, self.engine)
        except StoreUnavailable as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        if revision != schema.HEAD:
            body = {"status": "schema out of date", "current": revision, "expected": schema.HEAD}
            return JSONResponse(body, status_code=503)
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
    return JSONResponse(
        {"error": "temporarily unavailable"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


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


def _read_key(settings: Settings) -> str | None:
    """The read-API signing key, or None (API disabled) when SINK_SECRET_KEY is unset."""
    return settings.read_token_key() if settings.sink_secret_key is not None else None


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = _utcnow,
    check_schema: bool = True,
) -> Starlette:
    """Build the receiver. Every argument is a seam; with none it reads the environment."""
    if settings is None:
        settings = _settings_from_environment()
    owns_engine = engine is None
    db = engine or make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    receiver = Receiver(settings, engine=db, clock=clock, metrics=Metrics())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
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
        *ReadApi(db, key=_read_key(settings), clock=clock).routes(),
    ]
    middleware = [Middleware(SchemaGate, engine=db)] if check_schema else []
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.receiver = receiver
    return app
