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
from storage.db import WriteLane, transaction
from tests.factories import NOW, at, completed, failed, inbound

# Every column (the inbox's surrogate id aside): the group path writes its own SQL text,
# so a value converted differently from the one-at-a-time path would show here.
JOB_COLUMNS = (
    "scoring_job_id, status, score, verdict, error_code, completed_at, delivery_count, job_id,"
    " application_id, batch_id, tenant_id, nova_status, is_rescore, criteria_version_id,"
    " strengths, concerns, interview_focus, error_type, error_message, queued_at, started_at,"
    " failed_at, source, first_seen_at, updated_at"
)
JOBS = sa.text(f"SELECT {JOB_COLUMNS} FROM scoring_job ORDER BY 1")  # noqa: S608
DELIVERIES = sa.text(
    "SELECT delivery_key, outcome, attempts, scoring_job_id, webhook_id, body_sha256,"
    " webhook_id_reused, event, batch_id, signature_scheme, secret_fingerprint, received_at,"
    " last_received_at, raw_body, body_purged_at FROM delivery ORDER BY 1"
)


def score(key: str, result: Any, body: bytes = b"{}") -> Accepted:
    delivery = inbound(key, scoring_job_id=result.scoring_job_id, body=body)
    return Accepted(delivery, ScoreEvent("e", result))


def dump(engine: Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        jobs = conn.execute(JOBS).all()
        inbox = conn.execute(DELIVERIES).all()
    return [tuple(r) for r in jobs], [tuple(r) for r in inbox]


def wipe(engine: Engine) -> None:
    with transaction(engine) as store:
        store.conn.execute(sa.text("DELETE FROM delivery"))
        store.conn.execute(sa.text("DELETE FROM scoring_job"))


ERASED_APP = "app-erased"


def erase(engine: Engine, application_id: str) -> None:
    with transaction(engine) as store:
        store.erase_application(application_id, now=NOW)


def one_at_a_time(engine: Engine, items: Sequence[Accepted]) -> list[str]:
    with transaction(engine) as store:
        return [ingest(store, item, now=NOW) for item in items]


def as_group(engine: Engine, items: Sequence[Accepted]) -> list[str]:
    """As the writer commits a group: on its lane's connection (pipelined on PostgreSQL)."""
    lane = WriteLane(engine)
    try:
        with lane.transaction() as store:
            return ingest_group(store, items, now=NOW)
    finally:
        lane.release()


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
    assert [(j[0], j[6]) for j in jobs] == [("sj_1", 3), ("sj_2", 1)]
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


_RESULTS = [
    completed("sj_a", when=at(-5)),
    completed("sj_a", when=at(-1), verdict=None),
    failed("sj_a", when=at(-3)),
    completed("sj_b"),
    failed("sj_b"),
    completed("sj_c", score=3),
    completed("sj_e", application_id=ERASED_APP),  # a candidate erased before
    failed("sj_e", application_id=ERASED_APP),
]


def delivered(webhook_id: str, which: int, variant: bytes) -> Accepted:
    """A delivery as the endpoint hands it over: its result is what its body says, and its
    key is its body's plus its webhook id (``storage.records.inbox_key``, an id-signed
    delivery), never drawn apart from them.

    Not drawn: keys without the id (a body-only signature). A body replayed under a second
    unsigned id folds into the first id's row, and whether that second id comes with
    another body later is then known within a group but not to the rows one at a time.
    """
    body = b"%d:%s" % (which, variant)
    result = _RESULTS[which]
    delivery = inbound(
        f"body-{body.decode()}/id:{webhook_id}",
        body=body,
        scoring_job_id=result.scoring_job_id,
        webhook_id=webhook_id,
    )
    return Accepted(delivery, ScoreEvent("e", result))


# Webhook ids, results and bodies drawn apart: repeats, reused ids and replays all occur.
_items = st.lists(
    st.builds(
        delivered,
        st.sampled_from(["m1", "m2", "m3", "m4"]),
        st.integers(0, len(_RESULTS) - 1),
        st.sampled_from([b"a", b"b"]),
    ),
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=_items, second=_items)
def test_groups_store_exactly_what_one_at_a_time_stores(
    engine: Engine, first: list[Accepted], second: list[Accepted]
) -> None:
    """Any two groups of deliveries: same outcomes and same rows as ingesting them singly."""
    erase(engine, ERASED_APP)
    wipe(engine)
    expected_statuses = one_at_a_time(engine, first) + one_at_a_time(engine, second)
    expected = dump(engine)
    wipe(engine)
    statuses = as_group(engine, first) + as_group(engine, second)
    assert statuses == expected_statuses
    assert dump(engine) == expected


def test_a_webhook_for_an_erased_candidate_keeps_neither_result_nor_body(engine: Engine) -> None:
    """After ``erase``, a webhook Nova sends or retries for the candidate is answered
    ``erased``: no result comes back, the inbox row keeps no body; the others in the same
    commit group are applied as usual. One at a time gives the same."""
    erase(engine, ERASED_APP)
    items = [
        score("m1", completed("sj_gone", application_id=ERASED_APP), body=b"personal"),
        score("m2", completed("sj_kept")),
    ]

    for run in (as_group, one_at_a_time):
        wipe(engine)
        assert run(engine, items) == ["erased", "applied"]
        with engine.connect() as conn:
            jobs = conn.execute(sa.text("SELECT scoring_job_id FROM scoring_job")).scalars()
            assert list(jobs) == ["sj_kept"]
            inbox = conn.execute(
                sa.text("SELECT delivery_key, outcome, raw_body FROM delivery ORDER BY 1")
            ).all()
        assert [tuple(row) for row in inbox] == [
            ("m1", "erased", None),
            ("m2", "applied", b"{}"),
        ]


@pytest.mark.parametrize("size", [1, 300])
def test_group_of_any_size_is_stored(engine: Engine, size: int) -> None:
    """A single delivery and a group larger than one multi-row statement both land."""
    items = [score(f"msg_{n}", completed(f"sj_{n:04d}")) for n in range(size)]
    assert as_group(engine, items) == ["applied"] * size
    jobs, inbox = dump(engine)
    assert len(jobs) == len(inbox) == size
