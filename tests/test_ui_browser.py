"""The dashboard in a real browser: headless Chromium (Debian's package, driven by Playwright)
against a real uvicorn receiver fed by a real ``nova-sink fake-nova`` process.

The journey: sign in through a link printed by ``nova-sink token create --ui``, see a batch
with gaps (fake Nova dropped some webhooks), run ``nova-sink reconcile`` and see it converge,
open the batch and a result, see a ``<script>`` payload rendered as text, lay the overview
out on a phone, refuse reused and expired links, sign out. Screenshots land in a temporary
directory whose path is printed. The tests skip, saying why, only when Chromium cannot be
launched (``.ci/run`` installs it with ``apt-get install -y chromium`` when it is missing).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.ui import auth
from tests.cli_helpers import Ran, run_cli_subprocess, start_cli_process
from tests.servers import (
    SECRET,
    Server,
    free_port,
    migrated_database,
    query,
    running_server,
    score_completed,
    server_env,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
KEY = "browser-test-key-0123456789abcdef"
API_KEY = "sk_test_browser"
TENANT = "acme-corp"
# With this seed fake Nova drops 2 of the 6 score webhooks and delivers batch.completed,
# so the batch is finished at Nova with results missing here: "gaps".
FAKE_SEED = 3
DROP = 0.5
APPLICATIONS = 6
XSS = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
DEADLINE = 30.0


@dataclass(frozen=True)
class Stack:
    receiver: Server
    nova_url: str
    workdir: Path
    shots: Path

    def cli(self, *args: str) -> Ran:
        env = server_env(
            self.receiver.database_url,
            SINK_SECRET_KEY=KEY,
            NOVA_API_URL=self.nova_url,
            NOVA_API_KEY=API_KEY,
            NOVA_TENANT_ID=TENANT,
        )
        return run_cli_subprocess(self.workdir, *args, env=env, secrets=[KEY, API_KEY])

    def login_link(self) -> str:
        made = self.cli("token", "create", "--ui", "--ttl", "8h", "--url", self.receiver.base_url)
        assert made.code == 0, made.err
        return made.out.strip()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {DEADLINE} s: {what}")


@contextmanager
def fake_nova(workdir: Path, deliver_to: str) -> Iterator[str]:
    """``nova-sink fake-nova`` on a free port; its process group is killed afterwards."""
    port = free_port()
    args = [
        "fake-nova",
        "--port",
        str(port),
        "--deliver-to",
        deliver_to,
        "--secret",
        SECRET,
        # The construction the test's own deliveries (servers.score_completed) use: the
        # receiver pins each secret to the first construction it verifies.
        "--construction",
        "id.timestamp.body",
        "--score-delay",
        "0",
        "--seed",
        str(FAKE_SEED),
        "--drop",
        str(DROP),
    ]
    log_path = workdir / f"fake-nova-{port}.log"
    proc = start_cli_process(
        workdir, *args, env=server_env("sqlite:///unused.db"), log_path=log_path
    )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def answering() -> bool:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            with suppress(httpx.TransportError):
                return httpx.get(base_url + "/_fake/stats", timeout=1).status_code == 200
            return False

        wait_for(answering, "fake-nova answers")
        yield base_url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def submit_batch(nova_url: str) -> str:
    body = {
        "jobDescription": "Backend engineer: Python, PostgreSQL, webhooks.",
        "applications": [
            {"applicationId": f"app-{n}", "resume": {"type": "text", "content": f"CV {n}"}}
            for n in range(APPLICATIONS)
        ],
    }
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Tenant-Id": TENANT}
    response = httpx.post(
        f"{nova_url}/v1/jobs/job-browser/scoring-batches", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 202, response.text
    batch_id: str = response.json()["batch"]["id"]
    return batch_id


@pytest.fixture(name="stack", scope="module")
def fixture_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Receiver (dashboard on) and fake Nova, with one batch delivered with gaps."""
    workdir = tmp_path_factory.mktemp("browser")
    # pytest's own temporary tree: kept for a look after the run, rotated after three runs.
    shots = tmp_path_factory.mktemp("screenshots")
    url = migrated_database(workdir / "sink.db")
    env = server_env(url, SINK_SECRET_KEY=KEY)
    with (
        running_server(workdir, url, env=env) as receiver,
        fake_nova(workdir, receiver.webhook_url) as nova_url,
    ):
        batch_id = submit_batch(nova_url)

        def batch_completed_arrived() -> bool:
            rows = query(url, "SELECT status FROM batch WHERE batch_id = :b", b=batch_id)
            return bool(rows) and rows[0]["status"] != "pending"

        wait_for(batch_completed_arrived, "batch.completed stored")
        yield Stack(receiver, nova_url, workdir, shots)


@pytest.fixture(name="browser", scope="module")
def fixture_browser() -> Iterator[Any]:
    """Headless Debian Chromium; a skip naming the reason when it cannot be launched."""
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Error as exc:
            reason = str(exc).strip().splitlines()[0]
            pytest.skip(
                f"Chromium cannot be launched from {CHROMIUM} ({reason}); "
                "install it with `apt-get install -y chromium` (.ci/run does)"
            )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="page")
