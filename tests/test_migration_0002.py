"""Migration 0002 (inbox identity) keeps every existing delivery row, on both databases."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import schema
from storage.records import inbox_key, storable_webhook_id
from tests.factories import NOW
from tests.old_schemas import BACKENDS, database_at


@pytest.fixture(name="old_engine", params=BACKENDS)
def fixture_old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to 0001 only (SQLite file or a fresh PostgreSQL schema)."""
    with database_at("0001", request.param, request, tmp_path) as engine:
        yield engine


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


OLD_ROWS: list[dict[str, Any]] = [
    # An id-keyed body-only delivery; a second id with the same body (a Portal re-send).
    {"delivery_key": "msg_1", "webhook_id": "msg_1", "raw_body": b"A", "scheme": "body"},
    {"delivery_key": "msg_2", "webhook_id": "msg_2", "raw_body": b"A", "scheme": "body"},
    # A delivery without an id (old hash key) whose body was purged since.
    {"delivery_key": "sha256:" + sha(b"B"), "webhook_id": None, "raw_body": None, "scheme": "body"},
    # An id-keyed delivery whose signature covered the id.
    {
        "delivery_key": "msg_3",
        "webhook_id": "msg_3",
        "raw_body": b"C",
        "scheme": "id.timestamp.body",
    },
    # An id-keyed delivery whose body is gone: nothing to hash, the old key stays.
    {"delivery_key": "msg_4", "webhook_id": "msg_4", "raw_body": None, "scheme": "body"},
]


def insert_old_rows(engine: Engine) -> None:
    table = sa.table(
        "delivery",
        *(
            sa.column(name)
            for name in (
                "delivery_key", "webhook_id", "outcome", "signature_scheme",
                "secret_fingerprint", "received_at", "last_received_at", "attempts", "raw_body",
            )
        ),
    )  # fmt: skip
    with engine.begin() as conn:
        for n, row in enumerate(OLD_ROWS):
            conn.execute(
                table.insert().values(
                    delivery_key=row["delivery_key"],
                    webhook_id=row["webhook_id"],
                    outcome="applied",
                    signature_scheme=f"x-webhook-signature/{row['scheme']}",
                    secret_fingerprint="fp_0123456789",
                    received_at=NOW,
                    last_received_at=NOW,
                    attempts=n + 1,
                    raw_body=row["raw_body"],
                )
            )


def test_upgrade_keeps_every_row_and_rekeys_where_it_can(old_engine: Engine) -> None:
    """Rows kept with attempts and bodies; hashes filled; keys follow the new rule unless taken."""
    insert_old_rows(old_engine)
    assert schema.upgrade(old_engine) == schema.HEAD
    with old_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT delivery_key, webhook_id, body_sha256, attempts, raw_body,"
                " webhook_id_reused FROM delivery ORDER BY id"
            )
        ).all()
    got = [
        (r.delivery_key, r.webhook_id, r.body_sha256, r.attempts, r.raw_body and bytes(r.raw_body))
        for r in rows
    ]
    assert got == [
        (inbox_key(sha(b"A"), None), "msg_1", sha(b"A"), 1, b"A"),
        ("msg_2", "msg_2", sha(b"A"), 2, b"A"),  # the new key was taken by msg_1's row
        ("sha256:" + sha(b"B"), None, sha(b"B"), 3, None),
        (inbox_key(sha(b"C"), "msg_3"), "msg_3", sha(b"C"), 4, b"C"),
        ("msg_4", "msg_4", None, 5, None),
    ]
    assert not any(r.webhook_id_reused for r in rows)


def test_upgrade_flags_an_id_that_came_with_two_bodies(old_engine: Engine) -> None:
    """Two old rows with one webhook id and different bodies: the later one is flagged."""
    table = sa.table("delivery", *(sa.column(c) for c in ("delivery_key", "webhook_id")))
    insert_old_rows(old_engine)
    with old_engine.begin() as conn:  # make msg_3's row carry msg_1's id
        conn.execute(
            table.update().where(table.c.delivery_key == "msg_3").values(webhook_id="msg_1")
        )
    schema.upgrade(old_engine)
    with old_engine.connect() as conn:
        flagged = (
            conn.execute(
                sa.text("SELECT body_sha256 FROM delivery WHERE webhook_id_reused ORDER BY id")
            )
            .scalars()
            .all()
        )
    assert flagged == [sha(b"C")]


def test_inbox_key_keeps_ids_and_hashes_apart() -> None:
    """Hash keys, signed-id keys and digests of ids no column could hold never coincide."""
    digest = sha(b"body")
    hostile = "msg\x1b[31m"
    assert inbox_key(digest, None) == f"sha256:{digest}"
    assert inbox_key(digest, "msg_1") == f"sha256:{digest}/id:msg_1"
    assert inbox_key(digest, hostile) == f"sha256:{digest}/id-sha256:{sha(hostile.encode())}"
    assert storable_webhook_id(hostile) is None
    assert storable_webhook_id("x" * 201) is None
    assert storable_webhook_id("msg_1") == "msg_1"
