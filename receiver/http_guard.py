"""A bound on request-header size for uvicorn's httptools parser (``serve`` uses it).

uvicorn limits headers only for its h11 parser (``h11_max_incomplete_event_size``); with
httptools (the faster default) a client could stream one 64 MiB header, all buffered before
the app sees anything: no ASGI middleware can help, because headers are parsed before ASGI.
``HeaderLimitedHttpToolsProtocol`` counts the bytes of a request's line and headers as they
arrive and answers ``431`` (then closes) once they pass the same limit uvicorn gives h11,
so one setting bounds both parsers. Memory per connection stays below limit + one read.
Each refusal adds to ``nova_sink_rejected_requests_total{status="431"}`` of the app served.

The same protocol sends each response in one write (``_CorkedTransport``): uvicorn writes
the head and the body separately, two system calls and two wake-ups of the client each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from receiver.metrics import Metrics

# h11's own default (uvicorn passes None through to it): 16 KiB of request line + headers.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
PROTOCOL = "receiver.http_guard:HeaderLimitedHttpToolsProtocol"
# A response's writes are held to the end of the event loop's turn up to this many bytes.
CORK_BYTES = 64 * 1024
_MESSAGE = b"Request header fields too large."
_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_MESSAGE)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _MESSAGE
)
log = logging.getLogger("uvicorn.error")


# How a refusal reaches the app's counter. This protocol runs below ASGI, but uvicorn builds
# it for each connection with the app it serves (``self.app``: ``create_app``'s app inside
# uvicorn's own wrappers, such as its proxy-headers middleware, each holding the next as
# ``.app``), and that app keeps its ``Receiver`` (hence its ``Metrics``) in ``state``.
# Looking the counter up there rather than in a module-level hook that ``serve`` sets needs
# no global state (apps served side by side in one process count apart, as in the tests and
# the demo), nothing run first in each ``--workers`` process (each worker's protocol finds
# its own app, whose counters prometheus multiprocess mode already writes to the shared
# files), and works the same for ``uvicorn --http receiver.http_guard:...``. An app without
# those metrics is guarded all the same; its refusals are not counted.
def _metrics_of(app: object) -> Metrics | None:
    """The ``Metrics`` of the receiver app ``app`` is or wraps, if any."""
    while app is not None:
        receiver = getattr(getattr(app, "state", None), "receiver", None)
        metrics = getattr(receiver, "metrics", None)
        if isinstance(metrics, Metrics):
            return metrics
        app = getattr(app, "app", None)
    return None


class _CorkedTransport:
    """A connection's transport whose writes of one event-loop turn leave as one.

    uvicorn writes a response's head and its body with two ``write`` calls, and the
    transport sends each at once: two system calls and two wake-ups of the client per
    response. Held until the end of the turn (``call_soon``), they go out in one. Past
    ``CORK_BYTES`` they go at once: a large or streamed body keeps the transport's own
    buffering and flow control (``pause_writing``), never piling up here.
    """

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size > CORK_BYTES:
            self._flush()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._size = [], 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeaderLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over the configured size.

    Two counts, because httptools reports a header only once it is complete: the exact size
    of the request line and headers seen so far (a whole head in one read), and the bytes
    read while a head is still incomplete (one endless header, never reported).
    """

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes: int = (
            config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        )
        self._head_size = 0  # exact: request line + headers parsed so far
        self._head_read = 0  # bytes read while the head is incomplete
        self._reading_head = True  # a connection starts with a request line
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CorkedTransport(transport))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head:
            self._head_read += len(data)
        super().data_received(data)
        if self._reading_head and self._head_read > self.max_header_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._reading_head = True
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._grow(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._grow(len(name) + len(value) + 4):  # ": " and CRLF
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return  # the app never sees this request
        self._reading_head = False
        self._head_read = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._reading_head = True  # whatever comes next on this connection is a new head
        super().on_message_complete()

    def _grow(self, size: int) -> bool:
        """Count ``size`` head bytes; False (and refused) once over the limit."""
        if self._refused:
            return False
        self._head_size += size
        if self._head_size > self.max_header_bytes:
            self._refuse()
            return False
        return True

    def _refuse(self) -> None:
        if self._refused:
            return
        self._refused = True
        log.warning("Request header fields too large (over %d bytes).", self.max_header_bytes)
        # Counted before the answer is written: whoever has the 431 can already scrape it.
        if (metrics := _metrics_of(self.app)) is not None:
            metrics.rejected.labels("431").inc()
        if not self.transport.is_closing():
            self.transport.write(_RESPONSE)
            self.transport.close()
