"""The error tree of nova-sink.

    NovaSinkError
    ├── ConfigError                 a setting is missing or malformed (CLI exit code 2)
    ├── SignatureError              a webhook failed verification (HTTP 401); ``reason`` says why
    ├── PayloadError                a verified body is not a known Nova event (stored unparsed)
    └── NovaApiError                a call to Nova's API failed
        ├── NovaTransportError      connection, timeout, or retries exhausted on 5xx/429
        ├── NovaHttpError           Nova answered 4xx/5xx; carries ``status``, ``code``, ``message``
        └── NovaResponseError       Nova answered 2xx with a body that does not match the schema

Storage errors live in ``storage.errors`` (``StoreUnavailable``) because ``storage``
never imports ``receiver``.
"""

from __future__ import annotations


class NovaSinkError(Exception):
    """Base class of every error nova-sink raises on purpose."""


class ConfigError(NovaSinkError):
    """A required setting is missing or malformed; ``variable`` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class SignatureError(NovaSinkError):
    """A webhook did not verify. ``reason`` is a short machine-readable slug for metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadError(NovaSinkError):
    """A verified body is not JSON or not the shape of any Nova event."""


class NovaApiError(NovaSinkError):
    """A call to Nova's API failed."""

    kind = "api_error"


class NovaTransportError(NovaApiError):
    """The request never got a usable answer (network, timeout, retries exhausted)."""

    kind = "transport"


class NovaHttpError(NovaApiError):
    """Nova answered with an error status; ``code`` is Nova's error code when it sent one."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {message}".replace("  ", " "))
        self.status = status
        self.code = code
        self.message = message

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"http_{self.status}"


class NovaResponseError(NovaApiError):
    """Nova answered 2xx but the body does not match the documented schema."""

    kind = "malformed_response"


def leaf_error(exc: BaseException) -> BaseException:
    """The one real error inside (nested) exception groups, e.g. from ``asyncio.TaskGroup``.

    A group of several errors reports its first one: the others are usually cancellations
    it caused.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
