"""The dashboard through the real app (TestClient): sign-in, headers, pages, escaping, paging."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.settings import Settings
from receiver.ui import auth
from storage.db import transaction
from tests.cli_inproc import InProcessCli
from tests.factories import NOW, SECRET, at, batch_state, encode, score_completed_payload, signed

KEY = "ui-app-test-key-0123456789abcdef"
XSS = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def login_link(*, now: Any = NOW, key: str = KEY) -> str:
    token = auth.create_login_token([key], session_ttl=timedelta(hours=8), now=now)
    return f"/ui/login?token={token}"


@pytest.fixture(name="ui")
def fixture_ui(make_app: Callable[..., Starlette]) -> Iterator[TestClient]:
    """A started receiver with the dashboard on (SINK_SECRET_KEY set), not signed in."""
    with TestClient(make_app(sink_secret_key=KEY)) as client:
        yield client


@pytest.fixture(name="signed_in")
def fixture_signed_in(ui: TestClient) -> TestClient:
    """The same client after following a fresh login link."""
    assert ui.get(login_link()).status_code == 200
    return ui


def deliver(client: TestClient, payload: dict[str, Any]) -> str:
    body = encode(payload)
    response = client.post("/webhooks/nova", content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def test_dashboard_is_off_without_a_secret_key(make_app: Callable[..., Starlette]) -> None:
    """No SINK_SECRET_KEY: /ui answers 404 like any unknown path."""
    with TestClient(make_app()) as client:
        assert client.get("/ui/").status_code == 404
        assert client.get(login_link()).status_code == 404


def test_without_a_session_a_page_explains_how_to_get_a_link(ui: TestClient) -> None:
    """401 with the command to run, and no data."""
    response = ui.get("/ui/")
    assert response.status_code == 401
    assert "nova-sink token create --ui" in response.text
    assert "Batches" not in response.text


def test_login_link_sets_a_strict_http_only_session_cookie(ui: TestClient) -> None:
    """Following the link signs in: HttpOnly, SameSite=Strict, scoped to /ui."""
    response = ui.get(login_link())
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("nova_sink_ui=")
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert "path=/ui" in cookie.lower()
    assert "secure" not in cookie.lower()
    assert ui.get("/ui/").status_code == 200


def test_https_only_setting_marks_the_cookie_secure(make_app: Callable[..., Starlette]) -> None:
    """SINK_UI_HTTPS_ONLY=true: the browser sends the session over HTTPS only."""
    with TestClient(make_app(sink_secret_key=KEY, sink_ui_https_only=True)) as client:
        cookie = client.get(login_link()).headers["set-cookie"]
    assert "secure" in cookie.lower()


def test_a_login_link_works_once(ui: TestClient) -> None:
    """The second use of the same link is refused, even by a fresh browser."""
    link = login_link()
    assert ui.get(link).status_code == 200
    ui.cookies.clear()
    again = ui.get(link)
    assert again.status_code == 401
    assert "used already" in again.text
    assert "set-cookie" not in again.headers


def test_an_expired_link_is_refused(ui: TestClient) -> None:
    """A link made more than 15 minutes ago signs nobody in."""
    response = ui.get(login_link(now=NOW - auth.LINK_TTL))
    assert response.status_code == 401
    assert "expired" in response.text
    assert ui.get("/ui/").status_code == 401


def test_a_link_signed_with_another_key_is_refused(ui: TestClient) -> None:
    """Only SINK_SECRET_KEY makes links for this dashboard."""
    response = ui.get(login_link(key="some-other-key-0123456789"))
    assert response.status_code == 401
    assert "not valid" in response.text


def test_logout_ends_the_session(signed_in: TestClient) -> None:
    """After signing out, pages answer with the sign-in explanation again."""
    response = signed_in.post("/ui/logout")
    assert response.status_code == 200
    assert "signed out" in response.text
    assert signed_in.get("/ui/").status_code == 401


def test_every_dashboard_response_is_no_store(signed_in: TestClient) -> None:
    """Pages, errors, the stylesheet and refusals all carry Cache-Control: no-store."""
    for path in (
        "/ui/",
        "/ui/deliveries",
        "/ui/batches/nope",
        "/ui/?after=bad",
        "/ui/static/dashboard.css",
    ):
        response = signed_in.get(path)
        assert response.headers["cache-control"] == "no-store", path
        assert "default-src 'none'" in response.headers["content-security-policy"]
    signed_in.cookies.clear()
    assert signed_in.get("/ui/").headers["cache-control"] == "no-store"


def test_ui_without_slash_redirects_to_a_relative_location(ui: TestClient) -> None:
    """/ui → /ui/, never naming the Host the request claimed."""
    response = ui.get("/ui", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/ui/"


def test_dashboard_is_read_only(signed_in: TestClient) -> None:
    """Pages answer GET only."""
    assert signed_in.post("/ui/").status_code == 405


def test_stored_script_renders_as_text_on_result_and_deliveries(signed_in: TestClient) -> None:
    """A verdict and a strength with markup show escaped on every page that shows them."""
    payload = score_completed_payload("sj_xss", verdict=XSS, strengths=(XSS,))
    assert deliver(signed_in, payload) == "applied"
    for path in ("/ui/results/sj_xss", "/ui/deliveries"):
        html = signed_in.get(path).text
        assert "<script>document" not in html, path
        assert "<img src=x" not in html, path
        assert "&lt;script&gt;document.title=" in html, path


def test_result_page_shows_assessment_and_delivery_history(signed_in: TestClient) -> None:
    """Strengths, concerns, interview focus and each delivery of the scoring job."""
    deliver(signed_in, score_completed_payload("sj_1", interview_focus=("Ask about Kafka",)))
    deliver(signed_in, score_completed_payload("sj_1", interview_focus=("Ask about Kafka",)))
    html = signed_in.get("/ui/results/sj_1").text
    assert "Distributed systems" in html
    assert "No on-call experience" in html
    assert "Ask about Kafka" in html
    assert html.count('class="outcome-') == 1  # one inbox row, two attempts
    assert '<td class="num">2</td>' in html


def test_result_page_shows_the_error_of_a_failure(signed_in: TestClient) -> None:
    """A failed scoring job shows its code and message."""
    from tests.factories import score_failed_payload

    deliver(signed_in, score_failed_payload("sj_f", message="Resume <b>404</b>"))
    html = signed_in.get("/ui/results/sj_f").text
    assert "RESUME_FETCH_FAILED" in html
    assert "Resume &lt;b&gt;404&lt;/b&gt;" in html


def test_unparsed_delivery_is_highlighted_with_its_raw_body(signed_in: TestClient) -> None:
    """A verified body that does not parse is marked and shown as received."""
    body = b'{"event": "score.completed", "scoringJobId": '
    response = signed_in.post("/webhooks/nova", content=body, headers=signed(body))
    assert response.json() == {"status": "stored-unparsed"}
    html = signed_in.get("/ui/deliveries?outcome=stored-unparsed").text
    assert 'class="card delivery unparsed"' in html
    assert "unparsed-body" in html
    assert "&#34;scoringJobId&#34;: </code>" in html or '"scoringJobId": </code>' in html


def test_body_with_a_lone_surrogate_escape_renders(signed_in: TestClient) -> None:
    """A signed body with "\\ud800" in it: list and detail pages answer 200, not 500."""
    body = b'{"event": "future.event", "note": "\\ud800"}'
    response = signed_in.post("/webhooks/nova", content=body, headers=signed(body))
    assert response.json() == {"status": "stored-unparsed"}
    listing = signed_in.get("/ui/deliveries")
    assert listing.status_code == 200
    assert "\ufffd" in listing.text
    delivery_id = re.search(r'href="/ui/deliveries/(\d+)"', listing.text)
    assert delivery_id is not None
    assert signed_in.get(f"/ui/deliveries/{delivery_id.group(1)}").status_code == 200


def test_long_body_shows_its_start_on_the_list_and_whole_on_its_page(
    signed_in: TestClient,
) -> None:
    """Over 16 KiB: the list shows a prefix and links to the delivery's own page."""
    note = "n" * 20_000
    payload = score_completed_payload("sj_long", verdict="ok", note=note)
    deliver(signed_in, payload)
    listing = signed_in.get("/ui/deliveries").text
    assert "Truncated" in listing
    assert note not in listing
    match = re.search(r'href="/ui/deliveries/(\d+)"', listing)
    assert match is not None
    assert note in signed_in.get(f"/ui/deliveries/{match.group(1)}").text


