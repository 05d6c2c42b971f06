"""Serving an ASGI app in this process for a while: the demo, the tests and the benchmarks.

``nova-sink serve`` runs uvicorn as the process's main loop; these helpers instead run one
inside an existing event loop (the demo runs fake Nova and the receiver side by side).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

# Linux's default ephemeral range starts here (``ip_local_port_range``).
_DEFAULT_EPHEMERAL_LOW = 32768
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago: for another process to listen
    on (to serve in this one, use ``bound_socket``, which nobody can take first).

    Chosen below the kernel's ephemeral range, not by binding port 0: a port from that
    range, let go, is the next one the kernel may give an outgoing connection (a database
    client, an HTTP request), and the server started on it then fails with "address
    already in use". Below the range only another listener can take it.
    """
    low = _ephemeral_low()
    first = max(1024, low // 2)  # unprivileged ports only
    for _ in range(200 if first < low else 0):
        port = random.randrange(first, low)  # noqa: S311 - a port, not a secret
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # no room below the range (or all taken): the kernel's
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; the default elsewhere)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


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
    """The port ``sock`` is bound to."""
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
