"""storage.store on SQLite and PostgreSQL (the ``engine`` fixture runs each test on both)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from threading import Barrier

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import schema
from storage.db import make_engine, transaction
from storage.errors import SchemaOutOfDate
from storage.records import Outcome, RejectedApplication
from storage.store import Change, Store
from tests.conftest import migrated_sqlite_engine
from tests.factories import NOW, at, batch_state, completed, failed, inbound, pending

# ---- results -------------------------------------------------------------------------------------


def apply(engine: Engine, *results: object, delivered: bool = True, **kw: object) -> list[Change]:
    changes = []
    with transaction(engine) as store:
        for result in results:
            changes.append(
                store.apply_result(
                    result,  # type: ignore[arg-type]
                    source=str(kw.get("source", "webhook")),
                    now=kw.get("now", NOW),  # type: ignore[arg-type]
                    delivered=delivered,
                )
            )
    return changes


def row(engine: Engine, scoring_job_id: str = "sj_1") -> dict[str, object]:
    with transaction(engine, write=False) as store:
        found = store.get_result(scoring_job_id)
    assert found is not None
    return dict(found)


def test_apply_result_inserts_a_new_row(engine: Engine) -> None:
    """A first state is applied and stored with every field, source and timestamps."""
    (change,) = apply(engine, completed(score=9, batch_id="batch_1"))
    assert change == Change(Outcome.APPLIED, created=True, changed=True)
    stored = row(engine)
    assert stored["status"] == "completed"
    assert stored["score"] == 9
    assert stored["strengths"] == ["Python"]
    assert stored["completed_at"] == at(-2)
    assert (stored["source"], stored["first_seen_at"], stored["updated_at"]) == (
        "webhook",
        NOW,
        NOW,
    )
    assert stored["delivery_count"] == 1


def test_a_group_insert_stores_every_field_as_one_at_a_time_would(engine: Engine) -> None:
    """The group's multi-row insert (PostgreSQL: one JSON parameter) keeps text with
    quotes, backslashes, line separators and characters beyond the BMP, lists, flags and
    microseconds exactly as ``apply_result`` does."""
    text = 'naïve "quoted" \\ back\u2028line\ttab 😀 \U0001d518'
    fields = {
        "verdict": text,
        "strengths": (text, "SQL"),
        "concerns": None,
        "is_rescore": True,
        "queued_at": at(-30).replace(microsecond=123456),
    }
    with transaction(engine) as store:
        created = store.insert_new_results(
            [completed("sj_group", **fields)], source="webhook", now=NOW, delivered=True
        )
    apply(engine, completed("sj_alone", **fields))

    assert created == {"sj_group"}
    grouped, alone = row(engine, "sj_group"), row(engine, "sj_alone")
    assert grouped["verdict"] == text
    assert grouped["strengths"] == [text, "SQL"]
    assert {**grouped, "scoring_job_id": "sj_alone"} == alone


def test_same_state_again_is_a_duplicate_and_counts_the_delivery(engine: Engine) -> None:
    """A repeat changes nothing but delivery_count (and not updated_at)."""
    apply(engine, completed())
    (change,) = apply(engine, completed(), now=at(5))
    assert change == Change(Outcome.DUPLICATE, created=False, changed=False)
    stored = row(engine)
    assert stored["delivery_count"] == 2
    assert stored["updated_at"] == NOW


def test_reconcile_state_does_not_count_as_a_delivery(engine: Engine) -> None:
    """delivery_count counts webhooks only."""
    apply(engine, completed())
    apply(engine, completed(), delivered=False, source="reconcile")
    assert row(engine)["delivery_count"] == 1


def test_failed_after_completed_is_stale_and_keeps_the_result(engine: Engine) -> None:
    """A later failure is stale: score, verdict and completed status stay."""
    apply(engine, completed(score=8))
    (change,) = apply(engine, failed(when=at(10)), now=at(11))
    assert change.outcome is Outcome.STALE
    assert not change.changed
    stored = row(engine)
    assert (stored["status"], stored["score"], stored["verdict"]) == (
        "completed",
        8,
        "Strong match",
    )
    assert stored["error_code"] is None
    assert stored["failed_at"] is None


def test_older_state_is_stale(engine: Engine) -> None:
    """An earlier completion than the stored one does not change it."""
    apply(engine, completed(when=at(0), score=5))
    (change,) = apply(engine, completed(when=at(-10), score=1))
    assert change.outcome is Outcome.STALE
    assert row(engine)["score"] == 5


def test_newer_state_replaces_the_assessment_as_a_whole(engine: Engine) -> None:
    """A newer completion is stored as it is: never an old verdict beside a new score."""
    apply(engine, completed(when=at(0), score=5, verdict="Maybe"))
    (change,) = apply(engine, completed(when=at(1), score=6, verdict=None), now=at(2))
    assert change == Change(Outcome.APPLIED, created=False, changed=True)
    stored = row(engine)
    assert (stored["score"], stored["verdict"]) == (6, None)
    assert stored["updated_at"] == at(2)


def test_enrichment_fills_gaps_without_changing_the_outcome(engine: Engine) -> None:
    """A duplicate that knows the batch id fills it in; the result stays a duplicate, and
    keeps its place in "newest first" (only a change of result moves ``updated_at``)."""
    apply(engine, completed(batch_id=None))
    first = row(engine)["updated_at"]
    (change,) = apply(engine, completed(batch_id="batch_7", is_rescore=False), now=at(3))
    assert change.outcome is Outcome.DUPLICATE
    assert change.changed
    stored = row(engine)
    assert (stored["batch_id"], stored["is_rescore"]) == ("batch_7", False)
    assert stored["updated_at"] == first != at(3)


def test_enrichment_never_overwrites_a_known_value(engine: Engine) -> None:
    """Whoever knows an id first wins; a different later value does not replace it."""
    apply(engine, completed(batch_id="batch_1"))
    apply(engine, completed(when=at(1), batch_id="batch_2"))
    assert row(engine)["batch_id"] == "batch_1"


def test_stale_state_still_fills_enrichment(engine: Engine) -> None:
    """A stale failure that knows the application id still contributes it."""
    apply(engine, completed(application_id=None))
    (change,) = apply(engine, failed(application_id="app-9"))
    assert change.outcome is Outcome.STALE
    assert row(engine)["application_id"] == "app-9"


def test_pending_never_replaces_a_terminal_state(engine: Engine) -> None:
    """Reconcile or submit reporting pending cannot undo a result."""
    apply(engine, failed())
    (change,) = apply(engine, pending(queued_at=at(-30)), delivered=False, source="submit")
    assert change.outcome is Outcome.STALE
    stored = row(engine)
    assert (stored["status"], stored["source"]) == ("failed", "webhook")
    assert stored["queued_at"] == at(-30)


def test_track_pending_jobs_counts_only_new_ones(engine: Engine) -> None:
    """Submitting known scoring jobs twice adds them once."""
    with transaction(engine) as store:
        kw = {"batch_id": "batch_1", "job_id": "job-123", "tenant_id": "t", "now": NOW}
        assert store.track_pending_jobs(scoring_job_ids=["a", "b"], **kw) == ["a", "b"]  # type: ignore[arg-type]
        assert store.track_pending_jobs(scoring_job_ids=["b", "c"], **kw) == ["c"]  # type: ignore[arg-type]
    assert row(engine, "c")["status"] == "pending"


def test_concurrent_identical_results_leave_one_row(engine: Engine) -> None:
    """Eight writers applying the same new result at once: one applied, seven duplicates."""
    barrier = Barrier(8)

    def write(_: int) -> Outcome:
        barrier.wait()
        (change,) = apply(engine, completed())
        return change.outcome

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(write, range(8)))
    assert sorted(outcomes) == sorted([Outcome.APPLIED] + [Outcome.DUPLICATE] * 7)
    assert row(engine)["delivery_count"] == 8


# ---- deliveries ----------------------------------------------------------------------------------


def deliveries(engine: Engine) -> list[dict[str, object]]:
    with transaction(engine, write=False) as store:
        return [dict(r) for r in store.conn.execute(sa.text("SELECT * FROM delivery")).mappings()]


def test_record_delivery_keeps_one_row_per_key_and_counts_attempts(engine: Engine) -> None:
    """The same delivery key three times: one row, attempts 3, last_received_at moves."""
    with transaction(engine) as store:
        assert store.record_delivery(inbound("msg_1"), outcome="applied", now=NOW)
    for minute in (1, 2):
        with transaction(engine) as store:
            assert not store.record_delivery(inbound("msg_1"), outcome="duplicate", now=at(minute))
    with transaction(engine) as store:
        assert store.record_delivery(inbound("msg_2"), outcome="duplicate", now=at(3))
    rows = {r["delivery_key"]: r for r in deliveries(engine)}
    assert set(rows) == {"msg_1", "msg_2"}
    first = rows["msg_1"]
    assert (first["attempts"], first["outcome"]) == (3, "applied")
    with transaction(engine, write=False) as store:
        fetched = store.get_delivery("msg_1")
    assert fetched is not None
    assert (fetched["received_at"], fetched["last_received_at"]) == (NOW, at(2))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01\x02 nul bytes \x00",
        b"\xff\xfe not utf-8 \xc3\x28",
        b'{"event": "test", "message": "\\ud800"}',
        b"",
        "caf\u00e9 \U0001f600 \u202e rtl".encode(),
    ],
    ids=["nul", "invalid-utf8", "escaped-surrogate", "empty", "unicode"],
)
def test_raw_body_bytes_round_trip(engine: Engine, body: bytes) -> None:
    """Raw bodies are bytes: NUL, invalid UTF-8 and escapes come back byte for byte."""
    with transaction(engine) as store:
        store.record_delivery(inbound("k", body=body), outcome="stored-unparsed", now=NOW)
    with transaction(engine, write=False) as store:
        fetched = store.get_delivery("k")
    assert fetched is not None
    assert bytes(fetched["raw_body"]) == body


def test_get_delivery_by_id_webhook_id_or_key(engine: Engine) -> None:
    """A delivery is found by numeric id, webhook id or delivery key."""
    with transaction(engine) as store:
        store.record_delivery(inbound("sha256:abc", webhook_id=None), outcome="applied", now=NOW)
        store.record_delivery(inbound("msg_9"), outcome="applied", now=NOW)
    with transaction(engine, write=False) as store:
        by_key = store.get_delivery("sha256:abc")
        by_webhook_id = store.get_delivery("msg_9")
        assert by_key is not None
        assert by_webhook_id is not None
        by_id = store.get_delivery(str(by_webhook_id["id"]))
    assert by_id is not None
    assert by_id["delivery_key"] == "msg_9"
    assert by_key["webhook_id"] is None


def test_get_delivery_finds_a_key_with_and_without_a_job(engine: Engine) -> None:
    """No index starts with the key (storage.models.Delivery): a key is still found, for
    deliveries of a scoring job and for those without one."""
    with transaction(engine) as store:
        for n in range(3):
            store.record_delivery(inbound(f"sha256:{n}", scoring_job_id=f"sj_{n}"),
                                  outcome="applied", now=NOW)  # fmt: skip
        store.record_delivery(
            inbound("sha256:test", event="test", scoring_job_id=None, webhook_id=None),
            outcome="recorded",
            now=NOW,
        )
    with transaction(engine, write=False) as store:
        with_job = store.get_delivery("sha256:1")
        without_job = store.get_delivery("sha256:test")
        nothing = store.get_delivery("sha256:none")
    assert with_job is not None
    assert with_job["scoring_job_id"] == "sj_1"
    assert without_job is not None
    assert without_job["event"] == "test"
    assert nothing is None


def test_get_delivery_by_a_number_no_id_can_be_is_none(engine: Engine) -> None:
    """Twenty digits are no row's id (nor too large for the driver): not found, no error."""
    with transaction(engine) as store:
        store.record_delivery(inbound("msg_1"), outcome="applied", now=NOW)
    with transaction(engine, write=False) as store:
        assert store.get_delivery("9" * 20) is None


