"""The group-commit ingest path: same results as one delivery at a time, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from receiver.events import ScoreEvent, TestEvent
from receiver.ingest import Accepted, ingest, ingest_group
from storage.db import transaction
from tests.factories import NOW, at, completed, failed, inbound

JOBS = sa.text(
    "SELECT scoring_job_id, status, score, verdict, error_code, completed_at, delivery_count"
    " FROM scoring_job ORDER BY 1"
)
DELIVERIES = sa.text(
    "SELECT delivery_key, outcome, attempts, scoring_job_id FROM delivery ORDER BY 1"
)


def score(key: str, result: Any) -> Accepted:
    return Accepted(inbound(key, scoring_job_id=result.scoring_job_id), ScoreEvent("e", result))


def dump(engine: Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        jobs = conn.execute(JOBS).all()
        inbox = conn.execute(DELIVERIES).all()
    return [tuple(r) for r in jobs], [tuple(r) for r in inbox]


def wipe(engine: Engine) -> None:
    with transaction(engine) as store:
        store.conn.execute(sa.text("DELETE FROM delivery"))
        store.conn.execute(sa.text("DELETE FROM scoring_job"))


def one_at_a_time(engine: Engine, items: Sequence[Accepted]) -> list[str]:
    with transaction(engine) as store:
        return [ingest(store, item, now=NOW) for item in items]


def as_group(engine: Engine, items: Sequence[Accepted]) -> list[str]:
    with transaction(engine) as store:
        return ingest_group(store, items, now=NOW)


def test_group_applies_the_first_of_repeated_results_and_counts_every_attempt(
    engine: Engine,
) -> None:
    """Within one group: first copy applied, the rest duplicate; one inbox row, 3 attempts."""
    item = score("msg_1", completed("sj_1"))
    other = score("msg_2", completed("sj_2"))
    assert as_group(engine, [item, item, other, item]) == [
        "applied",
        "duplicate",
        "applied",
        "duplicate",
    ]
    jobs, inbox = dump(engine)
    assert [(j[0], j[-1]) for j in jobs] == [("sj_1", 3), ("sj_2", 1)]
    assert [(d[0], d[1], d[2]) for d in inbox] == [("msg_1", "applied", 3), ("msg_2", "applied", 1)]


def test_group_merges_a_result_already_stored_by_precedence(engine: Engine) -> None:
    """A stored completion is not replaced by a failure arriving in a later group."""
    as_group(engine, [score("msg_1", completed("sj_1"))])
    assert as_group(
        engine,
        [
            score("msg_2", failed("sj_1")),
            Accepted(inbound("t", event="test", scoring_job_id=None), TestEvent("test", None)),
        ],
    ) == [
        "stale",
        "recorded",
    ]
    jobs, _ = dump(engine)
    assert [(j[1], j[2]) for j in jobs] == [("completed", 7)]


_results = st.sampled_from(
    [
        completed("sj_a", when=at(-5)),
        completed("sj_a", when=at(-1), verdict=None),
        failed("sj_a", when=at(-3)),
        completed("sj_b"),
        failed("sj_b"),
        completed("sj_c", score=3),
    ]
)
_items = st.lists(
    st.tuples(st.sampled_from(["m1", "m2", "m3", "m4"]), _results).map(lambda p: score(*p)),
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=_items, second=_items)
def test_groups_store_exactly_what_one_at_a_time_stores(
    sqlite_engine: Engine, first: list[Accepted], second: list[Accepted]
) -> None:
    """Any two groups of deliveries: same outcomes and same rows as ingesting them singly."""
    wipe(sqlite_engine)
    expected_statuses = one_at_a_time(sqlite_engine, first) + one_at_a_time(sqlite_engine, second)
    expected = dump(sqlite_engine)
    wipe(sqlite_engine)
    statuses = as_group(sqlite_engine, first) + as_group(sqlite_engine, second)
    assert statuses == expected_statuses
    assert dump(sqlite_engine) == expected


@pytest.mark.parametrize("size", [1, 300])
def test_group_of_any_size_is_stored(engine: Engine, size: int) -> None:
    """A single delivery and a group larger than one multi-row statement both land."""
    items = [score(f"msg_{n}", completed(f"sj_{n:04d}")) for n in range(size)]
    assert as_group(engine, items) == ["applied"] * size
    jobs, inbox = dump(engine)
    assert len(jobs) == len(inbox) == size
