"""One mapping from the errors a request can meet to the HTTP answer it gets.

``answer_for`` is the single place that says which status, public message and headers an
error earns (a database that cannot commit: 503 + ``Retry-After``, so Nova and API clients
retry; any token problem: one generic 401). The webhook endpoint and ``/api`` render it as
JSON (``json_answer``, and the ``ERROR_HANDLERS`` their Starlette apps register), the
dashboard as an HTML page; none of them decides the status on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.tokens import TokenError
from storage.errors import StoreUnavailable

RETRY_AFTER_SECONDS = "5"


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """The status, the public message (never the cause) and the headers of an error."""

    status: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


UNAVAILABLE = ErrorAnswer(503, "temporarily unavailable", {"Retry-After": RETRY_AFTER_SECONDS})
# One body for every token problem: a caller learns nothing about which check failed.
UNAUTHORIZED = ErrorAnswer(401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="nova-sink"'})


def answer_for(exc: BaseException) -> ErrorAnswer | None:
    """The answer ``exc`` earns, or None for an error this mapping does not cover."""
    if isinstance(exc, StoreUnavailable):
        return UNAVAILABLE
    if isinstance(exc, TokenError):
        return UNAUTHORIZED
    return None


def json_answer(answer: ErrorAnswer) -> Response:
    """``answer`` as the JSON body ``{"error": message}``."""
    return JSONResponse({"error": answer.message}, answer.status, dict(answer.headers))


async def _json_error(_request: Request, exc: Exception) -> Response:
    answer = answer_for(exc)
    if answer is None:  # registered only for the mapped types; re-raise anything else
        raise exc
    return json_answer(answer)


# For ``Starlette(exception_handlers=...)``: an endpoint may simply let these raise.
ERROR_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    StoreUnavailable: _json_error,
    TokenError: _json_error,
}
