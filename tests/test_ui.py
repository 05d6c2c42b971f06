"""The dashboard's pure parts: login links, sessions, cursors, charts, convergence, bodies."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.ui import auth, charts, views
from receiver.ui.paging import BadParameter, choice, decode_cursor, encode_cursor, only
from receiver.ui.render import render
from tests.factories import NOW, at

KEYS = ["ui-test-key-0123456789abcdef"]


# ---- login links and sessions ----------------------------------------------------------


def test_login_link_opens_a_session_of_the_requested_length() -> None:
    """A fresh link verifies; the session ends ttl after sign-in."""
    token = auth.create_login_token(KEYS, session_ttl=timedelta(hours=8), now=NOW)
    login = auth.check_login_token(KEYS, token, now=at(5))
    assert login.session_expires_at == at(5) + timedelta(hours=8)
    assert auth.session_active(auth.new_session(login), now=at(5) + timedelta(hours=7))
    assert not auth.session_active(auth.new_session(login), now=at(5) + timedelta(hours=8))


def test_login_link_expires_after_its_own_short_lifetime() -> None:
    """A link older than LINK_TTL is refused as expired, whatever the session ttl."""
    token = auth.create_login_token(KEYS, session_ttl=timedelta(days=7), now=NOW)
    with pytest.raises(auth.LoginError, match="expired"):
        auth.check_login_token(KEYS, token, now=NOW + auth.LINK_TTL)


def test_login_link_signed_with_another_key_is_refused() -> None:
    """A link made with a different SINK_SECRET_KEY is not valid."""
    token = auth.create_login_token(["another-key-0123456789"], session_ttl=timedelta(1), now=NOW)
    with pytest.raises(auth.LoginError, match="not valid"):
        auth.check_login_token(KEYS, token, now=NOW)


def test_login_link_signed_with_an_older_key_still_verifies() -> None:
    """Keys are newest first; a link made before a rotation keeps working."""
    token = auth.create_login_token(KEYS, session_ttl=timedelta(hours=1), now=NOW)
    auth.check_login_token(["rotated-key-0123456789ab", *KEYS], token, now=NOW)


@given(st.text(max_size=200))
def test_any_garbage_token_is_a_login_error(token: str) -> None:
    """Whatever arrives in ?token=, the answer is LoginError, never another exception."""
    with pytest.raises(auth.LoginError):
        auth.check_login_token(KEYS, token, now=NOW)


def test_a_link_can_be_claimed_once() -> None:
    """The second claim of one nonce fails; another link's nonce is unaffected."""
    used = auth.UsedNonces()
    first = auth.check_login_token(
        KEYS, auth.create_login_token(KEYS, session_ttl=timedelta(1), now=NOW), now=NOW
    )
    second = auth.check_login_token(
        KEYS, auth.create_login_token(KEYS, session_ttl=timedelta(1), now=NOW), now=NOW
    )
    assert used.claim(first, now=NOW)
    assert not used.claim(first, now=at(1))
    assert used.claim(second, now=at(1))


def test_session_ttl_beyond_thirty_days_is_refused() -> None:
    """A dashboard session is bounded; the CLI reports this as one line."""
    with pytest.raises(ValueError, match="30 days"):
        auth.create_login_token(KEYS, session_ttl=timedelta(days=31), now=NOW)


def test_foreign_or_tampered_session_is_not_active() -> None:
    """Only a session of our version with an integer expiry counts."""
    assert not auth.session_active({}, now=NOW)
    assert not auth.session_active({"v": 1, "exp": "never"}, now=NOW)
    assert not auth.session_active({"v": 2, "exp": int(at(60).timestamp())}, now=NOW)


# ---- cursors and parameters -------------------------------------------------------------


def test_cursor_round_trips_its_key() -> None:
    """Timestamps, strings and ints come back as they went in."""
    cursor = encode_cursor(NOW, "batch_1")
    assert decode_cursor(cursor, shape=(type(NOW), str)) == [NOW, "batch_1"]
    assert decode_cursor(encode_cursor(42), shape=(int,)) == [42]


def test_a_cursor_with_a_naive_time_is_not_ours() -> None:
    """Cursors we make carry UTC; a naive time is refused as a bad parameter, not a 500."""
    forged = encode_cursor("2026-01-15T12:00:00", "b1")
    with pytest.raises(BadParameter, match="after"):
        decode_cursor(forged, shape=(type(NOW), str))


@pytest.mark.parametrize(
    "raw", ["", "!!!", "bm90IGpzb24", encode_cursor("x"), encode_cursor(1, 2), encode_cursor(True)]
)
def test_malformed_cursor_is_a_bad_parameter(raw: str) -> None:
    """Not base64, not JSON, the wrong arity or the wrong types: one BadParameter."""
    with pytest.raises(BadParameter, match="before"):
        decode_cursor(raw, shape=(int,), name="before")


def test_filters_reject_unknown_values_and_parameters() -> None:
    """A status outside the vocabulary, or an unknown parameter, is named in the error."""
    with pytest.raises(BadParameter, match="status must be one of"):
        choice({"status": "done"}, "status", ("pending", "completed"))
    with pytest.raises(BadParameter, match="unknown parameter offset"):
        only({"offset": "10"}, ("after",))
    assert choice({"status": ""}, "status", ("pending",)) is None


# ---- charts ------------------------------------------------------------------------------


