"""Migrations 0006 (the inbox's identity through ordered indexes) and 0007 (the change feed
without its index by scoring job) keep every row, on both databases, and can be undone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from storage import schema
from storage.db import transaction
from tests.factories import NOW, at, inbound
from tests.old_schemas import BACKENDS, database_at


@pytest.fixture(name="old_engine", params=BACKENDS)
def fixture_old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database at 0005 holding two deliveries: one of a scoring job, one without."""
    with database_at("0005", request.param, request, tmp_path) as engine:
        delivery = sa.table("delivery", *map(sa.column, ROW))
        with engine.begin() as conn:
            for key, job in (("sha256:a/id:msg_1", "sj_1"), ("sha256:t", None)):
                conn.execute(
                    delivery.insert().values({**ROW, "delivery_key": key, "scoring_job_id": job})
                )
        yield engine


ROW = {
    "delivery_key": None,
    "scoring_job_id": None,
    "webhook_id": "msg_1",
    "outcome": "applied",
    "signature_scheme": "x-webhook-signature/id.timestamp.body",
    "secret_fingerprint": "fp_0123456789",
    "received_at": NOW,
    "last_received_at": NOW,
    "attempts": 1,
    "raw_body": b"{}",
}


def attempts(engine: Engine) -> dict[tuple[str, str | None], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT delivery_key, scoring_job_id, attempts FROM delivery"))
        return {(key, job): n for key, job, n in rows}


def indexes(engine: Engine) -> dict[str | None, tuple[list[str | None], bool]]:
    found = sa.inspect(engine).get_indexes("delivery")
    return {ix["name"]: (ix["column_names"], ix["unique"]) for ix in found}


def test_upgrade_keeps_every_delivery_and_a_retry_still_adds_an_attempt(
    old_engine: Engine,
) -> None:
    assert schema.upgrade(old_engine) == schema.HEAD
    with transaction(old_engine) as store:
        store.record_delivery(inbound("sha256:a/id:msg_1"), outcome="duplicate", now=at(1))
        store.record_delivery(inbound("sha256:t", scoring_job_id=None, event="test"),
                              outcome="recorded", now=at(1))  # fmt: skip
    assert attempts(old_engine) == {("sha256:a/id:msg_1", "sj_1"): 2, ("sha256:t", None): 2}


def test_upgrade_replaces_the_key_constraint_and_job_index_with_two_ordered_ones(
    old_engine: Engine,
) -> None:
    schema.upgrade(old_engine)
    found = indexes(old_engine)
    assert found["ux_delivery_job_key"] == (["scoring_job_id", "delivery_key"], True)
    assert found["ux_delivery_key_without_job"] == (["delivery_key"], True)
    assert "ix_delivery_scoring_job_id" not in found
    keyed = [c for c in sa.inspect(old_engine).get_unique_constraints("delivery")
             if c["column_names"] == ["delivery_key"]]  # fmt: skip
    assert keyed == []


def test_downgrade_restores_the_unique_key(old_engine: Engine) -> None:
    schema.upgrade(old_engine)
    with old_engine.begin() as conn:
        config = cast(Config, schema._config(conn))  # alembic's, holding our connection
        command.downgrade(config, "0005")
    assert "ix_delivery_scoring_job_id" in indexes(old_engine)
    delivery = sa.table("delivery", *map(sa.column, ROW))
    with pytest.raises(sa.exc.IntegrityError), old_engine.begin() as conn:
        conn.execute(
            delivery.insert().values({**ROW, "delivery_key": "sha256:t", "scoring_job_id": "x"})
        )
    assert attempts(old_engine) == {("sha256:a/id:msg_1", "sj_1"): 1, ("sha256:t", None): 1}


def test_0007_drops_the_feeds_job_index_and_its_downgrade_restores_it(
    old_engine: Engine,
) -> None:
    def feed_indexes() -> set[str | None]:
        return {ix["name"] for ix in sa.inspect(old_engine).get_indexes("result_change")}

    schema.upgrade(old_engine)
    assert "ix_result_change_scoring_job_id" not in feed_indexes()
    with old_engine.begin() as conn:
        config = cast(Config, schema._config(conn))  # alembic's, holding our connection
        command.downgrade(config, "0006")
    assert "ix_result_change_scoring_job_id" in feed_indexes()
