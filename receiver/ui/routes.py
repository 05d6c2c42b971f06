"""The dashboard's HTTP side: a Starlette sub-app mounted at ``/ui``.

Off (no route at all, so 404) unless ``SINK_SECRET_KEY`` is set. The session middleware
wraps the dashboard only: the webhook path never parses a cookie. Every response carries
``Cache-Control: no-store`` (results are personal data) and a strict CSP; queries and
rendering run in the thread pool, off the event loop that receives webhooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from receiver.http_errors import answer_for
from receiver.http_headers import SetHeaders
from receiver.settings import Settings
from receiver.ui import auth, pages
from receiver.ui.paging import BadParameter
from receiver.ui.render import render
from storage.db import Engine, transaction
from storage.errors import StoreUnavailable
from storage.store import Store

log = structlog.get_logger("nova_sink.ui")

SESSION_COOKIE = "nova_sink_ui"
_CSS = Path(__file__).parent / "static" / "dashboard.css"
_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),  # the login token must not leak in a Referer
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


class Dashboard:
    """Request handlers over the engine, the keys and the clock (``now``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        keys: Sequence[str],
        now: Callable[[], datetime],
        secret_fingerprints: Sequence[str],
    ) -> None:
        self.engine = engine
        self.keys = list(keys)
        self.now = now
        self.secret_fingerprints = list(secret_fingerprints)
        self.used = auth.UsedNonces()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self._page(self._overview), methods=["GET"]),
            Route("/batches/{id}", self._page(self._batch), methods=["GET"]),
            Route("/results/{id}", self._page(self._result), methods=["GET"]),
            Route("/deliveries", self._page(self._deliveries), methods=["GET"]),
            Route("/deliveries/{id}", self._page(self._delivery), methods=["GET"]),
            Route("/login", self.login, methods=["GET"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/static/dashboard.css", self.css, methods=["GET"]),
        ]

    # -- sign-in ------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        now = self.now()
        token = request.query_params.get("token", "")
        try:
            login = auth.check_login_token(self.keys, token, now=now)
        except auth.LoginError as exc:
            log.warning("ui_sign_in_refused", reason=exc.reason)  # never the token itself
            return _html("signin.html", {"reason": exc.reason}, 401)
        if not self.used.claim(login, now=now):
            log.warning("ui_sign_in_refused", reason="link used already")
            return _html("signin.html", {"reason": "this sign-in link was used already"}, 401)
        request.session.clear()
        request.session.update(auth.new_session(login))
        log.info("ui_signed_in", session_expires_at=login.session_expires_at.isoformat())
        # A page, not a redirect: a SameSite=Strict cookie set by a navigation that came
        # from another site (a chat, a terminal) is not sent on that navigation's
        # redirects, but it is sent when this same-site page moves on.
        return _html("login_ok.html", {"expires_at": login.session_expires_at})

    async def logout(self, request: Request) -> Response:
        request.session.clear()
        log.info("ui_signed_out")
        return _html("signin.html", {"reason": "you are signed out"})

    async def css(self, _request: Request) -> Response:
        return Response(_CSS.read_bytes(), media_type="text/css")

    # -- pages --------------------------------------------------------------------------

    def _page(
        self, page: Callable[[Store, Request], pages.Page | None]
    ) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            if not auth.session_active(request.session, now=self.now()):
                request.session.clear()
                return _html("signin.html", {"reason": None}, 401)
            try:
                html = await run_in_threadpool(self._read_and_render, page, request)
            except BadParameter as exc:
                return _html("error.html", {"title": "Bad request", "message": str(exc)}, 400)
            except StoreUnavailable as exc:
                answer = answer_for(exc)
                assert answer is not None
                context = {"title": "Database unavailable", "message": "Try again shortly."}
                return _html("error.html", context, answer.status, dict(answer.headers))
            if html is None:
                context = {"title": "Not found", "message": "Nothing is stored under that id."}
                return _html("error.html", context, 404)
            return HTMLResponse(html)

        return handle

    def _read_and_render(
        self, page: Callable[[Store, Request], pages.Page | None], request: Request
    ) -> str | None:
        with transaction(self.engine, write=False) as store:
            found = page(store, request)
        if found is None:
            return None
        template, context = found
        return render(template, {**context, "signed_in": True})

    def _overview(self, store: Store, request: Request) -> pages.Page | None:
        return pages.overview(
            store, request.query_params, now=self.now(), secrets=self.secret_fingerprints
        )

    def _batch(self, store: Store, request: Request) -> pages.Page | None:
        return pages.batch(store, request.path_params["id"], request.query_params)

    def _result(self, store: Store, request: Request) -> pages.Page | None:
        return pages.result(store, request.path_params["id"], request.query_params)

    def _deliveries(self, store: Store, request: Request) -> pages.Page | None:
        return pages.deliveries(store, request.query_params)

    def _delivery(self, store: Store, request: Request) -> pages.Page | None:
        return pages.delivery(store, request.path_params["id"], request.query_params)


def _html(
    template: str,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    body = render(template, {"signed_in": False, **context})
    return HTMLResponse(body, status_code=status, headers=headers)


async def _to_dashboard(_request: Request) -> Response:
    # A relative Location: no redirect ever names a host taken from the request.
    return RedirectResponse("/ui/", status_code=308)


def dashboard_routes(
    settings: Settings,
    *,
    engine: Engine,
    now: Callable[[], datetime],
    secret_fingerprints: Sequence[str],
) -> list[BaseRoute]:
    """``/ui`` routes, or none at all when ``SINK_SECRET_KEY`` is unset (dashboard off)."""
    keys = auth.ui_keys(settings)
    if keys is None:
        return []
    dashboard = Dashboard(engine, keys=keys, now=now, secret_fingerprints=secret_fingerprints)
    app = Starlette(
        routes=dashboard.routes(),
        middleware=[
            Middleware(SetHeaders, headers=_HEADERS),
            Middleware(
                SessionMiddleware,
                secret_key=keys[0],
                session_cookie=SESSION_COOKIE,
                max_age=int(auth.MAX_SESSION_TTL.total_seconds()),
                path="/ui",
                same_site="strict",
                https_only=settings.sink_ui_https_only,
            ),
        ],
    )
    # Its redirects would name the request's Host header; a wrong path is a plain 404.
    app.router.redirect_slashes = False
    return [Route("/ui", _to_dashboard, methods=["GET"]), Mount("/ui", app=app)]
