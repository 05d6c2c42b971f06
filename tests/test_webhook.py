"""POST /webhooks/nova through the real app (TestClient) on a real SQLite file.

Every case asserts the status code and what the database holds afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient
from structlog.testing import capture_logs

import receiver.app
import receiver.webhook
from receiver.errors import ConfigError
from receiver.logs import configure_logging
from receiver.settings import Settings
from receiver.signatures import fingerprint
from receiver.writer import ThreadLane, Writer
from storage.db import make_engine, transaction
from storage.errors import SchemaOutOfDate
from tests.factories import (
    COMPLETED_AT,
    NOW,
    OTHER_SECRET,
    SECOND_SECRET,
    SECRET,
    batch_completed,
    completed,
    encode,
    hmac_hex,
    nova_test_event,
    received,
    score_completed,
    score_completed_payload,
    score_failed,
    signed,
)

URL = "/webhooks/nova"
TABLES = ("delivery", "scoring_job", "batch", "rejected_application")

CountRows = Callable[..., int]


def post(client: TestClient, body: bytes, headers: dict[str, Any] | None = None) -> Any:
    return client.post(URL, content=body, headers=headers or {})


def table_counts(count_rows: CountRows) -> dict[str, int]:
    return {table: count_rows(table) for table in TABLES}


def assert_nothing_stored(count_rows: CountRows) -> None:
    assert table_counts(count_rows) == dict.fromkeys(TABLES, 0)


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def hash_key(body: bytes) -> str:
    """The inbox key of a delivery whose signature does not cover its webhook id."""
    return "sha256:" + sha(body)


def score_event_of_unknown_kind() -> bytes:
    return encode({"event": "score.rescored", "scoringJobId": "sj_1"})


def delivery_rows(engine: Engine) -> list[dict[str, Any]]:
    with transaction(engine, write=False) as store:
        rows = store.conn.execute(sa.text("SELECT * FROM delivery ORDER BY id")).mappings()
        return [dict(r) for r in rows]


def result_row(engine: Engine, scoring_job_id: str = "sj_1") -> dict[str, Any]:
    with transaction(engine, write=False) as store:
        found = store.get_result(scoring_job_id)
    assert found is not None
    return dict(found)


# ---- rejected before the database: 401 ------------------------------------------------------


def test_missing_signature_is_401_and_stores_nothing(
    client: TestClient, count_rows: CountRows
) -> None:
    """No signature header: 401, nothing stored."""
    response = post(client, score_completed(), {"x-webhook-id": "msg_1"})
    assert response.status_code == 401
    assert_nothing_stored(count_rows)


@pytest.mark.parametrize(
    "value", ["sha256=", "sha256=xyz", "v1,Zm9vYmFy", "t=1,v1=abc", "sha256=" + "g" * 64]
)
def test_garbled_signature_header_is_401(
    client: TestClient, count_rows: CountRows, value: str
) -> None:
    """A signature header without a usable digest: 401, nothing stored."""
    response = post(client, score_completed(), {"x-webhook-signature": value})
    assert response.status_code == 401
    assert_nothing_stored(count_rows)


def test_wrong_secret_is_401(client: TestClient, count_rows: CountRows) -> None:
    """A well-formed signature made with another secret: 401, nothing stored."""
    body = score_completed()
    assert post(client, body, signed(body, OTHER_SECRET)).status_code == 401
    assert_nothing_stored(count_rows)


def test_body_changed_by_one_byte_is_401(client: TestClient, count_rows: CountRows) -> None:
    """The right secret over a body that then changed by one byte: 401, nothing stored."""
    body = score_completed()
    headers = signed(body)
    tampered = body.replace(b'"score": 7', b'"score": 8')
    assert post(client, tampered, headers).status_code == 401
    assert_nothing_stored(count_rows)


@pytest.mark.parametrize("construction", ["timestamp.body", "id.timestamp.body"])
@pytest.mark.parametrize("offset_minutes", [-6, 6], ids=["too-old", "too-far-in-future"])
def test_signed_timestamp_outside_tolerance_is_401(
    client: TestClient, count_rows: CountRows, construction: Any, offset_minutes: int
) -> None:
    """A timestamp the signature covers, 6 minutes off the clock: 401, nothing stored."""
    body = score_completed()
    stamp = NOW + timedelta(minutes=offset_minutes)
    headers = signed(body, construction=construction, webhook_id="msg_1", timestamp=stamp)
    assert post(client, body, headers).status_code == 401
    assert_nothing_stored(count_rows)


def test_a_webhook_after_erase_is_answered_erased_and_brings_nothing_back(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """Nova retries for days: a delivery for a candidate ``erase`` removed is a 200 (so the
    retries stop) with status ``erased``, and neither the result nor the body is stored."""
    with transaction(sqlite_engine) as store:
        store.erase_application("app-456", now=NOW)
    body = score_completed()  # application app-456

    response = post(client, body, signed(body, webhook_id="msg_1"))

    assert (response.status_code, response.json()) == (200, {"status": "erased"})
    with transaction(sqlite_engine, write=False) as store:
        assert store.get_result("sj_1") is None
    [row] = delivery_rows(sqlite_engine)
    assert (row["outcome"], row["raw_body"]) == ("erased", None)


def test_body_only_signature_with_40_minute_old_timestamp_is_applied(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """Nova's last retry (~40 min later) with a body-only signature is still accepted."""
    body = score_completed()
    headers = signed(body, webhook_id="msg_1", timestamp=NOW - timedelta(minutes=40))
    response = post(client, body, headers)
    assert (response.status_code, response.json()) == (200, {"status": "applied"})
    assert result_row(sqlite_engine)["status"] == "completed"


