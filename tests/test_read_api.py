"""The read API: headers, tokens and key rotation, strict parameters, cursor paging, changes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from receiver import cursors
from receiver.app import create_app
from receiver.errors import ConfigError
from receiver.query_params import Query, QueryError
from receiver.read_api import MAX_LIMIT
from receiver.settings import Settings
from receiver.tokens import create_token
from storage.db import transaction
from storage.records import ScoringResult
from storage.store import ResultChange
from tests.factories import NOW, SECRET, at, batch_state, completed, failed, inbound

ALLOWED = ("limit", "since", "job", "wait")
KEY = "read-key-new-0123456789"
OLD_KEY = "read-key-old-0123456789"


def token(key: str = KEY, *, ttl: timedelta = timedelta(hours=1)) -> str:
    return create_token(key, scope="read", ttl=ttl)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(key)}"}


@pytest.fixture(name="api_app")
def fixture_api_app(make_app: Callable[..., Starlette], engine: Engine) -> Starlette:
    """The receiver with the read API on, over SQLite and PostgreSQL."""
    return make_app(engine=engine, sink_secret_key=f"{KEY},{OLD_KEY}")


@pytest.fixture(name="api")
def fixture_api(api_app: Starlette) -> Iterator[TestClient]:
    with TestClient(api_app) as client:
        yield client


def store_results(engine: Engine, *results: ScoringResult, now: Any = NOW) -> None:
    """Store results and log them in the feed, as the webhook path does."""
    with transaction(engine) as store:
        created = store.insert_new_results(list(results), source="webhook", now=now, delivered=True)
        store.log_changes([ResultChange(i, "created") for i in sorted(created)], now=now)


def get(api: TestClient, path: str, **params: Any) -> Any:
    answer = api.get(path, params=params, headers=auth())
    assert answer.status_code == 200, answer.text
    return answer.json()


# ---- headers and tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/results", "good"),
        ("GET", "/api/results?limit=0", "good"),
        ("GET", "/api/results", "none"),
        ("GET", "/api/results/unknown", "good"),
        ("GET", "/api/nothing-here", "none"),
        ("GET", "/api/results/", "good"),
        ("POST", "/api/results", "good"),
        ("GET", "/api/changes", "good"),
    ],
)
def test_every_api_answer_forbids_caching_and_sniffing(
    api: TestClient, method: str, path: str, headers: str
) -> None:
    """200, 400, 401, 404 and 405 alike carry no-store and nosniff."""
    answer = api.request(method, path, headers=auth() if headers == "good" else {})

    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "location" not in answer.headers


def test_every_token_problem_gets_the_same_401(
    api: TestClient, make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """Missing, wrong scheme, forged, unknown key, garbage, expired: one body for all."""
    attempts: list[dict[bytes, bytes]] = [
        {},
        {b"Authorization": f"Basic {token()}".encode()},
        {b"Authorization": f"Bearer {token()}x".encode()},
        {b"Authorization": f"Bearer {token('some-other-key-0123456789')}".encode()},
        {b"Authorization": b"Bearer ..."},
        {b"Authorization": b"Bearer "},
        {b"Authorization": "Bearer \u00e9\u00e9".encode("latin-1")},
    ]
    with capture_logs() as logs:
        answers = [api.get("/api/results", headers=headers) for headers in attempts]
    settings = Settings(
        _env_file=None,
        nova_webhook_secrets=SECRET,
        database_url=str(sqlite_engine.url),
        sink_secret_key=KEY,
    )
    two_hours_on = lambda: datetime.now(UTC) + timedelta(hours=2)  # noqa: E731 - the clock seam
    with TestClient(create_app(settings, engine=sqlite_engine, now=two_hours_on)) as later:
        answers.append(later.get("/api/results", headers=auth()))

    assert {a.status_code for a in answers} == {401}
    assert {a.text for a in answers} == {'{"error":"unauthorized"}'}
    reasons = {entry["reason"] for entry in logs if entry["event"] == "read_api_unauthorized"}
    assert reasons == {"no bearer token", "bad signature"}  # the log says what the body hides


def test_tokens_signed_with_an_older_key_still_work_during_rotation(api: TestClient) -> None:
    """SINK_SECRET_KEY=new,old: tokens of both keys are accepted, others are not."""
    assert api.get("/api/results", headers=auth(KEY)).status_code == 200
    assert api.get("/api/results", headers=auth(OLD_KEY)).status_code == 200
    assert api.get("/api/results", headers=auth("retired-key-0123456789")).status_code == 401


def test_new_tokens_are_signed_with_the_newest_key(make_app: Callable[..., Starlette]) -> None:
    """A token from the key list verifies against the newest key alone."""
    signed = create_token([KEY, OLD_KEY], scope="read", ttl=timedelta(hours=1))
    with TestClient(make_app(sink_secret_key=KEY)) as client:
        answer = client.get("/api/results", headers={"Authorization": f"Bearer {signed}"})
    assert answer.status_code == 200


# ---- strict parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("/api/results", "limit=%C2%B2", "limit"),
        ("/api/results", "limit=" + "9" * 5000, "limit"),
        ("/api/results", "limit=0", "limit"),
        ("/api/results", "limit=1001", "limit"),
        ("/api/results", "limit=", "limit"),
        ("/api/results", "limit=1&limit=2", "limit"),
        ("/api/results", "since=99999999999999999999", "since"),
        ("/api/results", "since=0001-01-01T00:00:00%2B01:00", "since"),
        ("/api/results", "since=%D9%A1%D9%A2%D9%A3", "since"),
        ("/api/results", "since=9999999w", "since"),
        ("/api/results", "since=yesterday", "since"),
        ("/api/results", "status=done", "status"),
        ("/api/results", "job=%00", "job"),
        ("/api/results", "job=" + "j" * 201, "job"),
        ("/api/results", "after=not-a-cursor", "after"),
        ("/api/results", "after=" + cursors.encode("batches", NOW, "b"), "after"),
        ("/api/results", "offset=10", "offset"),
        ("/api/results/sj_1", "verbose=1", "verbose"),
        ("/api/batches", "after=" + cursors.encode("batches", "x", "b"), "after"),
        ("/api/deliveries", "after=" + cursors.encode("deliveries", -1), "after"),
        ("/api/deliveries", "after=" + cursors.encode("deliveries", True), "after"),
        ("/api/changes", "wait=31", "wait"),
        ("/api/changes", "wait=1.5", "wait"),
        ("/api/changes", "after=" + cursors.encode("changes", 2**64), "after"),
        ("/api/changes", "status=unknown", "status"),
        ("/api/changes", "include=everything", "include"),
    ],
)
def test_unusable_parameters_are_400_naming_the_parameter(
    api: TestClient, path: str, query: str, param: str
) -> None:
    """Unicode digits, huge numbers, dates out of range, foreign cursors, unknown names."""
    answer = api.get(f"{path}?{query}", headers=auth())

    assert answer.status_code == 400, answer.text
    assert answer.json()["parameter"] == param
    assert param in answer.json()["error"]


@pytest.mark.parametrize(
    "since",
    [
        "2026-01-15T11:00:00Z",
        "2026-01-15T12:00:00+01:00",
        "2026-01-15T12:00:00 01:00",
        "1768474800",
        "1h",
        "7d",
    ],
)
def test_since_takes_iso_unix_seconds_and_ages(api: TestClient, engine: Engine, since: str) -> None:
    """Every accepted form of since selects by last update (the app's clock is NOW)."""
    store_results(engine, completed("sj_old"), now=at(-60 * 24 * 30))
    store_results(engine, completed("sj_new"), now=NOW)

    page = get(api, "/api/results", since=since)

    assert [r["scoring_job_id"] for r in page["data"]] == ["sj_new"]


# ---- paging ---------------------------------------------------------------------------------


def test_results_page_through_every_row_once_while_rows_arrive_and_change(
    api: TestClient, engine: Engine
) -> None:
    """25 results in pages of 10, with inserts and an update between pages: each once."""
    store_results(engine, *(completed(f"sj_{n:02}") for n in range(25)), now=at(-10))
    seen: list[str] = []
    page = get(api, "/api/results", limit=10)
    while True:
        seen.extend(r["scoring_job_id"] for r in page["data"])
        # Meanwhile: new results arrive, and one not yet listed is updated (a new status).
        store_results(engine, completed(f"new_{len(seen)}"), now=at(len(seen)))
        with transaction(engine) as store:
            store.apply_result(failed("sj_00", when=at(5)), source="webhook", now=at(5))
        if page["next"] is None:
            break
        page = get(api, "/api/results", limit=10, after=page["next"])

    assert sorted(seen) == [f"sj_{n:02}" for n in range(25)]
    assert len(seen) == 25


def test_a_full_last_page_says_there_is_no_next(api: TestClient, engine: Engine) -> None:
    """Exactly limit rows: next is null, not a cursor to an empty page."""
    store_results(engine, completed("sj_1"), completed("sj_2"))

    assert get(api, "/api/results", limit=2)["next"] is None
    assert get(api, "/api/results", limit=1)["next"] is not None


def test_batches_and_deliveries_page_with_cursors(api: TestClient, engine: Engine) -> None:
    """Pages of 2 over 5 batches and 5 deliveries visit each once, newest first."""
    with transaction(engine) as store:
        for n in range(5):
            store.track_batch(batch_state(f"b{n}"), now=at(n))
            store.record_delivery(inbound(f"m{n}"), outcome="applied", now=at(n))

    def walk(path: str, key: str) -> list[str]:
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = get(api, path, **params)
            seen.extend(str(r[key]) for r in page["data"])
            if page["next"] is None:
                return seen
            params["after"] = page["next"]

    assert walk("/api/batches", "batch_id") == ["b4", "b3", "b2", "b1", "b0"]
    assert walk("/api/deliveries", "webhook_id") == ["m4", "m3", "m2", "m1", "m0"]


def test_one_result_and_one_batch_by_id(api: TestClient, engine: Engine) -> None:
    """GET by id returns the row; an unknown or unprintable id is 404."""
    store_results(engine, completed("sj_1", batch_id="b1"))
    with transaction(engine) as store:
        store.track_batch(batch_state("b1"), now=NOW)

    assert get(api, "/api/results/sj_1")["score"] == 7
    assert [r["scoring_job_id"] for r in get(api, "/api/batches/b1")["results"]] == ["sj_1"]
    assert api.get("/api/results/nope", headers=auth()).status_code == 404
    assert api.get("/api/batches/%00", headers=auth()).status_code == 404


# ---- the change feed ------------------------------------------------------------------------


def test_changes_come_in_order_with_a_cursor_per_change_and_a_next(
    api: TestClient, engine: Engine
) -> None:
    """Three changes in pages of 2; each item's cursor resumes right after it."""
    store_results(engine, completed("sj_1"), completed("sj_2"))
    with transaction(engine) as store:
        store.apply_result(failed("sj_3"), source="webhook", now=NOW)
        store.log_changes([ResultChange("sj_3", "created")], now=NOW)

    first = get(api, "/api/changes", limit=2)
    second = get(api, "/api/changes", limit=2, after=first["next"])
    resumed = get(api, "/api/changes", after=first["data"][0]["cursor"])

    assert [c["seq"] for c in first["data"]] == [1, 2]
    assert [(c["seq"], c["status"]) for c in second["data"]] == [(3, "failed")]
    assert [c["seq"] for c in resumed["data"]] == [2, 3]
    assert get(api, "/api/changes", after=second["next"])["data"] == []


def test_a_filtered_feed_cursor_moves_past_what_it_left_out(
    api: TestClient, engine: Engine
) -> None:
    """status=failed over completed changes: nothing returned, and next skips them all."""
    store_results(engine, completed("sj_1"), completed("sj_2"))

    page = get(api, "/api/changes", status="failed")

    assert page["data"] == []
    assert cursors.decode_position("changes", page["next"]) == 2


def test_include_result_embeds_each_result_as_stored_now(api: TestClient, engine: Engine) -> None:
    """include=result: both changes of sj_1 carry its current row; without it, none."""
    store_results(engine, failed("sj_1"))
    with transaction(engine) as store:
        store.apply_result(completed("sj_1"), source="reconcile", now=NOW)
        store.log_changes([ResultChange("sj_1", "updated")], now=NOW)

    embedded = get(api, "/api/changes", include="result")["data"]
    plain = get(api, "/api/changes")["data"]

    assert [(c["status"], c["result"]["status"]) for c in embedded] == [
        ("failed", "completed"),
        ("completed", "completed"),
    ]
    assert embedded[0]["result"]["score"] == 7
    assert all("result" not in c for c in plain)


def test_after_now_starts_at_the_head(api: TestClient, engine: Engine) -> None:
    """after=now skips history: only later changes follow."""
    store_results(engine, completed("sj_1"))
    head = get(api, "/api/changes", after="now")
    store_results(engine, completed("sj_2"))

    later = get(api, "/api/changes", after=head["next"])

    assert head["data"] == []
    assert [c["scoring_job_id"] for c in later["data"]] == ["sj_2"]


# slow: a long poll waits on the wall clock: seconds of wall time, kept out of the inner loop.
@pytest.mark.slow
def test_a_long_poll_answers_with_a_change_committed_while_it_waits(
    api: TestClient, engine: Engine
) -> None:
    """wait=20 on an empty feed; a result stored meanwhile is in the answer."""
    writer = threading.Timer(0.5, store_results, args=(engine, completed("sj_late")))
    writer.start()
    try:
        page = get(api, "/api/changes", wait=20)
    finally:
        writer.join()

    assert [c["scoring_job_id"] for c in page["data"]] == ["sj_late"]


# slow: a long poll waits on the wall clock: seconds of wall time, kept out of the inner loop.
@pytest.mark.slow
def test_a_long_poll_with_nothing_new_ends_empty_at_the_head(
    api: TestClient, engine: Engine
) -> None:
    """wait=1 with no matching change: an empty answer whose next is past the non-matches."""
    store_results(engine, completed("sj_1"))

    page = get(api, "/api/changes", wait=1, batch="other")

    assert page["data"] == []
    assert cursors.decode_position("changes", page["next"]) == 1


def test_the_read_api_is_off_without_a_key(make_app: Callable[..., Starlette]) -> None:
    """No SINK_SECRET_KEY: 404 with the reason, and the API headers all the same."""
    with TestClient(make_app()) as client:
        answer = client.get("/api/changes", headers=auth())

    assert answer.status_code == 404
    assert "SINK_SECRET_KEY" in answer.json()["error"]
    assert answer.headers["cache-control"] == "no-store"


# ---- pure parsers ---------------------------------------------------------------------------


@given(st.text(max_size=60))
def test_any_text_is_a_value_or_a_query_error(value: str) -> None:
    """Whatever a client sends, parsing raises nothing but QueryError (never a 500)."""
    query = Query([("limit", value), ("since", value), ("job", value), ("wait", value)], ALLOWED)
    for read in (
        lambda: query.integer("limit", default=1, low=1, high=MAX_LIMIT),
        lambda: query.since("since", now=NOW),
        lambda: query.text("job"),
    ):
        with contextlib.suppress(QueryError):
            read()


@given(
    st.text(max_size=80) | st.binary(max_size=60).map(lambda b: cursors.encode("changes", b.hex()))
)
def test_any_cursor_text_decodes_or_is_a_cursor_error(value: str) -> None:
    """Cursor decoding raises nothing but CursorError, whatever the text."""
    for decode in (cursors.decode_position, cursors.decode_timestamp_key):
        with contextlib.suppress(cursors.CursorError):
            decode("changes", value)


def test_sink_secret_key_is_a_comma_list_newest_first() -> None:
    """Spaces around commas are ignored; the first key signs; a short key is refused."""
    cfg = Settings(_env_file=None, sink_secret_key=f" {KEY} , {OLD_KEY} ")

    assert cfg.read_token_keys() == [KEY, OLD_KEY]
    assert cfg.read_token_key() == KEY
    with pytest.raises(ConfigError, match="SINK_SECRET_KEY"):
        Settings(_env_file=None, sink_secret_key=f"{KEY},short").read_token_keys()