def test_the_same_key_without_and_with_a_job_is_one_row_each(engine: Engine) -> None:
    """Each of the inbox's unique indexes counts attempts on its own rows: a key repeated
    without a job adds an attempt, and so does a key repeated for the same job."""
    jobless = inbound("sha256:k", event=None, scoring_job_id=None)
    for now in (NOW, at(1)):
        with transaction(engine) as store:
            store.record_deliveries(
                [(jobless, "stored-unparsed"), (inbound("sha256:j"), "applied")], now=now
            )
    rows = {(r["delivery_key"], r["scoring_job_id"]): r["attempts"] for r in deliveries(engine)}
    assert rows == {("sha256:k", None): 2, ("sha256:j", "sj_1"): 2}


def replayed(
    engine: Engine, row: dict[str, object], *, scoring_job_id: str, batch_id: str | None
) -> None:
    """What ``deliveries replay`` records when a newer parser reads a score in ``row``."""
    with transaction(engine) as store:
        store.update_delivery(
            int(str(row["id"])),
            replay_outcome="applied",
            replayed_at=at(1),
            event="score.completed",
            scoring_job_id=scoring_job_id,
            batch_id=batch_id,
        )


def test_a_replay_that_finds_a_job_already_holding_the_key_leaves_the_row_without_one(
    engine: Engine,
) -> None:
    """A body stored unparsed (no job id), then the same body stored for its job after an
    upgrade that parses it: replaying the first must not make the key twice in the job's
    unique index. The row keeps no job id; its event is still filled in."""
    with transaction(engine) as store:
        store.record_delivery(inbound("sha256:k", event=None, scoring_job_id=None),
                              outcome="stored-unparsed", now=NOW)  # fmt: skip
        store.record_delivery(
            inbound("sha256:k", scoring_job_id="sj_1"), outcome="applied", now=NOW
        )
    first = min(deliveries(engine), key=lambda row: int(str(row["id"])))
    replayed(engine, first, scoring_job_id="sj_1", batch_id=None)
    rows = sorted(deliveries(engine), key=lambda row: int(str(row["id"])))
    assert [(row["scoring_job_id"], row["event"]) for row in rows] == [
        (None, "score.completed"),
        ("sj_1", "score.completed"),
    ]


