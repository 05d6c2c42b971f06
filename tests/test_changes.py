"""The change feed: numbering, what counts as a change, filters, migration, concurrency.

Every test runs on SQLite and PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.events import parse_event
from receiver.ingest import Accepted, ingest, ingest_group, replay
from receiver.submit import submit_batches
from storage import schema
from storage.db import make_engine, transaction
from storage.records import ScoringResult
from storage.store import ChangeFilter, ResultChange, feed_change
from storage.store.changes import fold
from tests.factories import NOW, at, completed, failed, inbound, score_completed, score_failed
from tests.fake_nova_helpers import TENANT, ManualClock, asgi_client, make_client, make_fake
from tests.test_reconcile import reconcile, track


def feed(engine: Engine, *, after: int = 0, limit: int = 1000, **flt: Any) -> list[dict[str, Any]]:
    with transaction(engine, write=False) as store:
        page = store.list_changes(after=after, flt=ChangeFilter(**flt), limit=limit)
    return [dict(row) for row in page.rows]


def apply_and_log(engine: Engine, *results: ScoringResult) -> None:
    """Apply results in one transaction and log what the feed records of them."""
    with transaction(engine) as store:
        changes = []
        for result in results:
            fed = feed_change(
                result.scoring_job_id, store.apply_result(result, source="webhook", now=NOW)
            )
            if fed is not None:
                changes.append(fed)
        store.log_changes(changes, now=NOW)


def delivery(body: bytes, key: str) -> Accepted:
    event = parse_event(body)
    return Accepted(inbound(key, body=body), event)


def test_a_created_result_gets_number_one_with_its_state(engine: Engine) -> None:
    """The first change of an empty store is number 1, a creation, with status, job, batch."""
    apply_and_log(engine, completed("sj_1", batch_id="b1"))

    [change] = feed(engine)

    assert (change["seq"], change["kind"], change["scoring_job_id"]) == (1, "created", "sj_1")
    assert (change["status"], change["job_id"], change["batch_id"]) == (
        "completed",
        "job-123",
        "b1",
    )
    assert change["changed_at"] == NOW


def test_a_new_status_is_an_update_and_numbers_keep_increasing(engine: Engine) -> None:
    """failed, then completed: two changes, 1 then 2, the second an update to completed."""
    apply_and_log(engine, failed("sj_1"))
    apply_and_log(engine, completed("sj_1"))

    changes = feed(engine)

    assert [(c["seq"], c["kind"], c["status"]) for c in changes] == [
        (1, "created", "failed"),
        (2, "updated", "completed"),
    ]


def test_duplicates_stale_events_and_gap_fills_are_not_changes(engine: Engine) -> None:
    """A repeat, a failure after completion and a batch id filled in leave the feed alone."""
    apply_and_log(engine, completed("sj_1"))
    apply_and_log(engine, completed("sj_1"))  # duplicate
    apply_and_log(engine, failed("sj_1", when=at(-1)))  # stale: completed outranks failed
    apply_and_log(engine, completed("sj_1", batch_id="b1"))  # gap fill only

    assert [c["seq"] for c in feed(engine)] == [1]
    with transaction(engine, write=False) as store:
        assert store.get_result("sj_1")["batch_id"] == "b1"  # type: ignore[index]


def test_changes_of_one_result_in_one_transaction_fold_into_one(engine: Engine) -> None:
    """Created and updated in one commit: readers only ever saw the end, one creation."""
    apply_and_log(engine, failed("sj_1"), completed("sj_1"), completed("sj_2"))

    changes = feed(engine)

    assert [(c["seq"], c["scoring_job_id"], c["kind"], c["status"]) for c in changes] == [
        (1, "sj_1", "created", "completed"),
        (2, "sj_2", "created", "completed"),
    ]


def test_erasing_a_candidate_leaves_one_erased_change_per_result_in_the_feed(
    engine: Engine,
) -> None:
    """``erase`` deletes the results; the feed keeps one ``erased`` change each (the id,
    status, job and batch they had), numbered after everything before, so that a consumer
    deletes its copy too, and their earlier changes go. Another candidate's stay."""
    apply_and_log(
        engine,
        completed("sj_a1", application_id="app-a", batch_id="b1"),
        failed("sj_a2", application_id="app-a", batch_id="b2"),
        completed("sj_b", application_id="app-b", batch_id="b1"),
    )

    with transaction(engine) as store:
        store.erase_application("app-a", now=NOW)

    changes = [(c["seq"], c["scoring_job_id"], c["kind"], c["status"]) for c in feed(engine)]
    assert changes == [
        (3, "sj_b", "created", "completed"),
        (4, "sj_a1", "erased", "completed"),
        (5, "sj_a2", "erased", "failed"),
    ]
    assert [c["kind"] for c in feed(engine, batch_id="b2")] == ["erased"]


def test_erasing_a_candidate_with_no_results_takes_no_number(engine: Engine) -> None:
    """Nothing erased, nothing logged: the feed's head stays where it was."""
    apply_and_log(engine, completed("sj_1"))

    with transaction(engine) as store:
        store.erase_application("app-nobody", now=NOW)
        assert store.change_head() == 1


