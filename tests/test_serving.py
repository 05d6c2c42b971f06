"""Serving an app in this process (the demo, the tests): on a port nobody can take first."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from receiver.serving import bound_socket, free_port, port_of, serving


async def _hello(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", _hello)])


def test_a_bound_socket_holds_its_port_until_served_there_and_serving_closes_it() -> None:
    """Between choosing the port and serving on it, nobody else can bind it (a port from
    ``free_port`` was let go: an outgoing connection could take it and the demo failed to
    start); the app is served on it, and the socket is closed when serving ends."""
    sock = bound_socket()
    port = port_of(sock)
    with socket.socket() as intruder, pytest.raises(OSError, match="in use"):
        intruder.bind(("127.0.0.1", port))

    async def fetch() -> str:
        async with serving(APP, sock), httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/")
        return answer.text

    assert asyncio.run(fetch()) == "hello"
    assert sock.fileno() == -1


def test_connections_to_a_bound_socket_send_small_answers_at_once() -> None:
    """asyncio sets TCP_NODELAY on the connections of a socket whose protocol is TCP;
    one made with the default protocol (0) left Nagle's algorithm on, and each answer's
    body waited for the client's delayed ACK (the convergence test went from 5 s to 42)."""
    with bound_socket() as sock:
        assert sock.proto == socket.IPPROTO_TCP


def test_a_free_port_for_another_process_is_one_no_outgoing_connection_can_take() -> None:
    """A port handed to a server process (``serve --port``) is below the kernel's
    ephemeral range: one bound to port 0 and let go was the next one an outgoing
    connection could get, and the server then failed with "address already in use"."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))  # and it is free