def test_histogram_has_one_bar_per_score_in_a_short_range() -> None:
    """Scores 3..6 give four bars, the missing 4 and 5 as zero."""
    assert charts.score_bins({3: 2, 6: 1}) == [("3", 2), ("4", 0), ("5", 0), ("6", 1)]


def test_histogram_bins_a_wide_range_into_ten_bars() -> None:
    """Scores 0..99 fall into ten ranges that keep every count."""
    bins = charts.score_bins(dict.fromkeys(range(100), 1))
    assert len(bins) == 10
    assert sum(n for _, n in bins) == 100


def test_chart_titles_are_escaped() -> None:
    """A job id with markup in it cannot break out of the SVG."""
    svg = charts.histogram_svg({7: 1}, title='<script>alert("x")</script>')
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert str(svg).count("<rect") == 1


# ---- convergence --------------------------------------------------------------------------


def batch(**kw: Any) -> dict[str, Any]:
    row = {
        "status": "completed",
        "completed_jobs": 2,
        "failed_jobs": 1,
        "due": False,
        "tracked_at": at(-60),
        "last_reconciled_at": at(-30),
    }
    return {**row, **kw}


def run(**kw: Any) -> dict[str, Any]:
    row = {"dry_run": False, "started_at": at(-10), "finished_at": at(-9), "errors": {}}
    return {**row, **kw}


def test_batch_with_every_result_is_converged() -> None:
    """Finished at Nova, every counted result here, nothing due."""
    state = views.convergence(batch(), {"completed": 2, "failed": 1}, run())
    assert state is views.Convergence.CONVERGED


def test_finished_batch_missing_results_has_gaps() -> None:
    """Nova counts three finished jobs, two are here."""
    state = views.convergence(batch(due=True), {"completed": 2}, run())
    assert state is views.Convergence.GAPS


def test_pending_or_unconfirmed_batch_is_due() -> None:
    """Still scoring at Nova, or complete but flagged for reconcile to confirm."""
    assert views.convergence(batch(status="pending"), {}, None) is views.Convergence.DUE
    complete = {"completed": 2, "failed": 1}
    assert views.convergence(batch(due=True), complete, None) is views.Convergence.DUE


def test_batch_the_last_failed_run_did_not_reach_is_unreachable() -> None:
    """The latest run had errors and this batch, tracked before it, was not reconciled."""
    failing = run(errors={"not_found": 1})
    assert (
        views.convergence(batch(due=True), {"completed": 2}, failing)
        is views.Convergence.UNREACHABLE
    )
    reached = batch(due=True, last_reconciled_at=at(-9))
    assert views.convergence(reached, {"completed": 2}, failing) is views.Convergence.GAPS


def test_batch_reconcile_gave_up_on_is_unreachable() -> None:
    """Nova answered 404 for it run after run: unreachable, whatever the counts say."""
    gave_up = batch(status="unreachable", due=False)
    state = views.convergence(gave_up, {"completed": 2, "failed": 1}, run())
    assert state is views.Convergence.UNREACHABLE


# ---- numbers and bodies ------------------------------------------------------------------


def test_percentile_is_a_measured_value() -> None:
    """Nearest rank: p50 of 1..4 is 2, p95 is 4; nothing measured is None."""
    assert views.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert views.percentile([4.0, 1.0, 3.0, 2.0], 0.95) == 4.0
    assert views.percentile([], 0.5) is None


def test_json_body_is_pretty_printed() -> None:
    """A JSON body is indented for reading and marked parsed."""
    body = views.pretty_body(b'{"event":"test","n":[1,2]}')
    assert body is not None
    assert body.parsed
    assert json.loads(body.text) == {"event": "test", "n": [1, 2]}
    assert "\n  " in body.text


def test_unparsable_body_is_shown_as_received_with_controls_neutralised() -> None:
    """Broken JSON, deep nesting and NUL bytes: shown as text, never an exception."""
    body = views.pretty_body(b'{"a": \x00 broken')
    assert body is not None
    assert not body.parsed
    assert body.text == '{"a": \ufffd broken'
    deep = views.pretty_body(b"[" * 100_000)
    assert deep is not None
    assert not deep.parsed


def test_lone_surrogates_and_controls_become_replacement_characters() -> None:
    """A body holding "\\ud800" parses, but no UTF-8 page can carry the result: U+FFFD."""
    body = views.pretty_body(b'{"a": "\\ud800\\u0007"}')
    assert body is not None
    assert body.parsed
    assert '"a": "\ufffd\\u0007"' in body.text  # json.dumps escapes the control itself
    body.text.encode("utf-8")
    assert views.printable("line\n\ttab\x1b[31m") == "line\n\ttab\ufffd[31m"


def test_a_body_prefix_is_shown_as_received_without_judging_it() -> None:
    """complete=False: the start of a long body, truncated, neither JSON nor not."""
    body = views.pretty_body(b'{"a": [1, 2', complete=False)
    assert body == views.Body('{"a": [1, 2', parsed=None, truncated=True)


def test_long_body_is_truncated_on_lists() -> None:
    """The list page shows the first characters and says so."""
    body = views.pretty_body(b'"' + b"x" * 100 + b'"', limit=10)
    assert body is not None
    assert body.truncated
    assert len(body.text) == 10


# ---- templates -----------------------------------------------------------------------------


def test_templates_escape_stored_text() -> None:
    """Autoescape: a verdict with a script tag renders as text."""
    html = render(
        "error.html",
        {"signed_in": False, "title": "t", "message": "<script>alert(1)</script>"},
    )
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
