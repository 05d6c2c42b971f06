"""The ASGI app: ``create_app`` is the composition root of the receiver.

Run with ``nova-sink serve`` or ``uvicorn --factory receiver.app:create_app``. The webhook
endpoint (``receiver.webhook``) does cheap rejections first (body limit, then signature: a
forged request never touches the database), then waits for the writer to parse and
commit it before answering; ``ReceiverApp`` dispatches it ahead of Starlette's layers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.commit_process import SHARED_COMMIT_ENV, ProcessLane
from receiver.errors import ConfigError
from receiver.http_errors import ERROR_HANDLERS
from receiver.logs import configure_logging
from receiver.metrics import CONTENT_TYPE, Metrics
from receiver.read_api import ReadApi
from receiver.settings import Settings, load_settings
from receiver.supervision import stop_when_orphaned, supervisor_pid
from receiver.ui.routes import dashboard_routes
from receiver.webhook import PATH, WebhookEndpoint
from receiver.writer import Lane, ThreadLane
from storage import schema
from storage.db import Engine, make_engine, transaction
from storage.errors import SchemaOutOfDate, StoreUnavailable

log = structlog.get_logger("nova_sink.receiver")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Receiver:
    """The operational endpoints and the webhook endpoint, over the app's collaborators
    (engine, metrics, clock: ``now``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        lane: Lane,
        now: Callable[[], datetime],
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.webhook = WebhookEndpoint(
            settings.webhook_secrets(),
            construction=settings.nova_signature_construction,
            tolerance=timedelta(seconds=settings.webhook_tolerance_seconds),
            max_body=settings.webhook_max_body_bytes,
            engine=engine,
            lane=lane,
            now=now,
            metrics=metrics,
        )

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
        if not self.webhook.writer.lane.running:
            # The commit process is being replaced: every delivery would get a 503 now.
            log.warning("not_ready", reason="writer_not_running")
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


class ReceiverApp(Starlette):
    """Starlette, with ``POST /webhooks/nova`` dispatched ahead of its middleware and router.

    The webhook endpoint is a plain ASGI app (``receiver.webhook``) that answers every case
    itself; going through Starlette's layers first cost as much Python per delivery as the
    endpoint's own work. Every other request, and other methods on the webhook path (405),
    take the usual way.
    """

    def __init__(self, *args: Any, webhook: ASGIApp, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _route_path(scope) == PATH:
            await self.webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches on: without the ``root_path`` a proxy mounted us under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


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


def _lane(settings: Settings, engine: Engine, *, owns_engine: bool) -> Lane:
    """Where the writer commits: a process of its own (``INGEST_WRITER=process``, the
    default), unless the engine was passed in or is an in-memory SQLite database, which
    another process could not share."""
    url = engine.url
    in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    if settings.ingest_writer == "thread" or not owns_engine or in_memory:
        return ThreadLane(engine)
    return ProcessLane(
        settings.database_url,
        synchronous=settings.sqlite_synchronous,
        log_format=settings.resolved_log_format(),
        log_level=settings.log_level,
        # Set by ``serve --workers N`` on SQLite: one commit process for all its workers.
        shared=os.environ.get(SHARED_COMMIT_ENV),
    )


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    now: Callable[[], datetime] = _utcnow,
    check_schema: bool = True,
) -> ReceiverApp:
    """Build the receiver. Every argument is a seam; with none it reads the environment."""
    if settings is None:
        settings = _settings_from_environment()
    owns_engine = engine is None
    db = engine or make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    lane = _lane(settings, db, owns_engine=owns_engine)
    receiver = Receiver(settings, engine=db, lane=lane, now=now, metrics=Metrics())

    webhook = receiver.webhook
    supervisor = supervisor_pid()  # a worker of ``serve --workers N``: stop without it

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(webhook.load_pins)
        await webhook.writer.start()
        watchdog = (
            None if supervisor is None else asyncio.create_task(stop_when_orphaned(supervisor))
        )
        try:
            yield
        finally:
            if watchdog is not None:
                watchdog.cancel()
            # Drain: every queued delivery is committed (and answered) before we exit.
            await webhook.writer.stop()
            if owns_engine:
                db.dispose()

    routes: list[BaseRoute] = [
        # ReceiverApp serves POST before the router; the route answers other methods 405.
        Route(PATH, webhook, methods=["POST"]),
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/readyz", receiver.readyz, methods=["GET"]),
        Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        *ReadApi(db, keys=_read_keys(settings), now=now).routes(),
        *dashboard_routes(settings, engine=db, now=now, secret_fingerprints=webhook.fingerprints),
    ]
    middleware = [Middleware(SchemaGate, engine=db)] if check_schema else []
    app = ReceiverApp(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers=ERROR_HANDLERS,
        webhook=webhook,
    )
    # Starlette's slash redirect builds its Location from the request's Host header (an open
    # redirect): /webhooks/nova/ is a plain 404 instead, like every other unknown path.
    app.router.redirect_slashes = False
    app.state.receiver = receiver
    return app
