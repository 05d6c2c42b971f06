"""The token-protected read API under ``/api``: results, batches, deliveries, the change feed.

Every answer under ``/api`` (errors and unknown paths included) carries
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``: it holds personal
data that no cache may keep. Every token problem gets one generic 401 (the reason goes to
the log); every unusable parameter a 400 naming it. Listings page with opaque cursors
(``receiver.cursors``): ``{"data": [...], "next": cursor-or-null}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from receiver import cursors
from receiver.feed_api import FEED_PARAMETERS, POLL_SECONDS, read_changes
from receiver.http_errors import ERROR_HANDLERS, UNAUTHORIZED, json_answer
from receiver.http_headers import SetHeaders
from receiver.query_params import Query, QueryError, cursor_param
from receiver.rows import json_row
from receiver.tokens import TokenError, check_token
from storage.db import Engine, transaction
from storage.records import STATUSES
from storage.store import ResultFilter, Store

log = structlog.get_logger("nova_sink.read_api")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
_T = TypeVar("_T")
Endpoint = Callable[[Request], Awaitable[Response]]


async def _http_error(_request: Request, exc: Exception) -> Response:
    """404 and 405 from the API's router, as JSON like every other API answer."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail.lower()}, exc.status_code, exc.headers)


class ReadApi:
    def __init__(
        self,
        engine: Engine,
        *,
        keys: Sequence[str] | None,
        now: Callable[[], datetime],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.engine = engine
        self.keys = list(keys) if keys else None
        self.now = now
        self.poll_seconds = poll_seconds

    def routes(self) -> list[BaseRoute]:
        """One mount of its own app: unknown paths and methods are answered inside it (so
        they get the API's headers too), and it never redirects."""
        api = Starlette(
            routes=[
                Route("/results", self._guard(self._results), methods=["GET"]),
                Route("/results/{id}", self._guard(self._result), methods=["GET"]),
                Route("/batches", self._guard(self._batches), methods=["GET"]),
                Route("/batches/{id}", self._guard(self._batch), methods=["GET"]),
                Route("/deliveries", self._guard(self._deliveries), methods=["GET"]),
                Route("/changes", self._guard(self._changes), methods=["GET"]),
            ],
            # Errors map to answers in one place (receiver.http_errors), inside this app so
            # that SetHeaders still adds no-store/nosniff to them.
            exception_handlers={HTTPException: _http_error, **ERROR_HANDLERS},
        )
        # A redirect would be built from the request's Host header.
        api.router.redirect_slashes = False
        return [Mount("/api", app=SetHeaders(api, _HEADERS))]

    # -- plumbing ------------------------------------------------------------------------------

    def _guard(self, endpoint: Endpoint) -> Endpoint:
        async def handle(request: Request) -> Response:
            if self.keys is None:
                return JSONResponse({"error": "read API disabled: set SINK_SECRET_KEY"}, 404)
            denied = self._authorize(request)
            if denied is not None:
                return denied
            try:
                return await endpoint(request)
            except QueryError as exc:
                return JSONResponse({"error": str(exc), "parameter": exc.param}, 400)

        return handle

    def _authorize(self, request: Request) -> Response | None:
        assert self.keys is not None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenError("no bearer token")
            check_token(self.keys, token.strip(), scope="read", now=self.now())
        except TokenError as exc:
            log.info("read_api_unauthorized", reason=exc.reason, path=request.url.path)
            return json_answer(UNAUTHORIZED)
        return None

    async def _read(self, query: Callable[[Store], _T]) -> _T:
        return await run_in_threadpool(self._in_transaction, query)

    def _in_transaction(self, query: Callable[[Store], _T]) -> _T:
        with transaction(self.engine, write=False) as store:
            return query(store)

    @staticmethod
    def _query(request: Request, *allowed: str) -> Query:
        return Query(request.query_params.multi_items(), allowed)

    @staticmethod
    def _limit(query: Query) -> int:
        return query.integer("limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)

    # -- listings -------------------------------------------------------------------------------

    async def _results(self, request: Request) -> Response:
        q = self._query(request, "limit", "after", "job", "batch", "application", "status", "since")
        limit = self._limit(q)
        after = cursor_param(q, "results", cursors.decode_timestamp_key)
        flt = ResultFilter(
            job_id=q.text("job"),
            batch_id=q.text("batch"),
            application_id=q.text("application"),
            status=q.choice("status", STATUSES),
            since=q.since("since", now=self.now()),
        )
        rows = await self._read(lambda s: s.page_results(flt, after=after, limit=limit + 1))
        return _page(
            rows,
            limit,
            lambda r: cursors.encode("results", r["first_seen_at"], r["scoring_job_id"]),
        )

    async def _result(self, request: Request) -> Response:
        self._query(request)
        scoring_job_id = _path_id(request)
        row = (
            None
            if scoring_job_id is None
            else await self._read(lambda s: s.get_result(scoring_job_id))
        )
        if row is None:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(json_row(row))

    async def _batches(self, request: Request) -> Response:
        q = self._query(request, "limit", "after", "status")
        limit = self._limit(q)
        after = cursor_param(q, "batches", cursors.decode_timestamp_key)
        status = q.choice("status", STATUSES)
        rows = await self._read(
            lambda s: s.page_batches(status=status, after=after, limit=limit + 1)
        )
        return _page(
            rows, limit, lambda r: cursors.encode("batches", r["tracked_at"], r["batch_id"])
        )

    async def _batch(self, request: Request) -> Response:
        self._query(request)
        batch_id = _path_id(request)
        data = (
            None
            if batch_id is None
            else await self._read(lambda s: _batch_with_results(s, batch_id))
        )
        if data is None:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(data)

    async def _deliveries(self, request: Request) -> Response:
        q = self._query(request, "limit", "after", "event", "outcome", "scoring_job")
        limit = self._limit(q)
        after = cursor_param(q, "deliveries", cursors.decode_position)
        event, outcome, scoring_job = q.text("event"), q.text("outcome"), q.text("scoring_job")
        rows = await self._read(
            lambda s: s.page_deliveries(
                event=event,
                outcome=outcome,
                scoring_job_id=scoring_job,
                after=after,
                limit=limit + 1,
            )
        )
        return _page(rows, limit, lambda r: cursors.encode("deliveries", r["id"]))

    async def _changes(self, request: Request) -> Response:
        query = self._query(request, *FEED_PARAMETERS)
        body = await read_changes(
            query,
            limit=self._limit(query),
            read=self._read,
            disconnected=request.is_disconnected,
            poll_seconds=self.poll_seconds,
        )
        return JSONResponse(body)


def _path_id(request: Request) -> str | None:
    """The id in the path, or None when no stored id could look like it."""
    value = str(request.path_params["id"])
    return value if 0 < len(value) <= 200 and value.isprintable() else None


def _page(rows: Sequence[Any], limit: int, key: Callable[[Any], str]) -> Response:
    """``limit + 1`` rows were read: the extra one only says that another page exists."""
    shown = rows[:limit]
    more = len(rows) > limit
    body = {"data": [json_row(r) for r in shown], "next": key(shown[-1]) if more else None}
    return JSONResponse(body)


def _batch_with_results(store: Store, batch_id: str) -> dict[str, Any] | None:
    row = store.get_batch(batch_id)
    if row is None:
        return None
    data = json_row(row)
    data["results"] = [json_row(r) for r in store.results_for_batch(batch_id)]
    data["rejected_applications"] = [json_row(r) for r in store.rejected_for_batch(batch_id)]
    return data
