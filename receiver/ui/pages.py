"""What each dashboard page reads and shows: ``(store, params) -> (template, context)``.

No web framework here: ``routes`` hands in the query parameters and renders the result.
A page returns None when the thing asked for does not exist (answered 404).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from receiver.ui import charts, views
from receiver.ui.paging import BadParameter, choice, decode_cursor, encode_cursor, only
from receiver.values import is_ascii_digits
from receiver.vocabulary import WebhookStatus
from storage.records import STATUSES
from storage.store import Store

OUTCOMES = tuple(status.value for status in WebhookStatus)
BATCHES_PER_PAGE = 25
RESULTS_PER_PAGE = 100
DELIVERIES_PER_PAGE = 25
LIST_BODY_CHARS = 4000
# Bodies longer than this are not parsed on the list page: shown as their first bytes.
LIST_BODY_BYTES = 16_384
RECENT_RUNS = 5

Page = tuple[str, dict[str, Any]]


def _next(params: Mapping[str, str], cursor_name: str, cursor: str | None) -> str | None:
    """The query string of the next page: same filters, the new cursor."""
    if cursor is None:
        return None
    kept = {k: v for k, v in params.items() if k != cursor_name and v}
    return "?" + urlencode({**kept, cursor_name: cursor})


def overview(
    store: Store, params: Mapping[str, str], *, now: datetime, secrets: Sequence[str]
) -> Page:
    only(params, ("after", "status", "job"))
    status = choice(params, "status", STATUSES)
    job = choice(params, "job")
    raw_after = choice(params, "after")
    after = None
    if raw_after is not None:
        tracked_at, batch_id = decode_cursor(raw_after, shape=(datetime, str))
        after = (tracked_at, batch_id)
    rows = store.batches_page(after=after, status=status, job_id=job, limit=BATCHES_PER_PAGE)
    counts = store.local_counts([row["batch_id"] for row in rows])
    runs = store.list_runs(limit=RECENT_RUNS)
    last_run = _last_real_run(runs)
    batches = [views.batch_view(row, counts[row["batch_id"]], last_run) for row in rows]
    cursor = None
    if len(rows) == BATCHES_PER_PAGE:
        cursor = encode_cursor(rows[-1]["tracked_at"], rows[-1]["batch_id"])
    outcomes = store.outcomes_since(now - timedelta(hours=24))
    lags = store.recent_lags()
    known = {fingerprint: index for index, fingerprint in enumerate(secrets)}
    context = {
        "batches": batches,
        "filters": {"status": status or "", "job": job or ""},
        "statuses": STATUSES,
        "next": _next(params, "after", cursor),
        "runs": runs,
        "outcomes_chart": charts.bars_svg(
            sorted(outcomes.counts.items(), key=lambda item: -item[1]),
            title="Deliveries by outcome, last 24 hours",
        ),
        "outcomes_total": sum(outcomes.counts.values()),
        "outcomes_capped": outcomes.capped,
        "lag": views.lag_summary([(lag.finished_at, lag.received_at) for lag in lags]),
        "verifications": [
            (v, known.get(v.secret_fingerprint)) for v in store.recent_verifications()
        ],
    }
    return "overview.html", context


def batch(store: Store, batch_id: str, params: Mapping[str, str]) -> Page | None:
    only(params, ("after", "status"))
    status = choice(params, "status", STATUSES)
    raw_after = choice(params, "after")
    after = decode_cursor(raw_after, shape=(str,))[0] if raw_after is not None else None
    row = store.get_batch(batch_id)
    if row is None:
        return None
    results = store.batch_results_page(batch_id, after=after, status=status, limit=RESULTS_PER_PAGE)
    cursor = None
    if len(results) == RESULTS_PER_PAGE:
        cursor = encode_cursor(results[-1]["scoring_job_id"])
    counts = store.local_counts([batch_id])[batch_id]
    last_run = _last_real_run(store.list_runs(limit=RECENT_RUNS))
    histogram = store.score_histogram(row["job_id"])
    context = {
        "batch": views.batch_view(row, counts, last_run),
        "results": results,
        "rejected": store.rejected_for_batch(batch_id),
        "chart": charts.histogram_svg(histogram.counts, title=f"Scores of job {row['job_id']}"),
        "chart_capped": histogram.capped,
        "filters": {"status": status or ""},
        "statuses": STATUSES,
        "next": _next(params, "after", cursor),
    }
    return "batch.html", context


def result(store: Store, scoring_job_id: str, params: Mapping[str, str]) -> Page | None:
    only(params, ())
    row = store.get_result(scoring_job_id)
    if row is None:
        return None
    deliveries = store.list_deliveries(scoring_job_id=scoring_job_id, limit=100)
    return "result.html", {"result": row, "deliveries": deliveries}


def deliveries(store: Store, params: Mapping[str, str]) -> Page:
    only(params, ("before", "event", "outcome", "scoring_job"))
    event = choice(params, "event")
    outcome = choice(params, "outcome", OUTCOMES)
    scoring_job = choice(params, "scoring_job")
    raw_before = choice(params, "before")
    before = decode_cursor(raw_before, shape=(int,), name="before")[0] if raw_before else None
    rows = store.deliveries_page(
        before=before,
        event=event,
        outcome=outcome,
        scoring_job_id=scoring_job,
        limit=DELIVERIES_PER_PAGE,
        body_bytes=LIST_BODY_BYTES,
    )
    cursor = encode_cursor(rows[-1]["id"]) if len(rows) == DELIVERIES_PER_PAGE else None
    items = [
        (
            row,
            views.pretty_body(
                row["raw_body"],
                limit=LIST_BODY_CHARS,
                complete=row["body_length"] is None or row["body_length"] <= LIST_BODY_BYTES,
            ),
        )
        for row in rows
    ]
    context = {
        "deliveries": items,
        "filters": {
            "event": event or "",
            "outcome": outcome or "",
            "scoring_job": scoring_job or "",
        },
        "outcomes": OUTCOMES,
        "next": _next(params, "before", cursor),
    }
    return "deliveries.html", context


def delivery(store: Store, delivery_id: str, params: Mapping[str, str]) -> Page | None:
    only(params, ())
    if not is_ascii_digits(delivery_id) or len(delivery_id) > 18:
        return None
    row = store.delivery_by_id(int(delivery_id))
    if row is None:
        return None
    return "delivery.html", {"delivery": row, "body": views.pretty_body(row["raw_body"])}


__all__ = ["BadParameter", "Page", "batch", "deliveries", "delivery", "overview", "result"]


def _last_real_run(runs: Sequence[Mapping[Any, Any]]) -> Mapping[Any, Any] | None:
    """The newest run that wrote (a dry run reconciles nothing): what every page judges
    a batch's convergence by, so the overview and the batch page agree."""
    return next((run for run in runs if not run["dry_run"]), None)
