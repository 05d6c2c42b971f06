"""One error mapping: a database that cannot answer is 503 + Retry-After on every surface."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.http_errors import UNAUTHORIZED, UNAVAILABLE, answer_for
from receiver.tokens import TokenError, create_token
from receiver.ui import auth
from storage.db import make_engine
from storage.errors import StoreUnavailable
from tests.factories import NOW

KEY = "read-key-errors-0123456789"


@pytest.fixture(name="dead_engine")
def fixture_dead_engine() -> Iterator[Engine]:
    """A PostgreSQL URL on a port where nothing listens: every connection is refused."""
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")
    yield engine
    engine.dispose()


@pytest.fixture(name="down")
def fixture_down(make_app: Callable[..., Starlette], dead_engine: Engine) -> TestClient:
    """The receiver over a database that is down (no lifespan: nothing runs at start-up)."""
    app = make_app(engine=dead_engine, check_schema=False, sink_secret_key=KEY)
    return TestClient(app)


def test_the_mapping_names_one_answer_per_error() -> None:
    """StoreUnavailable → 503 with Retry-After; any token problem → the one generic 401."""
    assert answer_for(StoreUnavailable("locked")) is UNAVAILABLE
    assert answer_for(TokenError("expired")) is UNAUTHORIZED
    assert answer_for(ValueError("other")) is None
    assert (UNAVAILABLE.status, UNAVAILABLE.headers["Retry-After"]) == (503, "5")


def test_read_api_answers_503_with_retry_after_and_its_own_headers(down: TestClient) -> None:
    """The API's sub-app maps the error itself, so no-store and nosniff are still added."""
    token = create_token(KEY, scope="read", ttl=timedelta(hours=1))
    response = down.get("/api/results", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.json() == {"error": "temporarily unavailable"}
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_dashboard_answers_503_with_retry_after_as_a_page(down: TestClient) -> None:
    """The dashboard renders the same answer as HTML."""
    login = auth.create_login_token([KEY], session_ttl=timedelta(hours=8), now=NOW)
    assert down.get(f"/ui/login?token={login}").status_code == 200
    response = down.get("/ui/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Database unavailable" in response.text