def test_deliveries_page_pages_with_a_cursor_and_keeps_filters(
    signed_in: TestClient,
) -> None:
    """30 deliveries: 25 on the first page, the other 5 behind the next link, filter kept."""
    for n in range(30):
        deliver(signed_in, score_completed_payload(f"sj_{n:02d}"))
    first = signed_in.get("/ui/deliveries?event=score.completed").text
    assert first.count('<article class="card delivery') == 25
    match = re.search(r'href="/ui/deliveries(\?[^"]+)" rel="next"', first)
    assert match is not None
    next_query = match.group(1).replace("&amp;", "&")
    assert "event=score.completed" in next_query
    second = signed_in.get("/ui/deliveries" + next_query).text
    assert second.count('<article class="card delivery') == 5
    assert 'rel="next"' not in second


def test_bad_parameters_answer_400_naming_them(signed_in: TestClient) -> None:
    """A forged cursor, an unknown filter value or parameter: 400 with the name."""
    assert "after is not a cursor" in signed_in.get("/ui/?after=zzz").text
    response = signed_in.get("/ui/deliveries?outcome=great")
    assert response.status_code == 400
    assert "outcome must be one of" in response.text
    assert signed_in.get("/ui/?offset=50").status_code == 400


def test_unknown_ids_answer_404(signed_in: TestClient) -> None:
    """Batch, result and delivery pages for ids that are not stored."""
    for path in ("/ui/batches/nope", "/ui/results/nope", "/ui/deliveries/999", "/ui/deliveries/x"):
        assert signed_in.get(path).status_code == 404, path


