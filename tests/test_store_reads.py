"""storage.store.reads: the result reads without the table models read what ``Store`` reads
(the ``engine`` fixture runs each test on SQLite and on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.db import connection, transaction
from storage.models import ScoringJob
from storage.store import ResultFilter, ResultReader, Store
from storage.store.reads import RESULTS
from storage.types import UTCDateTime
from tests.factories import NOW, at, completed, failed, pending


def column_kind(column: Any) -> tuple[str, type, type, bool | None]:
    """What a read through ``column`` does with a value: its name, the type that converts
    it (SQLModel's ``AutoString`` is a plain string), the Python type, JSON's null rule."""
    kind = column.type
    if isinstance(kind, sa.types.TypeDecorator) and not isinstance(kind, UTCDateTime):
        kind = kind.impl
    return column.name, type(kind), kind.python_type, getattr(kind, "none_as_null", None)


def test_results_mirror_has_the_models_columns_in_order_with_their_types() -> None:
    """``RESULTS`` lists ``scoring_job`` as the table model does: same columns, order, types."""
    model = ScoringJob.__table__.columns  # type: ignore[attr-defined]
    assert [column_kind(c) for c in RESULTS.columns] == [column_kind(c) for c in model]


@pytest.fixture(name="stored")
def fixture_stored(engine: Engine) -> Engine:
    """Results of every status, in two batches and two jobs, updated at different times."""
    results = [
        (completed("sj_a", batch_id="b1", is_rescore=True, started_at=at(-9)), at(-30)),
        (failed("sj_b", batch_id="b1", job_id="job-9"), at(-20)),
        (pending("sj_c", batch_id="b2"), at(-10)),
        (completed("sj_d", strengths=None, concerns=(), application_id="app-x"), at(-10)),
    ]
    with transaction(engine) as store:
        for result, now in results:
            store.apply_result(result, source="webhook", now=now, delivered=True)
    return engine


@pytest.fixture(name="both")
def fixture_both(stored: Engine) -> Iterator[tuple[Store, ResultReader]]:
    """The store and the model-free reader, on one read transaction each."""
    with transaction(stored, write=False) as store, connection(stored, write=False) as conn:
        yield store, ResultReader(conn)


FILTERS = [
    ResultFilter(),
    ResultFilter(job_id="job-9"),
    ResultFilter(batch_id="b1"),
    ResultFilter(application_id="app-x"),
    ResultFilter(status="completed"),
    ResultFilter(since=at(-10)),
    ResultFilter(until=at(-10)),
    ResultFilter(since=NOW - timedelta(hours=1), until=at(-15), batch_id="b1"),
]


@pytest.mark.parametrize("flt", FILTERS)
def test_reader_lists_and_exports_what_the_store_does(
    both: tuple[Store, ResultReader], flt: ResultFilter
) -> None:
    """Same rows, same order, same values (aware UTC times, JSON lists, booleans) per filter."""
    store, reader = both
    listed = [dict(row) for row in reader.list_results(flt, limit=None)]
    assert listed == [dict(row) for row in store.list_results(flt, limit=None)]
    exported = [dict(row) for row in reader.iter_results(flt)]
    assert exported == [dict(row) for row in store.iter_results(flt)]
    assert [dict(row) for row in reader.list_results(flt, limit=2)] == listed[:2]


def test_reader_shows_one_result_and_a_batch_like_the_store(
    both: tuple[Store, ResultReader],
) -> None:
    """``get_result`` and ``results_for_batch`` agree, values typed the same way."""
    store, reader = both
    found = reader.get_result("sj_a")
    assert found is not None
    assert dict(found) == dict(store.get_result("sj_a") or {})
    assert found["first_seen_at"] == at(-30)
    assert found["is_rescore"] is True
    assert found["strengths"] == ["Python"]
    assert reader.get_result("sj_nope") is None
    assert [dict(r) for r in reader.results_for_batch("b1")] == [
        dict(r) for r in store.results_for_batch("b1")
    ]