@pytest.mark.parametrize(
    ("construction", "legacy"),
    [
        ("body", True),
        ("timestamp.body", False),
        ("id.timestamp.body", False),
        ("id.timestamp.body", True),
    ],
)
def test_every_construction_and_header_is_accepted_and_recorded(
    client: TestClient, sqlite_engine: Engine, construction: Any, legacy: bool
) -> None:
    """Each signed construction under either header is applied; the row records which."""
    body = score_completed()
    headers = signed(
        body,
        construction=construction,
        legacy_header=legacy,
        webhook_id="msg_1",
        timestamp=NOW - timedelta(seconds=10),
    )
    assert post(client, body, headers).json() == {"status": "applied"}
    (row,) = delivery_rows(sqlite_engine)
    header = "x-nova-signature" if legacy else "x-webhook-signature"
    assert row["signature_scheme"] == f"{header}/{construction}"
    assert row["secret_fingerprint"] == fingerprint(SECRET)


def test_401_body_is_the_same_whatever_failed(client: TestClient) -> None:
    """The 401 body gives no hint which check failed."""
    body = score_completed()
    stale = signed(body, construction="timestamp.body", timestamp=NOW - timedelta(hours=1))
    bad_time = {
        "x-webhook-timestamp": "garbage",
        "x-webhook-signature": "sha256=" + hmac_hex(SECRET, b"garbage." + body),
    }
    cases = [
        {},
        {"x-webhook-signature": "nonsense"},
        signed(body, OTHER_SECRET),
        stale,
        bad_time,
    ]
    responses = [post(client, body, headers) for headers in cases]
    assert {r.status_code for r in responses} == {401}
    assert len({r.content for r in responses}) == 1
    assert len({r.headers["content-type"] for r in responses}) == 1


# ---- body limit: 413 ----------------------------------------------------------------------------

LIMIT = 4096


@pytest.fixture(name="small_client")
def fixture_small_client(make_app: Callable[..., Starlette]) -> Iterator[TestClient]:
    """The receiver with WEBHOOK_MAX_BODY_BYTES=4096."""
    with TestClient(make_app(webhook_max_body_bytes=LIMIT)) as client:
        yield client


def padded(size: int) -> bytes:
    """A valid score.completed body of exactly ``size`` bytes."""
    base = score_completed(verdict="")
    body = score_completed(verdict="v" * (size - len(base)))
    assert len(body) == size
    return body


def test_oversized_body_with_content_length_is_413(
    small_client: TestClient, count_rows: CountRows
) -> None:
    """A validly signed body one byte over the limit: 413, nothing stored."""
    body = padded(LIMIT + 1)
    assert post(small_client, body, signed(body)).status_code == 413
    assert_nothing_stored(count_rows)


def test_body_at_the_limit_is_accepted(small_client: TestClient) -> None:
    """Exactly WEBHOOK_MAX_BODY_BYTES is allowed."""
    body = padded(LIMIT)
    assert post(small_client, body, signed(body)).json() == {"status": "applied"}


def test_default_limit_is_one_mebibyte(client: TestClient, count_rows: CountRows) -> None:
    """Without configuration, 1 MiB + 1 byte is refused."""
    body = padded(1_048_577)
    assert post(client, body, signed(body)).status_code == 413
    assert_nothing_stored(count_rows)


def test_oversized_chunked_body_is_413(small_client: TestClient, count_rows: CountRows) -> None:
    """Without Content-Length (chunked), the streamed size is limited too."""
    body = padded(3 * LIMIT)
    headers = signed(body)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = small_client.post(URL, content=chunks(), headers=headers)
    assert response.status_code == 413
    assert_nothing_stored(count_rows)


