"""One definition of "this batch still has a gap": the pure rule and the store's SQL agree."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from storage.db import transaction
from storage.records import batch_settled
from tests.factories import NOW, at, batch_state, completed, failed, pending

counts = st.one_of(st.none(), st.integers(0, 4))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.fixed_dictionaries(
        {
            "status": st.sampled_from(["pending", "completed", "failed"]),
            "completed_jobs": counts,
            "failed_jobs": counts,
            "held_completed": st.integers(0, 4),
            "held_failed": st.integers(0, 3),
            "held_pending": st.integers(0, 2),
        }
    )
)
def test_store_sql_and_pure_rule_agree_on_settled_batches(
    engine: Engine, case: dict[str, Any]
) -> None:
    """For any counts at Nova and results held here, SQL and ``batch_settled`` agree, and
    reconcile's batch list holds the batch exactly when it is not settled."""
    status, completed_jobs, failed_jobs = (
        case["status"],
        case["completed_jobs"],
        case["failed_jobs"],
    )
    held_completed, held_failed = case["held_completed"], case["held_failed"]
    held_pending = case["held_pending"]
    batch_id = f"b_{uuid.uuid4().hex[:12]}"
    state = batch_state(
        batch_id, status=status, completed_jobs=completed_jobs, failed_jobs=failed_jobs
    )
    results = [
        *(completed(f"{batch_id}_c{n}", batch_id=batch_id) for n in range(held_completed)),
        *(failed(f"{batch_id}_f{n}", batch_id=batch_id) for n in range(held_failed)),
        *(pending(f"{batch_id}_p{n}", batch_id=batch_id) for n in range(held_pending)),
    ]
    with transaction(engine) as store:
        store.update_batch(state, now=NOW, due=False)
        for result in results:
            store.apply_result(result, source="reconcile", now=NOW)
    expected = batch_settled(status, completed_jobs, failed_jobs, held_completed + held_failed)

    with transaction(engine, write=False) as store:
        settled = store.batch_is_settled(batch_id)
        # Pending jobs first seen at NOW are not old yet: only the settled rule decides.
        listed = store.batches_to_reconcile(older_than=at(-60))
    assert settled is expected
    assert (batch_id in {row["batch_id"] for row in listed}) is (not expected)