def test_a_replay_fills_in_the_job_id_it_finds(engine: Engine) -> None:
    with transaction(engine) as store:
        store.record_delivery(inbound("sha256:k", event=None, scoring_job_id=None),
                              outcome="stored-unparsed", now=NOW)  # fmt: skip
    (row,) = deliveries(engine)
    replayed(engine, row, scoring_job_id="sj_1", batch_id="b_1")
    (row,) = deliveries(engine)
    assert (row["scoring_job_id"], row["batch_id"]) == ("sj_1", "b_1")


def test_purge_bodies_drops_only_old_bodies(engine: Engine) -> None:
    """Purging keeps the rows and newer bodies, and is idempotent."""
    with transaction(engine) as store:
        store.record_delivery(inbound("old", body=b"old"), outcome="applied", now=at(-200))
        store.record_delivery(inbound("new", body=b"new"), outcome="applied", now=NOW)
    with transaction(engine) as store:
        assert store.purge_bodies(older_than=at(-100), now=NOW) == 1
    with transaction(engine) as store:
        assert store.purge_bodies(older_than=at(-100), now=NOW) == 0
    rows = {r["delivery_key"]: r for r in deliveries(engine)}
    assert rows["old"]["raw_body"] is None
    assert rows["old"]["body_purged_at"] is not None
    assert bytes(rows["new"]["raw_body"]) == b"new"  # type: ignore[call-overload]