def test_lying_content_length_is_rejected(small_client: TestClient, count_rows: CountRows) -> None:
    """A Content-Length far smaller than the real (oversized) body: 413/400, nothing stored."""
    body = padded(3 * LIMIT)
    headers = {**signed(body), "content-length": "100"}
    assert post(small_client, body, headers).status_code in {400, 413}
    assert_nothing_stored(count_rows)


# ---- validly signed but not a known event: stored-unparsed -------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe\x00 not utf-8 \xc3\x28",
        b"hello, this is not json",
        b"[1, 2, 3]",
        encode(score_completed_payload(score="seven")),
        encode({"event": "score.completed"}),
        score_completed().replace(b'"score": 7', b'"score": NaN'),
        b'{"event": "test", "event": "test"}',
        score_completed().replace(b"Strong match for the role", b"nul \\u0000 byte"),
        score_completed().replace(b"Strong match for the role", b"lone \\ud800 surrogate"),
        b"[" * 50_000 + b"]" * 50_000,
    ],
    ids=[
        "empty",
        "non-utf8",
        "not-json",
        "array",
        "score-as-string",
        "missing-scoring-job-id",
        "nan",
        "duplicate-keys",
        "nul-escape",
        "lone-surrogate",
        "deep-nesting",
    ],
)
def test_signed_unparseable_body_is_stored_unparsed(
    client: TestClient, sqlite_engine: Engine, count_rows: CountRows, body: bytes
) -> None:
    """A verified body that does not parse: 200 stored-unparsed, raw bytes kept exactly."""
    response = post(client, body, signed(body))
    assert (response.status_code, response.json()) == (200, {"status": "stored-unparsed"})
    (row,) = delivery_rows(sqlite_engine)
    assert row["outcome"] == "stored-unparsed"
    assert bytes(row["raw_body"]) == body
    assert row["event"] is None
    assert count_rows("scoring_job") == 0


def test_unsigned_empty_body_is_401(client: TestClient, count_rows: CountRows) -> None:
    """An empty body without a signature is a 401 like any other."""
    assert post(client, b"").status_code == 401
    assert_nothing_stored(count_rows)


def test_unknown_event_is_stored_unparsed_with_its_name(
    client: TestClient, sqlite_engine: Engine, count_rows: CountRows
) -> None:
    """An event this version does not know is kept for replay, with its name."""
    body = encode({"event": "score.rescored", "scoringJobId": "sj_1"})
    assert post(client, body, signed(body, webhook_id="msg_u")).json() == {
        "status": "stored-unparsed"
    }
    (row,) = delivery_rows(sqlite_engine)
    assert (row["event"], row["webhook_id"], row["outcome"]) == (
        "score.rescored",
        "msg_u",
        "stored-unparsed",
    )
    assert bytes(row["raw_body"]) == body
    assert count_rows("scoring_job") == 0


# ---- events that parse ---------------------------------------------------------------------------


def test_huge_strings_and_unicode_round_trip(client: TestClient, sqlite_engine: Engine) -> None:
    """Emoji, RTL, CJK and a 300 kB verdict in every text field are applied and read back exact."""
    texts = ["😀👩‍💻", "مرحبا", "שלום\u200f", "候选人", "e\u0301", "\u202eevil"]
    big = "长" * 100_000  # 300 kB of UTF-8
    payload = score_completed_payload(
        "sj_" + texts[0],
        job_id="job_" + texts[3],
        application_id="app_" + texts[1],
        tenant_id="tenant_" + texts[2],
        verdict=big,
        strengths=texts,
        concerns=[texts[4] * 1000],
        interview_focus=[texts[5]],
        batchId="batch_" + texts[4],
    )
    body = encode(payload)
    assert post(client, body, signed(body)).json() == {"status": "applied"}
    row = result_row(sqlite_engine, "sj_" + texts[0])
    assert (row["job_id"], row["application_id"], row["tenant_id"], row["batch_id"]) == (
        "job_" + texts[3],
        "app_" + texts[1],
        "tenant_" + texts[2],
        "batch_" + texts[4],
    )
    assert row["verdict"] == big
    assert row["strengths"] == texts
    assert row["concerns"] == [texts[4] * 1000]
    assert row["interview_focus"] == [texts[5]]
    (delivery,) = delivery_rows(sqlite_engine)
    assert bytes(delivery["raw_body"]) == body
    assert delivery["scoring_job_id"] == "sj_" + texts[0]


