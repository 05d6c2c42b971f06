"""Responses leave in one write: ``serve``'s httptools protocol corks a response's head and
body (``receiver.http_guard``). The protocol runs on a recording transport, in a real loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from receiver.http_guard import CORK_BYTES, PROTOCOL, HeaderLimitedHttpToolsProtocol


class RecordingTransport(asyncio.Transport):
    """What the protocol wrote and when it closed, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "written after close"
        self.events.append(("write", bytes(data)))

    def close(self) -> None:
        self.closing = True
        self.events.append(("close", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


CHUNK = b"x" * (CORK_BYTES + 1)


async def streamed(scope: Scope, receive: Receive, send: Send) -> None:
    """Four chunks larger than the cork, sent in one turn of the loop (no await yields)."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(4):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def served(request: bytes, app: Any = hello) -> list[tuple[str, bytes]]:
    config = Config(app=app, http=PROTOCOL, lifespan="off", log_level="warning")
    config.load()
    protocol = HeaderLimitedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(20):  # the app's task, then the end of the loop's turn
        await asyncio.sleep(0)
    events = list(transport.events)
    protocol.connection_lost(None)
    return events


pytestmark = pytest.mark.anyio

POST = b"POST /webhooks/nova HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n"


async def test_a_responses_head_and_body_leave_in_one_write() -> None:
    events = await served(POST + b"\r\nhi")
    assert [kind for kind, _ in events] == ["write"]
    ((_, data),) = events
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nhello")


async def test_a_connection_closed_after_its_response_sends_the_response_first() -> None:
    events = await served(POST + b"connection: close\r\n\r\nhi")
    assert [kind for kind, _ in events] == ["write", "close"]
    assert events[0][1].endswith(b"hello")


async def test_two_pipelined_requests_are_answered_in_order() -> None:
    events = await served(POST + b"\r\nhi" + POST + b"\r\nhi")
    data = b"".join(payload for kind, payload in events if kind == "write")
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.endswith(b"hello")


async def test_a_large_body_is_not_held_back_past_the_cork() -> None:
    """Past ``CORK_BYTES`` writes go out at once, so a large or streamed body keeps the
    transport's own flow control instead of piling up until the loop's turn ends."""
    events = await served(POST + b"\r\nhi", app=streamed)
    writes = [payload for kind, payload in events if kind == "write"]
    assert len(writes) >= 4
    assert all(len(w) <= 2 * CORK_BYTES + 4096 for w in writes)
    body = b"".join(writes).split(b"\r\n\r\n", 1)[1]
    assert body.count(CHUNK) == 4