# ---- batches -------------------------------------------------------------------------------------


def batch(engine: Engine, batch_id: str = "batch_1") -> dict[str, object]:
    with transaction(engine, write=False) as store:
        found = store.get_batch(batch_id)
    assert found is not None
    return dict(found)


def test_track_batch_is_idempotent(engine: Engine) -> None:
    """Tracking twice: True then False, and the first tracking's data stays."""
    with transaction(engine) as store:
        assert store.track_batch(batch_state(api="legacy"), now=NOW)
    with transaction(engine) as store:
        assert not store.track_batch(batch_state(api="v1", tenant_id="other"), now=at(5))
    stored = batch(engine)
    assert (stored["api"], stored["tenant_id"], stored["tracked_at"]) == (
        "legacy",
        "acme-corp",
        NOW,
    )
    assert stored["due"] is True


def test_update_batch_never_goes_back_to_pending(engine: Engine) -> None:
    """A pending report after a terminal one keeps the terminal status and Nova's spelling."""
    done = batch_state(status="completed", nova_status="COMPLETED", total_jobs=3, completed_jobs=3)
    with transaction(engine) as store:
        store.update_batch(done, now=NOW, due=True)
    with transaction(engine) as store:
        store.update_batch(
            batch_state(status="pending", nova_status="IN_PROGRESS"),
            now=at(1),
            due=False,
            reconciled=True,
        )
    stored = batch(engine)
    assert (stored["status"], stored["nova_status"]) == ("completed", "COMPLETED")
    assert (stored["total_jobs"], stored["completed_jobs"]) == (3, 3)
    assert stored["due"] is False
    assert stored["last_reconciled_at"] == at(1)