def test_an_erasure_outranks_a_creation_folded_into_the_same_commit() -> None:
    """Folding keeps one change per result: an erasure wins over anything before or after."""
    changes = [
        ResultChange("sj_1", "created"),
        ResultChange("sj_1", "erased"),
        ResultChange("sj_1", "updated"),
        ResultChange("sj_2", "updated"),
        ResultChange("sj_2", "created"),
    ]
    assert fold(changes) == [ResultChange("sj_1", "erased"), ResultChange("sj_2", "created")]


def test_logging_nothing_takes_no_number(engine: Engine) -> None:
    """An empty log call leaves the head where it was."""
    apply_and_log(engine, completed("sj_1"))
    with transaction(engine) as store:
        store.log_changes([], now=NOW)
    with transaction(engine, write=False) as store:
        assert store.change_head() == 1


def test_a_page_stops_at_the_limit_and_next_resumes_after_it(engine: Engine) -> None:
    """Limit 2 of 3 changes: next points at the 2nd; the page after it holds the 3rd."""
    apply_and_log(engine, completed("sj_1"), completed("sj_2"), completed("sj_3"))
    with transaction(engine, write=False) as store:
        first = store.list_changes(after=0, flt=ChangeFilter(), limit=2)
        second = store.list_changes(after=first.next_seq, flt=ChangeFilter(), limit=2)
        third = store.list_changes(after=second.next_seq, flt=ChangeFilter(), limit=2)

    assert ([r["seq"] for r in first.rows], first.next_seq) == ([1, 2], 2)
    assert ([r["seq"] for r in second.rows], second.next_seq) == ([3], 3)
    assert (third.rows, third.next_seq) == ([], 3)


def test_a_filtered_page_moves_next_past_changes_it_left_out(engine: Engine) -> None:
    """Filtering by batch: only b1's changes, and next ends at the head, not at b1's last."""
    apply_and_log(engine, completed("sj_1", batch_id="b1"))
    apply_and_log(engine, completed("sj_2", batch_id="b2"), completed("sj_3", batch_id="b2"))
    with transaction(engine, write=False) as store:
        page = store.list_changes(after=0, flt=ChangeFilter(batch_id="b1"), limit=10)
        by_status = store.list_changes(after=0, flt=ChangeFilter(status="failed"), limit=10)
        by_job = store.list_changes(after=1, flt=ChangeFilter(job_id="job-123"), limit=10)

    assert ([r["scoring_job_id"] for r in page.rows], page.next_seq) == (["sj_1"], 3)
    assert (by_status.rows, by_status.next_seq) == ([], 3)
    assert [r["seq"] for r in by_job.rows] == [2, 3]


def test_webhook_groups_log_creations_and_updates_once_per_commit(engine: Engine) -> None:
    """ingest_group: new results, a repeat and an upgrade; the feed gets the real changes."""
    with transaction(engine) as store:
        ingest_group(store, [delivery(score_failed("sj_1"), "m0")], now=NOW)
    items = [
        delivery(score_completed("sj_2"), "m1"),
        delivery(score_completed("sj_2"), "m2"),  # duplicate within the group
        delivery(score_completed("sj_1"), "m3"),  # failed -> completed
        delivery(score_failed("sj_1"), "m4"),  # stale
    ]
    with transaction(engine) as store:
        statuses = ingest_group(store, items, now=NOW)

    assert statuses == ["applied", "duplicate", "applied", "stale"]
    assert [(c["seq"], c["scoring_job_id"], c["kind"]) for c in feed(engine)] == [
        (1, "sj_1", "created"),
        (2, "sj_2", "created"),
        (3, "sj_1", "updated"),
    ]


def test_a_single_delivery_logs_its_change(engine: Engine) -> None:
    """ingest (the one-at-a-time path of the writer) logs a creation; a repeat logs nothing."""
    with transaction(engine) as store:
        ingest(store, delivery(score_completed("sj_9"), "m1"), now=NOW)
        ingest(store, delivery(score_completed("sj_9"), "m2"), now=NOW)

    assert [(c["scoring_job_id"], c["kind"]) for c in feed(engine)] == [("sj_9", "created")]


def test_a_replayed_delivery_logs_its_change(engine: Engine) -> None:
    """deliveries replay applies a stored body: the result it creates is in the feed."""
    body = score_completed("sj_replayed")
    with transaction(engine) as store:
        store.record_delivery(inbound("m1", body=body), outcome="stored-unparsed", now=NOW)
        stored = store.get_delivery("m1")
        assert stored is not None
        assert replay(store, int(stored["id"]), body, now=NOW) == "applied"

    assert [(c["scoring_job_id"], c["kind"]) for c in feed(engine)] == [("sj_replayed", "created")]