def test_batch_completed_is_recorded_and_marks_the_batch_due(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """batch.completed: 200 recorded, a delivery row, and the batch tracked and due."""
    body = batch_completed("batch_1")
    assert post(client, body, signed(body, webhook_id="msg_b")).json() == {"status": "recorded"}
    with transaction(sqlite_engine, write=False) as store:
        batch = store.get_batch("batch_1")
        due = store.batches_to_reconcile(older_than=NOW)
    assert batch is not None
    assert (batch["status"], batch["due"], batch["failed_jobs"]) == ("failed", True, 1)
    assert [b["batch_id"] for b in due] == ["batch_1"]
    (row,) = delivery_rows(sqlite_engine)
    assert (row["event"], row["batch_id"], row["outcome"]) == (
        "batch.completed",
        "batch_1",
        "recorded",
    )


def test_test_event_is_recorded(
    client: TestClient, sqlite_engine: Engine, count_rows: CountRows
) -> None:
    """The Portal's test send: 200 recorded, one delivery row, no result."""
    body = nova_test_event()
    headers = signed(body, webhook_id="msg_t", event_header="test")
    assert post(client, body, headers).json() == {"status": "recorded"}
    (row,) = delivery_rows(sqlite_engine)
    assert (row["event"], row["outcome"]) == ("test", "recorded")
    assert count_rows("scoring_job") == 0


def test_rotation_second_secret_is_accepted(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """With two secrets configured, a delivery signed with the second one is applied."""
    with TestClient(make_app(secrets=f"{SECRET},{SECOND_SECRET}")) as client:
        body = score_completed()
        assert post(client, body, signed(body, SECOND_SECRET)).json() == {"status": "applied"}
    (row,) = delivery_rows(sqlite_engine)
    assert row["secret_fingerprint"] == fingerprint(SECOND_SECRET)


def test_same_delivery_twice_is_applied_then_duplicate(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """A Nova retry (same X-Webhook-Id): duplicate, delivery_count 2, one inbox row, attempts 2."""
    body = score_completed()
    headers = signed(body, webhook_id="msg_1")
    assert post(client, body, headers).json() == {"status": "applied"}
    assert post(client, body, headers).json() == {"status": "duplicate"}
    assert result_row(sqlite_engine)["delivery_count"] == 2
    (row,) = delivery_rows(sqlite_engine)
    assert (row["delivery_key"], row["attempts"], row["outcome"]) == (hash_key(body), 2, "applied")
    assert (row["webhook_id"], row["body_sha256"]) == ("msg_1", sha(body))


def test_same_body_without_webhook_id_is_deduplicated_by_hash(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """Without X-Webhook-Id the inbox key is the body's SHA-256."""
    body = score_completed()
    post(client, body, signed(body))
    assert post(client, body, signed(body)).json() == {"status": "duplicate"}
    (row,) = delivery_rows(sqlite_engine)
    assert row["delivery_key"] == hash_key(body)
    assert (row["webhook_id"], row["attempts"]) == (None, 2)


def test_replays_under_fresh_unsigned_ids_add_attempts_not_rows(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """One body-only-signed body replayed under 20 made-up ids: one row, 20 attempts."""
    body = score_completed()
    for n in range(20):
        post(client, body, signed(body, webhook_id=f"replay_{n}"))
    (row,) = delivery_rows(sqlite_engine)
    assert (row["delivery_key"], row["attempts"], row["webhook_id"]) == (
        hash_key(body),
        20,
        "replay_0",
    )
    assert result_row(sqlite_engine)["delivery_count"] == 20


def test_same_id_with_another_body_gets_its_own_flagged_row(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """Same X-Webhook-Id, different body: answered and stored in a row of its own, flagged."""
    first, second = score_completed("sj_1"), score_event_of_unknown_kind()
    assert post(client, first, signed(first, webhook_id="msg_1")).json() == {"status": "applied"}
    answer = post(client, second, signed(second, webhook_id="msg_1")).json()
    assert answer == {"status": "stored-unparsed"}
    rows = delivery_rows(sqlite_engine)
    assert [(bytes(r["raw_body"]), r["webhook_id"], r["webhook_id_reused"]) for r in rows] == [
        (first, "msg_1", False),
        (second, "msg_1", True),
    ]


def test_id_spelled_like_a_hash_key_stays_out_of_the_hash_namespace(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """An id spelled ``sha256:<hash of another body>`` neither joins nor shadows that row.

    Two secrets, each pinned to its own construction: body-only, and id.timestamp.body.
    """
    victim, other = score_completed("sj_1"), score_completed("sj_2")
    with TestClient(make_app(secrets=f"{SECRET},{SECOND_SECRET}")) as client:
        post(client, victim, signed(victim))
        post(client, other, signed(other, webhook_id=hash_key(victim)))
        timestamped = signed(
            other,
            secret=SECOND_SECRET,
            webhook_id=hash_key(victim),
            construction="id.timestamp.body",
            timestamp=NOW,
        )
        assert post(client, other, timestamped).status_code == 200
    rows = {r["delivery_key"]: r for r in delivery_rows(sqlite_engine)}
    assert rows[hash_key(victim)]["attempts"] == 1
    assert rows[hash_key(other)]["attempts"] == 1
    assert rows[f"{hash_key(other)}/id:{hash_key(victim)}"]["attempts"] == 1
    assert len(rows) == 3


def test_signed_webhook_ids_split_rows_and_retries_add_attempts(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """Where the signature covers the id, a new id is a new row and a retry an attempt."""
    body = score_completed()

    def send(webhook_id: str) -> Any:
        headers = signed(
            body, webhook_id=webhook_id, construction="id.timestamp.body", timestamp=NOW
        )
        return post(client, body, headers).json()

    assert [send("msg_1"), send("msg_1"), send("msg_2")] == [
        {"status": "applied"},
        {"status": "duplicate"},
        {"status": "duplicate"},
    ]
    rows = delivery_rows(sqlite_engine)
    assert [(r["delivery_key"], r["attempts"], r["webhook_id_reused"]) for r in rows] == [
        (f"{hash_key(body)}/id:msg_1", 2, False),
        (f"{hash_key(body)}/id:msg_2", 1, False),
    ]


def test_inbox_identity_holds_on_both_databases(
    engine: Engine, make_app: Callable[..., Starlette]
) -> None:
    """SQLite and PostgreSQL: replays under made-up ids add attempts; a reused id with
    another body gets its own flagged row; a signed id splits rows."""
    body, other = score_completed("sj_1"), score_completed("sj_2")
    # Two secrets, each pinned to its own construction: body-only, and id.timestamp.body.
    with TestClient(make_app(engine=engine, secrets=f"{SECRET},{SECOND_SECRET}")) as client:
        for n in range(3):
            post(client, body, signed(body, webhook_id=f"replay_{n}"))
        post(client, other, signed(other, webhook_id="replay_0"))
        id_signed = signed(
            body,
            secret=SECOND_SECRET,
            webhook_id="m",
            construction="id.timestamp.body",
            timestamp=NOW,
        )
        assert post(client, body, id_signed).status_code == 200
    rows = {r["delivery_key"]: r for r in delivery_rows(engine)}
    assert {k: (r["attempts"], r["webhook_id_reused"]) for k, r in rows.items()} == {
        hash_key(body): (3, False),
        hash_key(other): (1, True),
        f"{hash_key(body)}/id:m": (1, False),
    }
    assert bytes(rows[hash_key(other)]["raw_body"]) == other


def test_portal_resend_with_new_unsigned_webhook_id_is_a_duplicate_attempt(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """A manual re-send under a new, unsigned id: result duplicate, one more attempt."""
    body = score_completed()
    assert post(client, body, signed(body, webhook_id="msg_1")).json() == {"status": "applied"}
    assert post(client, body, signed(body, webhook_id="msg_2")).json() == {"status": "duplicate"}
    (row,) = delivery_rows(sqlite_engine)
    assert (row["attempts"], row["outcome"], row["webhook_id"]) == (2, "applied", "msg_1")
    assert result_row(sqlite_engine)["delivery_count"] == 2


def test_completed_then_failed_is_stale_and_keeps_the_result(
    client: TestClient, sqlite_engine: Engine
) -> None:
    """A failure after a completion: 200 stale, kept in the inbox, result unchanged."""
    done = score_completed()
    assert post(client, done, signed(done, webhook_id="m1")).json() == {"status": "applied"}
    before = result_row(sqlite_engine)
    fail = score_failed(failed_at="2026-01-15T11:59:30Z")
    assert post(client, fail, signed(fail, webhook_id="m2")).json() == {"status": "stale"}
    after = result_row(sqlite_engine)
    assert {k: v for k, v in after.items() if k != "delivery_count"} == {
        k: v for k, v in before.items() if k != "delivery_count"
    }
    assert [r["outcome"] for r in delivery_rows(sqlite_engine)] == ["applied", "stale"]


# ---- hostile headers -----------------------------------------------------------------------------

HOSTILE = [
    b"msg\r\nX-Injected: 1",
    b"msg\x00nul",
    b"\xff\xfe\xfd latin-1",
    b"\x1b[31mred\x1b[0m",
    b"x" * 5000,
]


@pytest.mark.parametrize("value", HOSTILE, ids=["crlf", "nul", "latin1", "ansi", "long"])
def test_hostile_webhook_id_never_500(
    client: TestClient, sqlite_engine: Engine, value: bytes
) -> None:
    """Injection characters in X-Webhook-Id: a valid delivery is applied, keyed by a digest."""
    body = score_completed()
    headers: dict[str, Any] = {**signed(body), "x-webhook-id": value}
    response = post(client, body, headers)
    assert (response.status_code, response.json()) == (200, {"status": "applied"})
    (row,) = delivery_rows(sqlite_engine)
    assert row["webhook_id"] is None
    assert row["delivery_key"] == hash_key(body)


@pytest.mark.parametrize("value", HOSTILE, ids=["crlf", "nul", "latin1", "ansi", "long"])
@pytest.mark.parametrize("header", ["x-webhook-signature", "x-nova-signature"])
def test_hostile_signature_header_is_401(
    client: TestClient, count_rows: CountRows, value: bytes, header: str
) -> None:
    """Injection characters in a signature header: 401, never a 500."""
    response = post(client, score_completed(), {header: value})
    assert response.status_code == 401
    assert_nothing_stored(count_rows)


@pytest.mark.parametrize("value", HOSTILE, ids=["crlf", "nul", "latin1", "ansi", "long"])
def test_hostile_timestamp_and_id_with_covering_signature_is_401(
    client: TestClient, count_rows: CountRows, value: bytes
) -> None:
    """A digest-shaped signature next to hostile id and timestamp headers: 401, never 500."""
    headers = {
        "x-webhook-signature": "sha256=" + "ab" * 32,
        "x-webhook-id": value,
        "x-webhook-timestamp": value,
    }
    assert post(client, score_completed(), headers).status_code == 401
    assert_nothing_stored(count_rows)


def test_hostile_timestamp_next_to_body_signature_is_applied(client: TestClient) -> None:
    """An unsigned, unreadable timestamp does not stop a body-signed delivery."""
    body = score_completed()
    headers: dict[str, Any] = {**signed(body), "x-webhook-timestamp": b"\xff\r\n\x00"}
    assert post(client, body, headers).json() == {"status": "applied"}


# ---- methods ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client: TestClient, count_rows: CountRows, method: str) -> None:
    """Only POST is allowed on the webhook path."""
    body = score_completed()
    response = client.request(method, URL, content=body, headers=signed(body))
    assert response.status_code == 405
    assert_nothing_stored(count_rows)


# ---- database trouble ----------------------------------------------------------------------------


@pytest.mark.slow  # waits out the 5 s busy timeout
def test_locked_read_only_database_is_503_and_nothing_half_written(
    client: TestClient, sqlite_engine: Engine, count_rows: CountRows
) -> None:
    """Database read-only and locked past the busy timeout: 503 + Retry-After, nothing stored."""
    path = Path(str(sqlite_engine.url.database))
    mode = path.stat().st_mode
    body = score_completed()
    os.chmod(
        path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    )  # 0444 (root ignores it: hence the lock)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        forged = post(client, body, signed(body, OTHER_SECRET))
        assert forged.status_code == 401  # a forged request never waits for the database
        assert time.monotonic() - started < 2
        response = post(client, body, signed(body, webhook_id="msg_1"))
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
    finally:
        holder.rollback()
        holder.close()
        os.chmod(path, mode)
    assert_nothing_stored(count_rows)
    # Nova's retry after the trouble is applied normally.
    assert post(client, body, signed(body, webhook_id="msg_1")).json() == {"status": "applied"}


def test_read_only_database_is_503_and_stores_nothing(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """A database opened read-only (as a full or read-only volume would be): 503, no 2xx."""
    path = Path(str(sqlite_engine.url.database))
    # SQLite's read-only open mode: unlike chmod, it holds even for root, who runs the tests.
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    body = score_completed()
    try:
        with TestClient(make_app(engine=read_only)) as client:
            response = post(client, body, signed(body, webhook_id="msg_ro"))
    finally:
        read_only.dispose()
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    with sqlite_engine.connect() as conn:
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in ("scoring_job", "delivery")
        ]
    assert counts == [0, 0]


def test_a_delivery_not_stored_is_logged_with_what_it_was(
    make_app: Callable[..., Starlette], sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 503's log line names the event and the scoring job, so that an operator sees
    what is waiting for Nova's retry (the writer, which parses, answered without them)."""
    first = score_completed("sj_first")
    with TestClient(make_app()) as client:  # the secret's signature pin is claimed
        assert post(client, first, signed(first, webhook_id="msg_first")).status_code == 200
    path = Path(str(sqlite_engine.url.database))
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    body = score_completed("sj_lost")
    try:
        with TestClient(make_app(engine=read_only)) as client, capture_logs() as logs:
            # A logger proxy bound before the capture keeps its processors: a new one.
            monkeypatch.setattr(receiver.webhook, "log", structlog.get_logger("nova_sink"))
            response = post(client, body, signed(body, webhook_id="msg_lost"))
    finally:
        read_only.dispose()
    assert response.status_code == 503
    (line,) = [entry for entry in logs if entry["event"] == "webhook_not_stored"]
    assert (line["event_type"], line["scoring_job_id"]) == ("score.completed", "sj_lost")


def incompressible_text(chars: int = 20_000) -> str:
    """Text PostgreSQL cannot compress below its index row limit (~8 kB)."""
    rng = random.Random(chars)
    return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(chars))


@pytest.mark.postgres
@pytest.mark.parametrize("field", ["scoringJobId", "jobId", "event"])
def test_overlong_indexed_text_is_not_an_endless_503_on_postgres(
    make_app: Callable[..., Starlette], postgres_engine: Engine, field: str
) -> None:
    """A signed body whose id/event cannot be indexed is kept (200), not refused forever (503)."""
    payload = score_completed_payload()
    payload[field] = incompressible_text()
    body = encode(payload)
    with TestClient(make_app(engine=postgres_engine)) as client:
        response = post(client, body, signed(body, webhook_id="msg_long"))
    assert response.status_code == 200
    (row,) = delivery_rows(postgres_engine)
    assert bytes(row["raw_body"]) == body


@pytest.mark.postgres
def test_unstorable_delivery_does_not_fail_its_group_neighbours(postgres_engine: Engine) -> None:
    """Committed in one group with an unstorable delivery, a good one is still applied."""
    bad_body = score_completed(incompressible_text())
    good_body = score_completed("sj_good")

    with transaction(postgres_engine) as store:
        store.apply_result(completed("sj_block"), source="webhook", now=NOW)
    blocker = received("block", score_completed("sj_block", completed_at=COMPLETED_AT))

    async def both() -> list[Any]:
        writer = Writer(ThreadLane(postgres_engine), now=lambda: NOW)
        await writer.start()
        # Keep the writer busy on a locked row so that the next two queue up as one group.
        with postgres_engine.connect() as lock:
            lock.execute(
                sa.text("SELECT 1 FROM scoring_job WHERE scoring_job_id = 'sj_block' FOR UPDATE")
            )
            first = asyncio.ensure_future(writer.submit(blocker))
            await asyncio.sleep(0.3)
            futures = [
                asyncio.ensure_future(writer.submit(received("bad", bad_body))),
                asyncio.ensure_future(writer.submit(received("good", good_body))),
            ]
            await asyncio.sleep(0.1)
            lock.rollback()
        try:
            return await asyncio.gather(first, *futures, return_exceptions=True)
        finally:
            await writer.stop()

    _, _bad, good = asyncio.run(both())
    assert good.status == "applied"
    assert result_row(postgres_engine, "sj_good")["status"] == "completed"


# ---- health, readiness, metrics ------------------------------------------------------------------


def test_healthz_is_200(client: TestClient) -> None:
    """The process answers."""
    assert client.get("/healthz").status_code == 200


def test_readyz_is_200_on_a_migrated_database(client: TestClient) -> None:
    """Ready when the schema is current."""
    response = client.get("/readyz")
    assert response.status_code == 200


def test_readyz_is_503_on_an_unmigrated_database(
    make_app: Callable[..., Starlette], tmp_path: Path
) -> None:
    """Not ready when the schema is missing (the app started with check_schema=False)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with TestClient(make_app(engine=engine, check_schema=False)) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
    finally:
        engine.dispose()


async def run_startup(app: Starlette) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Drive the ASGI lifespan startup by hand (bounded: TestClient would hang on exit)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})

    try:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await asyncio.wait_for(app(scope, inbox.get, send), timeout=10)
    except (SchemaOutOfDate, TimeoutError) as exc:
        return sent, exc
    return sent, None


def test_app_refuses_to_start_on_an_unmigrated_database(
    make_app: Callable[..., Starlette], tmp_path: Path
) -> None:
    """Schema check on, database empty: startup fails with one line AND raises.

    Raising after ``lifespan.startup.failed`` is what Starlette's own router does: uvicorn then
    logs only the message, and ``TestClient`` raises instead of starting (and hanging on exit).
    """
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        sent, error = asyncio.run(run_startup(make_app(engine=engine)))
    finally:
        engine.dispose()
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "nova-sink db upgrade" in sent[0]["message"]
    assert "\n" not in sent[0]["message"]
    assert isinstance(error, SchemaOutOfDate)


def test_app_starts_on_a_migrated_database(make_app: Callable[..., Starlette]) -> None:
    """The same startup on a migrated database completes (the harness above is sound)."""
    sent, error = asyncio.run(run_startup(make_app()))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert error is None


def test_metrics_count_deliveries_and_verification_failures(client: TestClient) -> None:
    """/metrics exposes deliveries by event and outcome, and 401s by reason."""
    body = score_completed()
    post(client, body, signed(body))
    post(client, body, signed(body))
    post(client, body)
    post(client, body, {"x-webhook-signature": "garbage"})
    post(client, body, signed(body, OTHER_SECRET))
    text = client.get("/metrics").text
    lines = set(text.splitlines())
    assert 'nova_sink_deliveries_total{event="score.completed",outcome="applied"} 1.0' in lines
    assert 'nova_sink_deliveries_total{event="score.completed",outcome="duplicate"} 1.0' in lines
    for reason in ("missing_signature", "malformed_signature", "no_matching_signature"):
        assert f'nova_sink_verification_failures_total{{reason="{reason}"}} 1.0' in lines
    assert "nova_sink_ingest_seconds_count 2.0" in lines


def test_metrics_label_unknown_events_as_other(client: TestClient) -> None:
    """Event names Nova may add later share one label, so metric series stay bounded."""
    for n in range(3):
        body = encode({"event": f"candidate.moved.{n}", "scoringJobId": f"sj_{n}"})
        assert post(client, body, signed(body)).json() == {"status": "stored-unparsed"}
    lines = set(client.get("/metrics").text.splitlines())
    assert 'nova_sink_deliveries_total{event="other",outcome="stored-unparsed"} 3.0' in lines


# ---- secrets never leak --------------------------------------------------------------------------

CANARY_SECRET = "whsec_CANARY_b6f1e0c2d94a7788"
CANARY_KEY = "sk_test_CANARY_3a5c7e9b1d2f4680"
CANARY_DB_PASSWORD = "CANARYpw_71d3e5"


@pytest.fixture(name="json_logs")
def fixture_json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Call it in the test (where capsys owns sys.stderr) to log JSON there; restored after."""
    previous = structlog.get_config()

    def start() -> None:
        configure_logging("json", "debug")
        # The module's logger proxy may have been bound (cached) by an earlier configuration.
        structlog.configure(cache_logger_on_first_use=False)
        monkeypatch.setattr(receiver.app, "log", structlog.get_logger("nova_sink.receiver"))

    yield start
    structlog.configure(**previous)


def test_canary_secrets_never_appear_in_logs_reprs_or_errors(
    sqlite_engine: Engine,
    fixed_clock: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
    json_logs: Callable[[], None],
) -> None:
    """The webhook secret, API key and database password never reach output of any kind."""
    json_logs()
    settings = Settings(
        _env_file=None,
        nova_webhook_secrets=f"{CANARY_SECRET},{SECRET}",
        nova_api_key=CANARY_KEY,
        database_url=f"postgresql+psycopg://nova:{CANARY_DB_PASSWORD}@db.invalid/sink",
    )
    app = receiver.app.create_app(settings, engine=sqlite_engine, now=fixed_clock)
    body = score_completed()
    stale = NOW - timedelta(hours=2)
    requests: list[tuple[bytes, dict[str, Any]]] = [
        (body, {}),
        (body, {"x-webhook-signature": "sha256=" + CANARY_SECRET}),
        (body, signed(body, OTHER_SECRET)),
        (body, signed(body, CANARY_SECRET, webhook_id="msg_1")),
        (body, signed(body, CANARY_SECRET, construction="timestamp.body", timestamp=stale)),
        (b"not json", signed(b"not json", CANARY_SECRET)),
    ]
    seen: list[str] = []
    with TestClient(app) as client:
        for content, headers in requests:
            response = post(client, content, headers)
            seen.append(f"{response.status_code} {response.headers} {response.text}")
        seen.append(client.get("/metrics").text)
        seen.append(client.get("/readyz").text)
    for broken in (f"{CANARY_SECRET},not_a_secret_{CANARY_SECRET}", ",".join([CANARY_SECRET] * 6)):
        with pytest.raises(ConfigError) as caught:
            Settings(_env_file=None, nova_webhook_secrets=broken).webhook_secrets()
        seen.append(f"{caught.value} {caught.value!r}")
    seen += [repr(settings), str(settings), repr(app.state.receiver)]
    captured = capsys.readouterr()
    log_lines = [line for line in captured.err.splitlines() if line.strip()]
    events = [json.loads(line)["event"] for line in log_lines]
    assert "webhook_rejected" in events  # the logs were captured, so the check means something
    assert "webhook" in events
    everything = "\n".join([captured.out, captured.err, *seen])
    for canary in (CANARY_SECRET, CANARY_KEY, CANARY_DB_PASSWORD, "CANARY"):
        assert canary not in everything