def test_update_batch_moves_pending_to_terminal(engine: Engine) -> None:
    """A terminal report replaces pending and fills the counters."""
    with transaction(engine) as store:
        store.track_batch(batch_state(), now=NOW)
        store.update_batch(
            batch_state(status="failed", nova_status="failed", failed_jobs=1, completed_at=at(1)),
            now=at(1),
            due=True,
        )
    stored = batch(engine)
    assert (stored["status"], stored["failed_jobs"], stored["completed_at"]) == ("failed", 1, at(1))


def reconcile_ids(engine: Engine, *, older_than: object = None) -> list[str]:
    with transaction(engine, write=False) as store:
        rows = store.batches_to_reconcile(older_than=older_than or at(-5))  # type: ignore[arg-type]
    return [str(r["batch_id"]) for r in rows]


def test_batches_to_reconcile_picks_batches_with_gaps(engine: Engine) -> None:
    """Due, pending, short and stuck batches are picked; a finished, complete one is not."""
    counts = {"total_jobs": 1, "completed_jobs": 1, "failed_jobs": 0}
    with transaction(engine) as store:
        store.update_batch(batch_state("due", status="completed", **counts), now=NOW, due=True)
        store.update_batch(batch_state("pending"), now=NOW, due=False)
        store.update_batch(batch_state("short", status="completed", **counts), now=NOW, due=False)
        store.update_batch(batch_state("done", status="completed", **counts), now=NOW, due=False)
        store.apply_result(completed("done-1", batch_id="done"), source="reconcile", now=NOW)
        store.update_batch(batch_state("stuck", status="completed", **counts), now=NOW, due=False)
        store.apply_result(completed("stuck-1", batch_id="stuck"), source="reconcile", now=NOW)
        store.apply_result(pending("stuck-2", batch_id="stuck"), source="submit", now=at(-10))
    assert reconcile_ids(engine) == ["due", "pending", "short", "stuck"]
    with transaction(engine, write=False) as store:
        only = store.batches_to_reconcile(older_than=at(-5), batch_id="done")
    assert [r["batch_id"] for r in only] == ["done"]


def test_recent_pending_job_is_not_yet_a_gap(engine: Engine) -> None:
    """A pending job inside the grace period does not make a finished batch due."""
    counts = {"total_jobs": 2, "completed_jobs": 1, "failed_jobs": 0}
    with transaction(engine) as store:
        store.update_batch(batch_state("b", status="completed", **counts), now=NOW, due=False)
        store.apply_result(completed("b-1", batch_id="b"), source="reconcile", now=NOW)
        store.apply_result(pending("b-2", batch_id="b"), source="submit", now=at(-1))
    assert reconcile_ids(engine) == []


def test_record_rejected_is_idempotent(engine: Engine) -> None:
    """The same intake rejection twice is recorded once."""
    rejected = RejectedApplication("batch_1", "app-1", "RESUME_CORRUPTED", "bad pdf", "corrupt")
    with transaction(engine) as store:
        store.track_batch(batch_state(), now=NOW)
        assert store.record_rejected([rejected], now=NOW) == 1
    with transaction(engine) as store:
        assert (
            store.record_rejected([rejected, replace(rejected, application_id="app-2")], now=NOW)
            == 1
        )
    with transaction(engine, write=False) as store:
        rows = store.rejected_for_batch("batch_1")
    assert [(r["application_id"], r["code"]) for r in rows] == [
        ("app-1", "RESUME_CORRUPTED"),
        ("app-2", "RESUME_CORRUPTED"),
    ]


def test_rejected_application_needs_a_tracked_batch(engine: Engine) -> None:
    """Foreign keys are enforced: a rejection for an unknown batch fails."""
    rejected = RejectedApplication("nope", "app-1", None, None, None)
    with pytest.raises(sa.exc.IntegrityError), transaction(engine) as store:
        store.record_rejected([rejected], now=NOW)


