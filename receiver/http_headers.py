"""Headers set on every response of a part of the app, whoever built the response."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Header = tuple[bytes, bytes]


class SetHeaders:
    """Pure ASGI middleware: ``headers`` on every response, replacing any of the same name
    (errors, 404s and 405s answered by the wrapped app included)."""

    def __init__(self, app: ASGIApp, headers: Sequence[Header]) -> None:
        self.app = app
        self.headers = list(headers)
        self.names = {name.lower() for name, _ in headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                kept = [(n, v) for n, v in headers if n.lower() not in self.names]
                message = {**message, "headers": [*kept, *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