def test_each_page_has_a_plain_text_title_and_one_verified_section(signed_in: TestClient) -> None:
    """The <title> holds only text (no page markup leaked into it), and no section repeats."""
    import re

    page = signed_in.get("/ui/").text
    (title,) = re.findall(r"<title>(.*?)</title>", page, flags=re.S)
    assert title == "Overview · nova-sink"
    assert page.count('id="verified"') == 1


def test_overview_shows_batch_convergence_and_verification(
    signed_in: TestClient, sqlite_engine: Engine
) -> None:
    """A finished batch with a missing result shows gaps; the secret that verified shows."""
    with transaction(sqlite_engine) as store:
        store.update_batch(
            batch_state("batch_1", status="completed", completed_jobs=2, failed_jobs=0),
            now=at(-5),
            due=True,
        )
    deliver(signed_in, score_completed_payload("sj_1", batchId="batch_1"))
    with transaction(sqlite_engine) as store:
        store.conn.exec_driver_sql("UPDATE scoring_job SET batch_id = 'batch_1'")
    html = signed_in.get("/ui/").text
    row = re.search(r'<tr data-batch="batch_1">.*?</tr>', html, re.S)
    assert row is not None
    assert "state-gaps" in row.group(0)
    assert "1/0/0" in row.group(0)  # stored here: 1 completed, 0 failed, 0 pending
    assert "secret #1, newest" in html
    assert "x-webhook-signature/body" in html


def test_overview_and_batch_page_judge_a_batch_by_the_same_last_run(
    signed_in: TestClient, sqlite_engine: Engine
) -> None:
    """A dry run after a failing run changes nothing: both pages say unreachable."""
    with transaction(sqlite_engine) as store:
        store.track_batch(batch_state("batch_1"), now=at(-60))
        failing = store.start_run(now=at(-30), dry_run=False)
        store.finish_run(failing, now=at(-29), summary={"errors": {"http": 1}})
        dry = store.start_run(now=at(-10), dry_run=True)
        store.finish_run(dry, now=at(-9), summary={"errors": {}})
    overview = signed_in.get("/ui/").text
    row = re.search(r'<tr data-batch="batch_1">.*?</tr>', overview, re.S)
    assert row is not None
    assert "state-unreachable" in row.group(0)
    page = signed_in.get("/ui/batches/batch_1").text
    assert 'id="state">unreachable<' in page


def test_batch_page_lists_jobs_rejections_and_a_score_chart(
    signed_in: TestClient, sqlite_engine: Engine
) -> None:
    """Each scoring job with score, status and source; rejections; an SVG bar per score."""
    from storage.records import RejectedApplication
    from tests.factories import completed

    with transaction(sqlite_engine) as store:
        store.track_batch(batch_state("batch_1"), now=NOW)
        for n, score in enumerate((3, 5, 5)):
            store.apply_result(
                completed(f"sj_{n}", score=score, batch_id="batch_1"), source="reconcile", now=NOW
            )
        store.record_rejected(
            [RejectedApplication("batch_1", "app-bad", "INVALID_RESUME", "corrupt pdf", None)],
            now=NOW,
        )
    html = signed_in.get("/ui/batches/batch_1").text
    assert html.count('<tr class="status-completed">') == 3
    assert "reconcile" in html
    assert "app-bad" in html
    assert "INVALID_RESUME" in html
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S)
    assert svg is not None
    assert svg.group(0).count("<rect") == 3  # scores 3, 4 (empty), 5
    assert "completed" in signed_in.get("/ui/batches/batch_1?status=completed").text