# ---- leases, erasure, stats ------------------------------------------------------------------


def test_lease_is_exclusive_until_it_expires(engine: Engine) -> None:
    """A second holder is refused while the lease lives, then takes it over."""
    ttl = timedelta(minutes=10)
    with transaction(engine) as store:
        assert store.acquire_lease("reconcile", holder="a", now=NOW, ttl=ttl) == "a"
    with transaction(engine) as store:
        assert store.acquire_lease("reconcile", holder="b", now=at(5), ttl=ttl) == "a"
        assert store.acquire_lease("reconcile", holder="a", now=at(6), ttl=ttl) == "a"  # renew
    with transaction(engine) as store:
        assert store.acquire_lease("reconcile", holder="b", now=at(12), ttl=ttl) == "a"
        assert store.acquire_lease("reconcile", holder="b", now=at(17), ttl=ttl) == "b"
    with transaction(engine) as store:
        store.release_lease("reconcile", holder="a")  # not a's any more: no effect
        assert store.acquire_lease("reconcile", holder="c", now=at(18), ttl=ttl) == "b"
        store.release_lease("reconcile", holder="b")
        assert store.acquire_lease("reconcile", holder="c", now=at(18), ttl=ttl) == "c"


def test_erase_application_removes_every_trace(engine: Engine) -> None:
    """Results, their deliveries and intake rejections of one candidate are gone; others stay."""
    with transaction(engine) as store:
        store.track_batch(batch_state(), now=NOW)
        store.apply_result(completed("sj_a", application_id="app-x"), source="webhook", now=NOW)
        store.apply_result(
            completed("sj_b", application_id="app-x", is_rescore=True), source="webhook", now=NOW
        )
        store.apply_result(completed("sj_keep", application_id="app-y"), source="webhook", now=NOW)
        store.record_delivery(inbound("d1", scoring_job_id="sj_a"), outcome="applied", now=NOW)
        store.record_delivery(inbound("d2", scoring_job_id="sj_b"), outcome="applied", now=NOW)
        store.record_delivery(inbound("d3", scoring_job_id="sj_keep"), outcome="applied", now=NOW)
        store.record_rejected(
            [
                RejectedApplication("batch_1", "app-x", "RESUME_EMPTY", None, None),
                RejectedApplication("batch_1", "app-y", "RESUME_EMPTY", None, None),
            ],
            now=NOW,
        )
    with transaction(engine) as store:
        removed = store.erase_application("app-x", now=NOW)
    assert removed == {"delivery": 2, "scoring_job": 2, "rejected_application": 1}
    with transaction(engine, write=False) as store:
        assert store.get_result("sj_a") is None
        assert store.get_result("sj_b") is None
        assert store.get_result("sj_keep") is not None
        assert [r["application_id"] for r in store.rejected_for_batch("batch_1")] == ["app-y"]
    assert [r["delivery_key"] for r in deliveries(engine)] == ["d3"]


def test_erase_application_removes_unparsed_deliveries_that_name_it(engine: Engine) -> None:
    """A signed but unparseable body about the candidate (kept raw in the inbox) is erased too."""
    body = (
        b'{"event": "score.completed", "scoringJobId": "sj_a", "applicationId": "app-x",'
        b' "result": {"score": 7, "assessment": {"verdict": "nul \\u0000 in it"}}}'
    )
    with transaction(engine) as store:
        store.apply_result(completed("sj_a", application_id="app-x"), source="webhook", now=NOW)
        store.record_delivery(
            inbound("raw", body=body, event=None, scoring_job_id=None),
            outcome="stored-unparsed",
            now=NOW,
        )
    with transaction(engine) as store:
        store.erase_application("app-x", now=NOW)
    assert [r["delivery_key"] for r in deliveries(engine)] == []


