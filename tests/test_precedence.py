"""storage.records.decide, and the stored row being independent of arrival order."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from storage.db import transaction
from storage.records import (
    DATA_COLUMNS,
    ENRICHMENT_COLUMNS,
    Outcome,
    ScoringResult,
    StoredState,
    decide,
)
from tests.factories import NOW, at, completed, failed, pending

COMPARED = (*DATA_COLUMNS, *ENRICHMENT_COLUMNS)


def stored(result: ScoringResult) -> StoredState:
    return StoredState(result.status, result.completed_at, result.failed_at)


# ---- decide --------------------------------------------------------------------------------------


def test_first_state_is_applied() -> None:
    """Nothing stored yet: any state applies."""
    assert decide(None, pending()) is Outcome.APPLIED
    assert decide(None, failed()) is Outcome.APPLIED


def test_completed_outranks_failed() -> None:
    """A completion applies over a failure, even one with a later timestamp."""
    assert decide(stored(failed(when=at(10))), completed(when=at(0))) is Outcome.APPLIED


def test_failed_after_completed_is_stale() -> None:
    """A failure never replaces a completion, whatever its timestamp."""
    assert decide(stored(completed(when=at(0))), failed(when=at(10))) is Outcome.STALE


def test_same_terminal_event_again_is_duplicate() -> None:
    """The same status with the same timestamp is a duplicate."""
    assert decide(stored(completed(when=at(0))), completed(when=at(0))) is Outcome.DUPLICATE
    assert decide(stored(failed(when=at(0))), failed(when=at(0))) is Outcome.DUPLICATE


def test_same_status_without_timestamp_is_duplicate() -> None:
    """An incoming terminal state without its timestamp cannot prove it is newer."""
    incoming = replace(completed(), completed_at=None)
    assert decide(stored(completed(when=at(0))), incoming) is Outcome.DUPLICATE


def test_newer_terminal_timestamp_applies() -> None:
    """A later event of the same status may update the fields."""
    assert decide(stored(completed(when=at(0))), completed(when=at(1))) is Outcome.APPLIED
    assert decide(stored(failed(when=at(0))), failed(when=at(1))) is Outcome.APPLIED


def test_older_terminal_timestamp_is_stale() -> None:
    """An earlier event of the same status loses."""
    assert decide(stored(completed(when=at(1))), completed(when=at(0))) is Outcome.STALE
    assert decide(stored(failed(when=at(1))), failed(when=at(0))) is Outcome.STALE


def test_timestamp_fills_a_stored_terminal_state_without_one() -> None:
    """A stored terminal state without a timestamp yields to one that has it."""
    existing = StoredState("completed", None, None)
    assert decide(existing, completed(when=at(0))) is Outcome.APPLIED


@pytest.mark.parametrize("existing", [completed(), failed()], ids=["completed", "failed"])
def test_nothing_returns_to_pending(existing: ScoringResult) -> None:
    """A non-terminal state never replaces a terminal one."""
    assert decide(stored(existing), pending()) is Outcome.STALE


def test_pending_again_is_duplicate_and_terminal_applies_over_pending() -> None:
    """Pending over pending is a duplicate; any terminal state applies over pending."""
    assert decide(stored(pending()), pending()) is Outcome.DUPLICATE
    assert decide(stored(pending()), failed()) is Outcome.APPLIED
    assert decide(stored(pending()), completed()) is Outcome.APPLIED


# ---- order independence through a real Store ---------------------------------------------------


def apply_all(engine: Engine, results: Sequence[ScoringResult], job_id: str) -> dict[str, Any]:
    """Apply ``results`` (renamed to ``job_id``) in order, one transaction each; the row."""
    for result in results:
        with transaction(engine) as store:
            store.apply_result(replace(result, scoring_job_id=job_id), source="webhook", now=NOW)
    with transaction(engine, write=False) as store:
        row = store.get_result(job_id)
    assert row is not None
    return {column: row[column] for column in COMPARED}


C = completed(when=at(-2), score=8, verdict="Hire")
F = failed(when=at(-5), code="TIMEOUT")
ORDERS = list(itertools.permutations([("completed", C), ("failed", F), ("duplicate", C)]))


@pytest.mark.parametrize(
    "order", ORDERS, ids=["-".join(name for name, _ in order) for order in ORDERS]
)
def test_every_arrival_order_leaves_the_same_row(sqlite_engine: Engine, order: Any) -> None:
    """completed, failed and a duplicate completed, in any order, leave one and the same row."""
    reference = apply_all(sqlite_engine, [C], "reference")
    assert reference["status"] == "completed"
    got = apply_all(sqlite_engine, [result for _, result in order], "sj_perm")
    assert got == reference


PARTIAL_NEWEST = [
    completed(when=at(0), score=1, verdict=None),
    completed(when=at(-1), score=2, verdict="verdict at -1"),
    completed(when=at(-2), score=3, verdict="verdict at -2"),
]


def test_completions_with_different_content_end_as_the_newest_in_any_order(
    sqlite_engine: Engine,
) -> None:
    """Found by hypothesis: the newest completion wins whole, even where it lacks a verdict."""
    rows = [
        apply_all(sqlite_engine, list(order), f"sj_{n}")
        for n, order in enumerate(itertools.permutations(PARTIAL_NEWEST))
    ]
    assert all(row == rows[0] for row in rows)
    assert (rows[0]["score"], rows[0]["verdict"]) == (1, None)


def _event(kind: str, minute: int) -> ScoringResult:
    """The single event Nova would send for ``kind`` at ``minute``: same input, same content."""
    when = at(minute)
    common: dict[str, Any] = {"batch_id": "batch_1", "criteria_version_id": "cv_1"}
    if kind == "pending":
        return pending(queued_at=at(-60), **common)
    if kind == "completed":
        partial = minute % 3 == 0  # some generations or retries omit parts of the assessment
        return completed(
            when=when,
            score=minute % 11,
            verdict=None if partial else f"verdict at {minute}",
            strengths=(f"s{minute}",),
            **common,
        )
    return failed(when=when, code=f"CODE_{minute}", error_message=f"failed at {minute}", **common)


events = st.lists(
    st.builds(_event, st.sampled_from(["pending", "completed", "failed"]), st.integers(-30, 0)),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=events, data=st.data())
def test_property_final_row_is_order_independent(
    engine: Engine, sequence: list[ScoringResult], data: st.DataObject
) -> None:
    """Any sequence of states for one scoring job, reordered, ends in the same stored row
    (on SQLite and PostgreSQL; each example uses scoring job ids of its own)."""
    shuffled = data.draw(st.permutations(sequence), label="order")
    run = uuid.uuid4().hex
    first = _apply_in_one_transaction(engine, sequence, f"{run}-a")
    second = _apply_in_one_transaction(engine, shuffled, f"{run}-b")
    assert second == first


def _apply_in_one_transaction(
    engine: Engine, results: Sequence[ScoringResult], job_id: str
) -> dict[str, Any]:
    with transaction(engine) as store:
        for result in results:
            store.apply_result(replace(result, scoring_job_id=job_id), source="webhook", now=NOW)
        row = store.get_result(job_id)
    assert row is not None
    return {column: row[column] for column in COMPARED}


_RANK = {"pending": 0, "failed": 1, "completed": 2}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=events)
def test_property_winner_is_highest_rank_then_latest(
    engine: Engine, sequence: list[ScoringResult]
) -> None:
    """The stored row is the highest-ranked state, the latest of those (an oracle, not decide)."""
    best = max(_RANK[result.status] for result in sequence)
    winner = max(
        (result for result in sequence if _RANK[result.status] == best),
        key=lambda result: result.event_at or NOW - timedelta(days=1),
    )
    row = _apply_in_one_transaction(engine, sequence, uuid.uuid4().hex)
    assert row["status"] == winner.status
    assert (row["completed_at"], row["failed_at"]) == (winner.completed_at, winner.failed_at)
    assert row["score"] == winner.score
