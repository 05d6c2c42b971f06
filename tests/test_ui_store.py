"""The dashboard's read queries (storage.store.dashboard) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta, timezone

from sqlalchemy.engine import Engine

from storage.db import transaction
from tests.factories import NOW, at, batch_state, completed, failed, inbound, pending


def track(engine: Engine, *batch_ids: str, job_id: str = "job-123") -> None:
    with transaction(engine) as store:
        for minute, batch_id in enumerate(batch_ids):
            store.track_batch(batch_state(batch_id, job_id=job_id), now=at(minute))


def test_batches_page_walks_every_batch_once_newest_first(engine: Engine) -> None:
    """Keyset pages of two cover five batches in tracking order, newest first, no repeats."""
    track(engine, "b1", "b2", "b3", "b4", "b5")
    seen: list[str] = []
    after = None
    with transaction(engine, write=False) as store:
        while True:
            page = store.batches_page(after=after, limit=2)
            if not page:
                break
            seen += [row["batch_id"] for row in page]
            after = (page[-1]["tracked_at"], page[-1]["batch_id"])
    assert seen == ["b5", "b4", "b3", "b2", "b1"]


def test_batches_page_breaks_ties_on_tracked_at_by_batch_id(engine: Engine) -> None:
    """Batches tracked in the same instant are neither skipped nor repeated across pages."""
    with transaction(engine) as store:
        for batch_id in ("a", "b", "c"):
            store.track_batch(batch_state(batch_id), now=NOW)
        first = store.batches_page(limit=2)
        rest = store.batches_page(after=(NOW, first[-1]["batch_id"]), limit=2)
    assert [r["batch_id"] for r in first + rest] == ["c", "b", "a"]


def test_batches_page_compares_a_cursor_time_in_utc_whatever_its_offset(
    engine: Engine,
) -> None:
    """A cursor time given with another offset means the same instant as its UTC form."""
    track(engine, "b1")  # tracked at NOW
    earlier = (NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5)))
    with transaction(engine, write=False) as store:
        assert store.batches_page(after=(earlier, "zzz")) == []
        assert [r["batch_id"] for r in store.batches_page(after=(NOW, "zzz"))] == ["b1"]


def test_batches_page_filters_by_status_and_job(engine: Engine) -> None:
    """status= and job= narrow the list."""
    track(engine, "b1", job_id="job-a")
    track(engine, "b2", job_id="job-b")
    with transaction(engine) as store:
        store.update_batch(
            batch_state("b2", job_id="job-b", status="completed"), now=NOW, due=False
        )
        assert [r["batch_id"] for r in store.batches_page(status="completed")] == ["b2"]
        assert [r["batch_id"] for r in store.batches_page(job_id="job-a")] == ["b1"]


def test_local_counts_count_results_per_batch_and_status(engine: Engine) -> None:
    """Counts by status for the asked batches only; a batch without results has none."""
    with transaction(engine) as store:
        for result in (
            completed("sj_1", batch_id="b1"),
            completed("sj_2", batch_id="b1"),
            failed("sj_3", batch_id="b1"),
            pending("sj_4", batch_id="b2"),
            completed("sj_5", batch_id="b3"),
        ):
            store.apply_result(result, source="webhook", now=NOW)
        counts = store.local_counts(["b1", "b2", "empty"])
    assert counts == {"b1": {"completed": 2, "failed": 1}, "b2": {"pending": 1}, "empty": {}}


def test_batch_results_page_pages_by_scoring_job_id_and_filters_status(engine: Engine) -> None:
    """Results of one batch in id order after the cursor; status= keeps only that status."""
    with transaction(engine) as store:
        for n in range(5):
            result = (failed if n == 2 else completed)(f"sj_{n}", batch_id="b1")
            store.apply_result(result, source="webhook", now=NOW)
        store.apply_result(completed("sj_other", batch_id="b2"), source="webhook", now=NOW)
        first = store.batch_results_page("b1", limit=2)
        second = store.batch_results_page("b1", after=first[-1]["scoring_job_id"], limit=2)
        only_failed = store.batch_results_page("b1", status="failed")
    assert [r["scoring_job_id"] for r in first + second] == ["sj_0", "sj_1", "sj_2", "sj_3"]
    assert [r["scoring_job_id"] for r in only_failed] == ["sj_2"]


def test_score_histogram_counts_completed_scores_of_the_job(engine: Engine) -> None:
    """Scores of completed results of the job; failures and other jobs stay out."""
    with transaction(engine) as store:
        for n, score in enumerate((7, 7, 9)):
            store.apply_result(completed(f"sj_{n}", score=score), source="webhook", now=NOW)
        store.apply_result(failed("sj_f"), source="webhook", now=NOW)
        store.apply_result(completed("sj_x", score=1, job_id="job-x"), source="webhook", now=NOW)
        histogram = store.score_histogram("job-123")
        capped = store.score_histogram("job-123", cap=2)
    assert histogram.counts == {7: 2, 9: 1}
    assert not histogram.capped
    assert capped.capped
    assert sum(capped.counts.values()) <= 2


def test_deliveries_page_is_newest_first_with_bodies_and_filters(engine: Engine) -> None:
    """Keyset by id, newest first; event= and outcome= filter; the raw body comes along."""
    with transaction(engine) as store:
        store.record_delivery(inbound("m1", body=b'{"a":1}'), outcome="applied", now=NOW)
        store.record_delivery(inbound("m2", event=None), outcome="stored-unparsed", now=NOW)
        store.record_delivery(inbound("m3"), outcome="duplicate", now=NOW)
        first = store.deliveries_page(limit=2)
        rest = store.deliveries_page(before=first[-1]["id"], limit=2)
        unparsed = store.deliveries_page(outcome="stored-unparsed")
        scored = store.deliveries_page(event="score.completed")
    assert [r["delivery_key"] for r in first + rest] == ["m3", "m2", "m1"]
    assert rest[0]["raw_body"] == b'{"a":1}'
    assert [r["delivery_key"] for r in unparsed] == ["m2"]
    assert [r["delivery_key"] for r in scored] == ["m3", "m1"]


def test_outcomes_since_counts_only_the_window(engine: Engine) -> None:
    """Deliveries received before the window are not counted."""
    with transaction(engine) as store:
        store.record_delivery(inbound("old"), outcome="applied", now=NOW - timedelta(days=2))
        store.record_delivery(inbound("new1"), outcome="applied", now=NOW)
        store.record_delivery(inbound("new2"), outcome="stale", now=NOW)
        outcomes = store.outcomes_since(NOW - timedelta(hours=24))
    assert outcomes.counts == {"applied": 1, "stale": 1}
    assert not outcomes.capped


def test_outcomes_since_counts_at_most_the_latest_cap(engine: Engine) -> None:
    """Past the cap only the newest deliveries are counted, and the result says so."""
    with transaction(engine) as store:
        store.record_delivery(inbound("m1"), outcome="stale", now=at(-3))
        store.record_delivery(inbound("m2"), outcome="applied", now=at(-2))
        store.record_delivery(inbound("m3"), outcome="applied", now=at(-1))
        outcomes = store.outcomes_since(NOW - timedelta(hours=24), cap=2)
        nothing = store.outcomes_since(NOW + timedelta(minutes=1))
    assert outcomes.counts == {"applied": 2}
    assert outcomes.capped
    assert nothing.counts == {}


def test_recent_verifications_group_by_secret_and_scheme(engine: Engine) -> None:
    """Counts per fingerprint and scheme, with the last time each verified a delivery."""
    with transaction(engine) as store:
        store.record_delivery(inbound("m1", secret_fingerprint="fp_old"), outcome="x", now=at(-9))
        store.record_delivery(inbound("m2"), outcome="applied", now=at(-5))
        store.record_delivery(inbound("m3"), outcome="applied", now=at(-1))
        groups = store.recent_verifications()
    assert [(g.secret_fingerprint, g.deliveries, g.last_received_at) for g in groups] == [
        ("fp_0123456789", 2, at(-1)),
        ("fp_old", 1, at(-9)),
    ]
    assert groups[0].signature_scheme == "x-webhook-signature/body"


def test_recent_lags_pair_applied_score_deliveries_with_finish_times(engine: Engine) -> None:
    """Each applied score delivery gives (finished, received); others are left out."""
    with transaction(engine) as store:
        store.apply_result(completed("sj_1", when=at(-3)), source="webhook", now=NOW)
        store.apply_result(failed("sj_2", when=at(-4)), source="webhook", now=NOW)
        store.record_delivery(inbound("m1", scoring_job_id="sj_1"), outcome="applied", now=at(-2))
        store.record_delivery(inbound("m2", scoring_job_id="sj_2"), outcome="applied", now=at(-1))
        store.record_delivery(inbound("m3", scoring_job_id="sj_1"), outcome="duplicate", now=NOW)
        lags = store.recent_lags()
    pairs = sorted((lag.finished_at, lag.received_at) for lag in lags)
    assert pairs == [(at(-4), at(-1)), (at(-3), at(-2))]


def test_deliveries_page_reads_only_the_start_of_each_body(engine: Engine) -> None:
    """body_bytes bounds what a list page reads; body_length tells the whole size."""
    with transaction(engine) as store:
        store.record_delivery(
            inbound("m1", body=b'{"long": "' + b"x" * 100 + b'"}'), outcome="a", now=NOW
        )
        store.record_delivery(inbound("m2", body=b"{}"), outcome="a", now=NOW)
        rows = store.deliveries_page(body_bytes=8)
    assert [(r["raw_body"], r["body_length"]) for r in rows] == [(b"{}", 2), (b'{"long":', 112)]
