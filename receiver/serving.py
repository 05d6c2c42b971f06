"""Serving an ASGI app in this process for a while: the demo, the tests and the benchmarks.

``nova-sink serve`` runs uvicorn as the process's main loop; these helpers instead run one
inside an existing event loop (the demo runs fake Nova and the receiver side by side).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: Any, port: int, *, http: str = "auto") -> AsyncIterator[None]:
    """Run ``app`` under uvicorn on 127.0.0.1:``port`` for the duration of the block.

    ``http`` is uvicorn's HTTP protocol: ``"h11"``, ``"httptools"`` or an import string
    (``receiver.http_guard.PROTOCOL``, as ``serve`` uses it).
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=http
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task