@pytest.fixture(name="cli")
def fixture_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> InProcessCli:
    """The CLI in process with only SINK_SECRET_KEY set (which must never be printed)."""
    return InProcessCli(capsys, monkeypatch, tmp_path, {"SINK_SECRET_KEY": KEY}, [KEY])


def test_cli_prints_a_login_link_that_signs_in(sqlite_engine: Engine, cli: InProcessCli) -> None:
    """`nova-sink token create --ui` prints one URL on stdout; following it signs in."""
    proc = cli("token", "create", "--ui", "--ttl", "8h", "--url", "http://testserver")
    assert proc.code == 0, proc.err
    url = proc.out.strip()
    assert url.startswith("http://testserver/ui/login?token=")
    assert "one-time link" in proc.err
    # The CLI stamps the link with the wall clock: an app on the wall clock accepts it.
    settings = Settings(
        _env_file=None,
        nova_webhook_secrets=SECRET,
        database_url=str(sqlite_engine.url),
        sink_secret_key=KEY,
    )
    with TestClient(create_app(settings, engine=sqlite_engine)) as client:
        assert client.get(url.removeprefix("http://testserver")).status_code == 200
        assert client.get("/ui/").status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ttl", "31d"), "--ttl: the session ttl must be positive and at most 30 days"),
        (("--url", "ftp://sink"), "--url must start with http:// or https://"),
    ],
)
def test_cli_login_link_rejects_bad_options_with_one_line(
    cli: InProcessCli, args: tuple[str, ...], message: str
) -> None:
    """A session over 30 days or a URL that is not http(s): one line, exit 2, no link."""
    proc = cli("token", "create", "--ui", *args)
    assert proc.code == 2
    assert proc.err.strip() == f"nova-sink: error: {message}"
    assert proc.out == ""


def test_cli_login_link_needs_the_secret_key(cli: InProcessCli) -> None:
    """Without SINK_SECRET_KEY: one configuration line, exit 2."""
    proc = cli("token", "create", "--ui", SINK_SECRET_KEY="")
    assert proc.code == 2
    assert "SINK_SECRET_KEY" in proc.error_line
    assert proc.out == ""


def test_sign_ins_are_logged_without_token_or_key(
    make_app: Callable[..., Starlette],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sign-in, refusal and sign-out each log a line; neither the link's token nor the key."""
    import json

    import structlog

    import receiver.ui.routes
    from receiver.logs import configure_logging

    previous = structlog.get_config()
    try:
        configure_logging("json", "debug")
        structlog.configure(cache_logger_on_first_use=False)
        monkeypatch.setattr(receiver.ui.routes, "log", structlog.get_logger("nova_sink.ui"))
        link = login_link()
        with TestClient(make_app(sink_secret_key=KEY)) as client:
            client.get(link)
            client.get(link)
            client.post("/ui/logout")
    finally:
        structlog.configure(**previous)
    err = capsys.readouterr().err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events.count("ui_signed_in") == 1
    assert events.count("ui_sign_in_refused") == 1
    assert events.count("ui_signed_out") == 1
    assert link.split("token=")[1] not in err
    assert KEY not in err


def test_every_page_renders_on_sqlite_and_postgresql(
    make_app: Callable[..., Starlette], engine: Engine
) -> None:
    """Overview (second page too), batch, result, deliveries and a delivery on both databases."""
    from tests.factories import completed

    with transaction(engine) as store:
        for n in range(30):
            store.track_batch(batch_state(f"batch_{n:02d}"), now=at(n))
        store.apply_result(completed("sj_1", batch_id="batch_00"), source="webhook", now=NOW)
        store.start_run(now=at(-1), dry_run=False)
    with TestClient(make_app(engine=engine, sink_secret_key=KEY)) as client:
        client.get(login_link())
        deliver(client, score_completed_payload("sj_2"))
        overview = client.get("/ui/")
        assert overview.status_code == 200
        match = re.search(r'href="/ui/(\?after=[^"]+)" rel="next"', overview.text)
        assert match is not None
        second = client.get("/ui/" + match.group(1))
        assert second.status_code == 200
        assert second.text.count("<tr data-batch=") == 5
        for path in (
            "/ui/batches/batch_00",
            "/ui/results/sj_1",
            "/ui/results/sj_2",
            "/ui/deliveries",
        ):
            assert client.get(path).status_code == 200, path
        delivery = re.search(r'href="/ui/deliveries/(\d+)"', client.get("/ui/deliveries").text)
        assert delivery is not None
        assert client.get(f"/ui/deliveries/{delivery.group(1)}").status_code == 200