@pytest.mark.anyio
async def test_reconcile_logs_what_it_adds_and_a_second_run_logs_nothing(engine: Engine) -> None:
    """Results found by reconcile are creations in the feed; a no-op run adds none."""
    clock = ManualClock()
    fake = make_fake(clock, failure_rate=0.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a", "b", "c"])
    track(engine, [batch], clock.now())

    await reconcile(engine, fake, clock)
    first = feed(engine)
    clock.advance(60)
    await reconcile(engine, fake, clock)

    assert [c["kind"] for c in first] == ["created"] * 3
    assert {c["scoring_job_id"] for c in first} == {job.id for job in batch.jobs}
    assert feed(engine) == first


@pytest.mark.anyio
async def test_submitted_scoring_jobs_are_creations_in_the_feed(engine: Engine) -> None:
    """submit records pending results: each is a creation; its score later an update."""
    clock = ManualClock()
    fake = make_fake(clock, score_delay=3600)
    applications = [
        {"applicationId": f"app-{n}", "resume": {"type": "text", "content": "x"}} for n in range(3)
    ]
    async with asgi_client(fake.app) as http:
        [created] = await submit_batches(
            make_client(http, clock),
            engine,
            job_id="job-1",
            tenant_id=TENANT,
            fields={"jobDescription": "Backend engineer"},
            applications=applications,
            now=clock.now,
        )

    changes = feed(engine)
    assert [(c["scoring_job_id"], c["kind"], c["status"]) for c in changes] == [
        (i, "created", "pending") for i in created.scoring_job_ids
    ]


def test_upgrade_numbers_results_stored_before_the_feed(tmp_path: Path) -> None:
    """Results stored under the previous schema become creations 1..n, oldest first."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        schema.upgrade(engine, "0001")
        with transaction(engine) as store:
            store.insert_new_results(
                [completed("sj_b")], source="webhook", now=at(1), delivered=True
            )
            store.insert_new_results(
                [completed("sj_a")], source="webhook", now=at(2), delivered=True
            )
        schema.upgrade(engine)
        apply_and_log(engine, completed("sj_c"))

        changes = feed(engine)
    finally:
        engine.dispose()

    assert [(c["seq"], c["scoring_job_id"]) for c in changes] == [
        (1, "sj_b"),
        (2, "sj_a"),
        (3, "sj_c"),
    ]


# ---- concurrency ----------------------------------------------------------------------------


def _writer(engine: Engine, name: str, commits: int, errors: list[BaseException]) -> None:
    """Commit ``commits`` transactions of 1-3 new results each, dawdling before each commit
    (a slow fsync): the window in which a sequence-numbered design shows a later number first."""
    rng = random.Random(name)
    try:
        for n in range(commits):
            with transaction(engine) as store:
                ids = [f"{name}-{n}-{k}" for k in range(rng.randint(1, 3))]
                store.insert_new_results(
                    [completed(i) for i in ids], source="webhook", now=NOW, delivered=True
                )
                store.log_changes([ResultChange(i, "created") for i in ids], now=NOW)
                time.sleep(rng.random() * 0.01)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread, re-raised there
        errors.append(exc)


def _read_until(engine: Engine, done: threading.Event) -> list[int]:
    """Page through the feed like a consumer until the writers are done and it is drained."""
    seen: list[int] = []
    cursor = 0
    while True:
        finished = done.is_set()  # read before polling, so the last poll sees every commit
        with transaction(engine, write=False) as store:
            page = store.list_changes(after=cursor, flt=ChangeFilter(), limit=7)
        seen.extend(int(row["seq"]) for row in page.rows)
        cursor = page.next_seq
        if finished and not page.rows:
            return seen


@pytest.mark.postgres
def test_concurrent_writers_never_let_a_reader_skip_a_number(postgres_engine: Engine) -> None:
    """Four PostgreSQL writers commit while a reader pages: it sees 1..n, once each, in order."""
    errors: list[BaseException] = []
    writers = [
        threading.Thread(target=_writer, args=(postgres_engine, f"w{i}", 40, errors))
        for i in range(4)
    ]
    done = threading.Event()

    def wait_for_writers() -> None:
        for thread in writers:
            thread.join()
        done.set()

    for thread in writers:
        thread.start()
    closer = threading.Thread(target=wait_for_writers)
    closer.start()
    seen = _read_until(postgres_engine, done)
    closer.join()

    assert not errors, errors
    with transaction(postgres_engine, write=False) as store:
        total = store.conn.execute(sa.text("SELECT count(*) FROM result_change")).scalar_one()
    assert total >= 160
    assert seen == list(range(1, total + 1))


def test_the_models_match_the_migrated_schema(engine: Engine) -> None:
    """alembic finds nothing to autogenerate: models and migrations describe one schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import METADATA

    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), METADATA)

    assert differences == []


def test_logging_a_result_that_is_not_stored_fails_the_transaction(engine: Engine) -> None:
    """A number without its row would be a change nobody sees: refuse, keep nothing."""
    apply_and_log(engine, completed("sj_1"))

    refused = r"NOT NULL constraint failed: result_change\.status|column \"status\""
    with pytest.raises(sa.exc.IntegrityError, match=refused), transaction(engine) as store:
        store.log_changes([ResultChange("sj_ghost", "created")], now=NOW)

    with transaction(engine, write=False) as store:
        assert store.change_head() == 1