def fixture_page(browser: Any, stack: Stack, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """A fresh browser context (no cookies) at laptop size; prints where screenshots go."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    with capsys.disabled():
        print(f"\nscreenshots: {stack.shots}")
    try:
        yield page
    finally:
        context.close()


def shot(page: Any, stack: Stack, name: str) -> None:
    page.screenshot(path=str(stack.shots / f"{name}.png"), full_page=True)


def batch_state(page: Any) -> str:
    state: str = page.locator("#batches tbody tr .badge").first.inner_text()
    return state


def test_sign_in_watch_a_batch_converge_open_a_result_and_sign_out(page: Any, stack: Stack) -> None:
    """The whole journey through the link printed by the CLI."""
    page.goto(stack.login_link())
    page.wait_for_url(f"{stack.receiver.base_url}/ui/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "nova_sink_ui")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert batch_state(page) == "gaps"
    shot(page, stack, "1-overview-gaps")

    reconciled = stack.cli("reconcile", "--json")
    assert reconciled.code == 0, reconciled.out + reconciled.err
    page.reload()
    assert batch_state(page) == "converged"
    assert page.locator("#runs tbody tr").count() == 1
    shot(page, stack, "2-overview-converged")

    page.locator("#batches tbody tr a").first.click()
    page.wait_for_url("**/ui/batches/*")
    assert page.locator("#state").inner_text() == "converged"
    assert page.locator("#results tbody tr").count() == APPLICATIONS
    assert page.locator("svg.chart rect.bar").count() >= 1
    shot(page, stack, "3-batch")

    page.locator("#results tr.status-completed a").first.click()
    page.wait_for_url("**/ui/results/*")
    assert page.get_by_role("heading", name="Strengths").is_visible()
    assert page.get_by_role("heading", name="Interview focus").is_visible()
    shot(page, stack, "4-result")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert "You are signed out" in page.content()
    page.goto(f"{stack.receiver.base_url}/ui/")
    assert "nova-sink token create --ui" in page.locator("main").inner_text()
    shot(page, stack, "5-signed-out")


def test_script_in_a_stored_verdict_is_shown_as_text(page: Any, stack: Stack) -> None:
    """A signed delivery whose verdict is markup: the page shows the characters, runs nothing."""
    # Signed like fake Nova's deliveries (id.timestamp.body): the receiver pinned that one.
    delivery = score_completed(verdict=XSS, now=datetime.now(UTC))
    response = httpx.post(
        stack.receiver.webhook_url, content=delivery.body, headers=delivery.headers, timeout=10
    )
    assert response.json() == {"status": "applied"}
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page.goto(stack.login_link())
    page.wait_for_url(f"{stack.receiver.base_url}/ui/")

    page.goto(f"{stack.receiver.base_url}/ui/results/{delivery.scoring_job_id}")
    assert page.locator("#verdict").inner_text() == XSS
    assert page.locator("main script, main img").count() == 0
    assert "pwned" not in page.title()
    page.goto(f"{stack.receiver.base_url}/ui/deliveries?scoring_job={delivery.scoring_job_id}")
    page.get_by_text("Body", exact=True).first.click()
    assert "<script>document.title" in page.locator("pre.body").first.inner_text()
    assert page.locator("main script, main img").count() == 0
    assert "pwned" not in page.title()
    assert dialogs == []
    shot(page, stack, "6-xss-as-text")


def test_reused_and_expired_links_are_refused(page: Any, stack: Stack) -> None:
    """A link works once; a link older than 15 minutes never."""
    link = stack.login_link()
    page.goto(link)
    page.wait_for_url(f"{stack.receiver.base_url}/ui/")
    page.context.clear_cookies()
    page.goto(link)
    assert "used already" in page.locator("#reason").inner_text()

    old = datetime.now(UTC) - auth.LINK_TTL - timedelta(seconds=1)
    token = auth.create_login_token([KEY], session_ttl=timedelta(hours=8), now=old)
    page.goto(auth.login_url(stack.receiver.base_url, token))
    assert "expired" in page.locator("#reason").inner_text()
    shot(page, stack, "7-expired-link")
    page.goto(f"{stack.receiver.base_url}/ui/")
    assert "Sign in to the dashboard" in page.locator("h1").inner_text()


def test_overview_fits_a_phone_screen(browser: Any, stack: Stack) -> None:
    """At 390 px wide no page overflows sideways: wide tables scroll inside their cards."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(stack.login_link())
        page.wait_for_url(f"{stack.receiver.base_url}/ui/")
        page.locator("#batches tbody tr a").first.click()
        page.wait_for_url("**/ui/batches/*")
        batch_url = page.url
        page.locator("#results tbody tr a").first.click()
        page.wait_for_url("**/ui/results/*")
        for url in (
            f"{stack.receiver.base_url}/ui/",
            f"{stack.receiver.base_url}/ui/deliveries",
            batch_url,
            page.url,
        ):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (url, width)
        shot(page, stack, "9-phone-result")
        page.goto(stack.receiver.base_url + "/ui/")
        shot(page, stack, "8-phone-overview")
    finally:
        context.close()
