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
    """A TCP port on 127.0.0.1 that was free a moment ago: for another process to listen
    on. Anything may take it meanwhile; to serve here, use ``bound_socket``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bound_socket() -> socket.socket:
    """A TCP socket bound to a port of the kernel's choosing on 127.0.0.1, for ``serving``.

    Held from the moment the port is chosen: a port chosen and released (``free_port``)
    can be taken before the server binds it, by any outgoing connection of the machine
    (ephemeral ports come from the same range), and the server then fails to start.
    """
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only
    # on connections of a socket that says it is TCP. Without it every answer written in two
    # parts (head, then body) waited for the client's delayed ACK: 40 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def serving(
    app: Any, where: int | socket.socket, *, http: str = "auto"
) -> AsyncIterator[None]:
    """Run ``app`` under uvicorn on 127.0.0.1 for the duration of the block: on the port
    ``where``, or on the socket ``where`` (``bound_socket``), which it closes at the end.

    ``http`` is uvicorn's HTTP protocol: ``"h11"``, ``"httptools"`` or an import string
    (``receiver.http_guard.PROTOCOL``, as ``serve`` uses it).
    """
    if isinstance(where, socket.socket):
        sockets, port = [where], port_of(where)
    else:
        sockets, port = None, where
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=http
    )
    server = uvicorn.Server(config)
    with contextlib.ExitStack() as owned:
        for sock in sockets or ():
            owned.enter_context(sock)  # closed however serving ends, started or not
        task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started:
            if task.done():
                task.result()  # raises the start-up error
            await asyncio.sleep(0.01)
        try:
            yield
        finally:
            server.should_exit = True
            await task