def test_stats_counts_by_status_outcome_and_event(engine: Engine) -> None:
    """stats() summarises results, batches, deliveries, rejections and due batches."""
    with transaction(engine) as store:
        store.track_batch(batch_state(), now=NOW)
        store.apply_result(completed("a"), source="webhook", now=NOW)
        store.apply_result(failed("b"), source="webhook", now=NOW)
        store.apply_result(completed("c"), source="webhook", now=NOW)
        store.record_delivery(inbound("d1"), outcome="applied", now=NOW)
        store.record_delivery(inbound("d2", event="test"), outcome="recorded", now=NOW)
        store.record_rejected([RejectedApplication("batch_1", "r", None, None, None)], now=NOW)
    with transaction(engine, write=False) as store:
        stats = store.stats()
    assert stats == {
        "results": {"completed": 2, "failed": 1},
        "batches": {"pending": 1},
        "deliveries": {"applied": 1, "recorded": 1},
        "events": {"score.completed": 1, "test": 1},
        "rejected_applications": 1,
        "batches_due": 1,
        "erased_applications": 0,
    }


def test_reconcile_runs_are_recorded_and_totalled(engine: Engine) -> None:
    """start_run/finish_run store a summary; reconcile_totals adds fixes up."""
    with transaction(engine) as store:
        run = store.start_run(now=NOW, dry_run=False)
        store.finish_run(
            run,
            now=at(1),
            summary={"results_added": 2, "results_updated": 1, "errors": {"http_404": 1}, "x": 5},
        )
        store.start_run(now=at(2), dry_run=True)
    with transaction(engine, write=False) as store:
        assert store.reconcile_totals() == (2, 3)
        newest, oldest = store.list_runs()
    assert oldest["errors"] == {"http_404": 1}
    assert oldest["finished_at"] == at(1)
    assert newest["dry_run"] is True


# ---- engine and schema -----------------------------------------------------------------------


def test_schema_head_matches_alembic_head() -> None:
    """storage.schema.HEAD is alembic's head revision."""
    assert schema.script_head() == schema.HEAD


def test_migrated_database_is_at_head(engine: Engine) -> None:
    """After upgrade the schema check passes and readiness reads HEAD."""
    schema.check(engine)
    assert schema.current(engine) == schema.HEAD


def test_schema_check_rejects_an_empty_database(tmp_path: Path) -> None:
    """An unmigrated database raises SchemaOutOfDate naming both revisions."""
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(SchemaOutOfDate) as caught:
            schema.check(engine)
        assert (caught.value.current, caught.value.expected) == (None, schema.HEAD)
        assert "nova-sink db upgrade" in str(caught.value)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_schema_check_rejects_an_empty_postgres_schema(postgres_url: str) -> None:
    """On PostgreSQL too, a schema without tables is out of date, not an error."""
    engine = make_engine(f"{postgres_url}?options=-csearch_path%3Dt_does_not_exist")
    try:
        assert schema.current(engine) is None
        with pytest.raises(SchemaOutOfDate):
            schema.check(engine)
    finally:
        engine.dispose()


PRAGMAS = {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1}


@pytest.mark.parametrize(("level", "value"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_pragmas_hold_on_every_pooled_connection(
    tmp_path: Path, level: str, value: int
) -> None:
    """WAL, synchronous, busy_timeout and foreign keys are set on each pooled connection."""
    engine = migrated_sqlite_engine(tmp_path / "p.db", synchronous=level)
    try:
        connections = [engine.connect() for _ in range(4)]
        try:
            assert len({id(c.connection.dbapi_connection) for c in connections}) == 4
            for conn in connections:
                read = {
                    name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in (*PRAGMAS, "synchronous")
                }
                assert read == {**PRAGMAS, "synchronous": value}
        finally:
            for conn in connections:
                conn.close()
    finally:
        engine.dispose()


def test_sqlite_write_transaction_takes_the_lock_up_front(sqlite_engine: Engine) -> None:
    """A write transaction begins IMMEDIATE: a second writer waits instead of failing late."""
    locked = sqlite_engine.dialect.dbapi.OperationalError  # type: ignore[union-attr]
    with transaction(sqlite_engine):
        other = sqlite_engine.raw_connection()
        try:
            other.cursor().execute("PRAGMA busy_timeout=50")
            with pytest.raises(locked, match="locked"):
                other.cursor().execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_store_reads_through_a_plain_store(sqlite_engine: Engine) -> None:
    """Store wraps any open connection (callers own the transaction)."""
    with sqlite_engine.connect() as conn:
        store = Store(conn)
        store.ping()
        assert store.schema_revision() == schema.HEAD
