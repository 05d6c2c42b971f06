"""The token-protected read API under ``/api``: results, batches, deliveries as JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.rows import json_row
from receiver.signatures import parse_timestamp
from receiver.tokens import TokenError, check_token
from storage.db import Engine, transaction
from storage.errors import StoreUnavailable
from storage.store import ResultFilter, Store

MAX_LIMIT = 1000


class BadQuery(ValueError):
    """A query parameter that cannot be used (answered 400)."""


class ReadApi:
    def __init__(self, engine: Engine, *, key: str | None, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.key = key
        self.clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/api/results", self._handler(self._results), methods=["GET"]),
            Route("/api/results/{id}", self._handler(self._result), methods=["GET"]),
            Route("/api/batches", self._handler(self._batches), methods=["GET"]),
            Route("/api/batches/{id}", self._handler(self._batch), methods=["GET"]),
            Route("/api/deliveries", self._handler(self._deliveries), methods=["GET"]),
        ]

    def _handler(self, query: Callable[[Store, Request], Any]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            if self.key is None:
                return JSONResponse({"error": "read API disabled: set SINK_SECRET_KEY"}, 404)
            denied = self._authorize(request)
            if denied is not None:
                return denied
            try:
                data = await run_in_threadpool(self._read, query, request)
            except BadQuery as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except StoreUnavailable:
                return JSONResponse({"error": "database unavailable"}, 503, {"Retry-After": "5"})
            if data is None:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse(data)

        return handle

    def _authorize(self, request: Request) -> Response | None:
        assert self.key is not None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _unauthorized("bearer token required")
        try:
            check_token(self.key, token.strip(), scope="read", now=self.clock())
        except TokenError as exc:
            return _unauthorized(str(exc))
        return None

    def _read(self, query: Callable[[Store, Request], Any], request: Request) -> Any:
        with transaction(self.engine, write=False) as store:
            return query(store, request)

    @staticmethod
    def _limit(request: Request) -> int:
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        return int(raw)

    def _results(self, store: Store, request: Request) -> Any:
        params = request.query_params
        since = params.get("since")
        status = params.get("status")
        if status is not None and status not in {"pending", "completed", "failed"}:
            raise BadQuery("status must be pending, completed or failed")
        try:
            since_at = parse_timestamp(since) if since else None
        except ValueError:
            raise BadQuery("since must be an ISO-8601 timestamp") from None
        flt = ResultFilter(
            job_id=params.get("job"),
            batch_id=params.get("batch"),
            application_id=params.get("application"),
            status=status,
            since=since_at,
        )
        return [json_row(r) for r in store.list_results(flt, limit=self._limit(request))]

    def _result(self, store: Store, request: Request) -> Any:
        row = store.get_result(request.path_params["id"])
        return None if row is None else json_row(row)

    def _batches(self, store: Store, request: Request) -> Any:
        return [json_row(r) for r in store.list_batches(limit=self._limit(request))]

    def _batch(self, store: Store, request: Request) -> Any:
        batch_id = request.path_params["id"]
        row = store.get_batch(batch_id)
        if row is None:
            return None
        data = json_row(row)
        data["results"] = [json_row(r) for r in store.results_for_batch(batch_id)]
        data["rejected_applications"] = [json_row(r) for r in store.rejected_for_batch(batch_id)]
        return data

    def _deliveries(self, store: Store, request: Request) -> Any:
        params = request.query_params
        rows = store.list_deliveries(
            event=params.get("event"),
            outcome=params.get("outcome"),
            scoring_job_id=params.get("scoring_job"),
            limit=self._limit(request),
        )
        return [json_row(r) for r in rows]


def _unauthorized(reason: str) -> Response:
    return JSONResponse({"error": reason}, 401, {"WWW-Authenticate": 'Bearer realm="nova-sink"'})
