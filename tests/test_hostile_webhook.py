"""The webhook app against hostile requests (issue 8, items 3, 5, 6 and 10), via TestClient,
and one in-process uvicorn for the request-head guard that runs below ASGI.

Real server processes for disconnects, logs and header limits are in
``test_hostile_server.py``.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.http_guard import PROTOCOL
from receiver.serving import bound_socket, port_of, serving
from storage.db import make_engine, transaction
from tests.factories import encode, score_completed, score_completed_payload, signed
from tests.servers import metric, raw_exchange, request_with_header

URL = "/webhooks/nova"


def metric_lines(client: TestClient) -> set[str]:
    return set(client.get("/metrics").text.splitlines())


# ---- item 3: values no scorer produces are stored unparsed, never applied ----------------------


@pytest.mark.parametrize(
    "payload",
    [
        score_completed_payload(score=11),
        score_completed_payload(score=-1),
        score_completed_payload(score=2147483647),
        score_completed_payload(completed_at="\u0661\u0662\u0663"),
        score_completed_payload(completed_at="0001-01-01T00:00:00Z"),
        {"event": "score.completed", "scoringJobId": "sj_1"},
        score_completed_payload(job_id=".."),
    ],
    ids=["score-11", "score-minus-1", "score-int-max", "arabic-digits", "year-1", "bare", "dotdot"],
)
def test_implausible_signed_payload_is_stored_unparsed_not_applied(
    client: TestClient, sqlite_engine: Engine, payload: dict[str, Any]
) -> None:
    """200 stored-unparsed (replayable after an upgrade), and no result row."""
    body = encode(payload)
    response = client.post(URL, content=body, headers=signed(body))
    assert response.json() == {"status": "stored-unparsed"}
    with transaction(sqlite_engine, write=False) as store:
        assert store.get_result("sj_1") is None
        assert store.unparsed_delivery_ids() != []


# ---- item 5: no redirect built from the Host header ------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", URL + "/"), ("GET", "/healthz/")])
def test_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(
    client: TestClient, method: str, path: str
) -> None:
    """`POST /webhooks/nova/` with `Host: evil.example` is not `307 Location: http://evil…`."""
    body = score_completed()
    response = client.request(
        method,
        path,
        content=body if method == "POST" else None,
        headers={"host": "evil.example", **(signed(body) if method == "POST" else {})},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text


# ---- item 6: readyz tells strangers nothing about the database --------------------------------


def test_readyz_with_the_database_down_has_a_generic_body(
    make_app: Callable[..., Starlette], capsys: pytest.CaptureFixture[str]
) -> None:
    """503 {"status": "unavailable"}: no host, port or database name (those go to the log)."""
    engine = make_engine("postgresql+psycopg://nova@127.0.0.1:1/secret_db_name?connect_timeout=2")
    try:
        with TestClient(make_app(engine=engine, check_schema=False)) as client:
            response = client.get("/readyz")
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    for detail in ("127.0.0.1", "secret_db_name", ":1", "connection"):
        assert detail not in response.text


def test_readyz_on_an_old_schema_has_the_same_generic_body(
    make_app: Callable[..., Starlette], tmp_path: Path
) -> None:
    """An unmigrated database answers the very same body: revisions are for the log."""
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with TestClient(make_app(engine=engine, check_schema=False)) as client:
            response = client.get("/readyz")
    finally:
        engine.dispose()
    assert (response.status_code, response.json()) == (503, {"status": "unavailable"})


# ---- item 10: rejections before the handler are counted ---------------------------------------


def test_oversized_bodies_are_counted_as_413(make_app: Callable[..., Starlette]) -> None:
    """A 413 (declared or streamed) adds to nova_sink_rejected_requests_total{status="413"}."""
    with TestClient(make_app(webhook_max_body_bytes=1024)) as client:
        big = b"x" * 2048
        assert client.post(URL, content=big).status_code == 413
        chunks = iter([b"x" * 800, b"x" * 800])
        assert client.post(URL, content=chunks).status_code == 413
        lines = metric_lines(client)
    assert 'nova_sink_rejected_requests_total{status="413"} 2.0' in lines


@pytest.mark.anyio
async def test_oversized_request_heads_are_counted_as_431(
    make_app: Callable[..., Starlette],
) -> None:
    """A head over the guard's limit, refused below ASGI, adds to
    nova_sink_rejected_requests_total{status="431"} of the app served (real uvicorn)."""
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    async with serving(make_app(), sock, http=PROTOCOL):
        answer = await asyncio.to_thread(raw_exchange, port, request_with_header(64 * 1024))
        count = await asyncio.to_thread(
            metric, f"http://127.0.0.1:{port}", 'nova_sink_rejected_requests_total{status="431"}'
        )

    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert count == 1


def test_client_disconnect_mid_body_is_counted_not_raised(
    make_app: Callable[..., Starlette],
) -> None:
    """An `http.disconnect` before the body is complete: no exception escapes, one count."""
    app = make_app()
    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", b"1000"), (b"host", b"sink")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    with TestClient(app) as client:  # lifespan up: the writer runs, as in production
        asyncio.run(app(scope, receive, send))
        lines = metric_lines(client)
    assert "nova_sink_abandoned_requests_total 1.0" in lines
    assert all(m.get("status") != 500 for m in sent)


# ---- item 9: verification cost stays off the event loop for large bodies ---------------------


@pytest.fixture(name="hmac_threads")
def fixture_hmac_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each HMAC is computed on (a spy on the standard library)."""
    names: list[str] = []
    original = hmac.new

    def spy(*args: Any, **kwargs: Any) -> Any:
        names.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(hmac, "new", spy)
    return names


def test_large_forged_bodies_are_hashed_off_the_event_loop(
    client: TestClient, hmac_threads: list[str]
) -> None:
    """A forged 1 MiB body is verified in a worker thread: genuine deliveries keep the loop."""
    body = b"x" * (1024 * 1024 - 1)
    response = client.post(URL, content=body, headers={"x-webhook-signature": "0" * 64})
    assert response.status_code == 401
    assert hmac_threads
    assert all(name.startswith("AnyIO worker thread") for name in hmac_threads)


def test_small_bodies_are_hashed_inline(client: TestClient, hmac_threads: list[str]) -> None:
    """A delivery of ordinary size skips the thread hand-off (it costs more than the HMAC)."""
    body = score_completed()
    assert client.post(URL, content=body, headers=signed(body)).status_code == 200
    assert hmac_threads
    assert not any(name.startswith("AnyIO worker thread") for name in hmac_threads)
