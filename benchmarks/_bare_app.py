"""The ingest benchmark's baseline: a bare Starlette app that reads the body and answers 200.

Same route, same uvicorn settings, same load generator as the receiver, so the ratio
between the two isolates what the receiver does per delivery (verify, parse, commit, log).

    uvicorn --factory --app-dir benchmarks _bare_app:create_app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def webhook(request: Request) -> Response:
    await request.body()
    return JSONResponse({"status": "ok"})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/webhooks/nova", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
