"""Operator commands in process: erase and purge, untrack, replay, stats, and stored text
shown as plain text on a terminal and in pipes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from receiver.app import create_app
from receiver.cli.output import print_table
from receiver.serving import bound_socket, free_port, port_of, serving
from receiver.settings import Settings
from receiver.signatures import fingerprint
from storage.db import make_engine, transaction
from storage.records import BatchState, InboundDelivery, ScoringResult
from tests.cli_inproc import WEBHOOK_SECRET, InProcessCli, default_env
from tests.servers import migrated_database

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(name="engine")
def fixture_engine(tmp_path: Path) -> Engine:
    return make_engine(migrated_database(tmp_path / "sink.db"))


@pytest.fixture(name="cli")
def fixture_cli(
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> InProcessCli:
    url = engine.url.render_as_string(hide_password=False)
    return InProcessCli(capsys, monkeypatch, tmp_path, default_env(url))


def deliver(
    engine: Engine,
    key: str,
    body: bytes,
    *,
    outcome: str,
    event: str | None = None,
    scoring_job_id: str | None = None,
    now: datetime = T0,
) -> None:
    delivery = InboundDelivery(
        delivery_key=key,
        webhook_id=key,
        event=event,
        body=body,
        signature_scheme="x-webhook-signature/body",
        secret_fingerprint=fingerprint(WEBHOOK_SECRET),
        scoring_job_id=scoring_job_id,
    )
    with transaction(engine) as store:
        store.record_delivery(delivery, outcome=outcome, now=now)


def score_body(scoring_job_id: str, application_id: str, **extra: Any) -> bytes:
    payload = {
        "event": "score.completed",
        "tenantId": "acme-corp",
        "scoringJobId": scoring_job_id,
        "jobId": "job-1",
        "applicationId": application_id,
        "result": {
            "score": 6,
            "assessment": {
                "verdict": "Solid",
                "strengths": [],
                "concerns": [],
                "interviewFocus": [],
            },
        },
        "completedAt": "2026-03-01T08:00:00Z",
        **extra,
    }
    return json.dumps(payload).encode()


def keys(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT delivery_key FROM delivery")).scalars())


# ---- item 6: erase ---------------------------------------------------------------------------


def test_erase_matches_the_application_id_field_not_any_string_equal_to_it(
    cli: InProcessCli, engine: Engine
) -> None:
    """``erase --application-id a`` spares unparsed bodies where "a" is some other value."""
    deliver(engine, "other-field", b'{"event": "x.new", "note": "a"}', outcome="stored-unparsed")
    deliver(
        engine,
        "nested",
        b'{"event": "x.new", "data": {"applicationId": "a"}}',
        outcome="stored-unparsed",
    )
    deliver(engine, "not-json", b'{"applicationId": "a", broken', outcome="stored-unparsed")
    deliver(
        engine, "other-app", b'{"event": "x.new", "applicationId": "ab"}', outcome="stored-unparsed"
    )

    ran = cli("erase", "--application-id", "a", "--yes", "--json")

    assert ran.json()["delivery"] == 2
    assert keys(engine) == {"other-field", "other-app"}


def test_erase_dry_run_counts_and_changes_nothing(cli: InProcessCli, engine: Engine) -> None:
    """--dry-run reports what would go, removes nothing and leaves no tombstone."""
    with transaction(engine) as store:
        result = ScoringResult("sj_1", "completed", application_id="app-1", completed_at=T0)
        store.apply_result(result, source="webhook", now=T0)
    deliver(engine, "d1", score_body("sj_1", "app-1"), outcome="applied", scoring_job_id="sj_1")

    ran = cli("erase", "--application-id", "app-1", "--dry-run", "--json")

    assert ran.json() == {
        "delivery": 1,
        "scoring_job": 1,
        "rejected_application": 0,
        "dry_run": True,
    }
    with transaction(engine, write=False) as store:
        assert store.get_result("sj_1") is not None
        assert store.erased_application_ids(["app-1"]) == set()
    assert keys(engine) == {"d1"}


def test_erase_keeps_a_tombstone_of_the_id_only(cli: InProcessCli, engine: Engine) -> None:
    """After erase the id is remembered (and counted in stats); nothing else about it stays."""
    cli("erase", "--application-id", "app-9", "--yes")

    with transaction(engine, write=False) as store:
        assert store.erased_application_ids(["app-9", "app-8"]) == {"app-9"}
    assert cli("stats", "--json").json()["erased_applications"] == 1


@pytest.mark.parametrize(
    ("args", "question", "result"),
    [
        (
            ("erase", "--application-id", "app-1"),
            "Erase every record of application app-1? [y/N]: ",
            "erased application app-1 (delivery: 0, scoring_job: 0, rejected_application: 0)\n",
        ),
        (
            ("purge", "--older-than", "90d"),
            "Drop raw delivery bodies older than 90d? [y/N]: ",
            "purged 0 raw bodies older than 90d\n",
        ),
    ],
    ids=["erase", "purge"],
)
def test_a_confirmation_prompt_leaves_stdout_to_the_result(
    cli: InProcessCli, args: tuple[str, ...], question: str, result: str
) -> None:
    """Asked without --yes and answered y: the question is on stderr, stdout holds exactly
    the result (no stray character of the prompt)."""
    ran = cli(*args, input="y\n")

    assert (ran.code, ran.out, ran.err) == (0, result, question)


def test_a_refused_erase_prints_nothing_on_stdout(cli: InProcessCli) -> None:
    """Answered n: stdout stays empty; the refusal is the one error line after the question."""
    ran = cli("erase", "--application-id", "app-1", input="n\n")

    assert (ran.code, ran.out) == (1, "")
    assert ran.err.endswith("[y/N]: nova-sink: error: nothing erased\n")


def test_an_unclear_answer_to_erase_is_asked_again(cli: InProcessCli) -> None:
    """Anything but y/yes/n/no/nothing asks once more; the second answer decides."""
    ran = cli("erase", "--application-id", "app-1", input="maybe\ny\n")

    assert ran.code == 0
    assert ran.out.startswith("erased application app-1")
    assert ran.err.count("[y/N]: ") == 2
    assert "Error: invalid input" in ran.err


# ---- item 6: purge ---------------------------------------------------------------------------


def old_and_new(engine: Engine) -> None:
    now = datetime.now(UTC)
    deliver(engine, "old-applied", b"{}", outcome="applied", now=now - timedelta(days=100))
    deliver(engine, "old-unparsed", b"??", outcome="stored-unparsed", now=now - timedelta(days=100))
    deliver(engine, "new", b"{}", outcome="applied", now=now)


def bodies(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT delivery_key, raw_body IS NOT NULL FROM delivery"))
        return {key: bool(kept) for key, kept in rows}


def test_purge_keeps_the_only_copy_of_unparsed_bodies_unless_told(
    cli: InProcessCli, engine: Engine
) -> None:
    """Bodies stored unparsed survive a purge; --include-unparsed drops them too."""
    old_and_new(engine)

    first = cli("purge", "--older-than", "90d", "--yes", "--json")
    kept = bodies(engine)
    second = cli("purge", "--older-than", "90d", "--yes", "--include-unparsed", "--json")

    assert (first.json()["purged"], second.json()["purged"]) == (1, 1)
    assert kept == {"old-applied": False, "old-unparsed": True, "new": True}
    assert bodies(engine) == {"old-applied": False, "old-unparsed": False, "new": True}


def test_purge_drops_an_unparsed_body_once_a_replay_parsed_it(
    cli: InProcessCli, engine: Engine
) -> None:
    """After a replay made a result of it, the body is no longer the only copy."""
    old = datetime.now(UTC) - timedelta(days=100)
    deliver(engine, "parsed-later", score_body("sj_1", "app-1"), outcome="stored-unparsed", now=old)
    deliver(engine, "still-unknown", b"??", outcome="stored-unparsed", now=old)
    cli("deliveries", "replay", "--all-unparsed")

    ran = cli("purge", "--older-than", "90d", "--yes", "--json")

    assert ran.json()["purged"] == 1
    assert bodies(engine) == {"parsed-later": False, "still-unknown": True}


def test_purge_asks_first_and_a_no_purges_nothing(cli: InProcessCli, engine: Engine) -> None:
    """Without --yes purge asks on stderr; answering no changes nothing and exits 1."""
    old_and_new(engine)

    ran = cli("purge", "--older-than", "90d", input="n\n")

    assert ran.code == 1
    assert "Drop raw delivery bodies older than 90d?" in ran.err
    assert all(bodies(engine).values())


def test_purge_dry_run_counts_and_drops_nothing(cli: InProcessCli, engine: Engine) -> None:
    """--dry-run needs no confirmation and changes nothing."""
    old_and_new(engine)

    ran = cli("purge", "--older-than", "90d", "--dry-run")

    assert (ran.code, ran.out.strip()) == (0, "dry run: would purge 1 raw bodies older than 90d")
    assert all(bodies(engine).values())


# ---- item 7: test sends and untrack -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_test_batch_completed_never_makes_reconcile_fail(
    cli: InProcessCli, engine: Engine
) -> None:
    """send-test-webhook --event batch.completed is stored; the next reconcile converges."""
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(Settings(nova_webhook_secrets=WEBHOOK_SECRET, database_url=url))
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    async with serving(app, sock):
        sent = await asyncio.to_thread(
            cli,
            "send-test-webhook",
            f"http://127.0.0.1:{port}/webhooks/nova",
            "--event",
            "batch.completed",
        )
    reconciled = await asyncio.to_thread(
        cli, "reconcile", "--json", NOVA_API_URL=f"http://127.0.0.1:{free_port()}"
    )

    assert sent.code == 0, sent.err
    with transaction(engine, write=False) as store:
        assert len(store.list_batches()) == 1
    assert reconciled.code == 0, reconciled.out
    assert reconciled.json()["batches_checked"] == 0


def test_batches_untrack_stops_tracking_and_says_so(cli: InProcessCli, engine: Engine) -> None:
    """``batches untrack ID`` removes the batch; an unknown id is one line, exit 1."""
    with transaction(engine) as store:
        store.track_batch(BatchState("batch-1", "job-1"), now=T0)

    gone = cli("batches", "untrack", "batch-1")
    again = cli("batches", "untrack", "batch-1")

    assert (gone.code, gone.out.strip()) == (0, "no longer tracking batch batch-1")
    assert again.code == 1
    assert "'batch-1' is not tracked" in again.error_line
    with transaction(engine, write=False) as store:
        assert store.get_batch("batch-1") is None


# ---- item 9: replay and stats --------------------------------------------------------------------


def test_replay_applies_the_body_of_the_delivery_it_was_named_by(
    cli: InProcessCli, engine: Engine
) -> None:
    """An older delivery whose key spells the named one's row id is not replayed instead."""
    deliver(engine, "2", b"not json {", outcome="stored-unparsed")  # row 1, key "2"
    deliver(engine, "wh_b", score_body("sj_b", "app-b"), outcome="stored-unparsed")  # row 2

    ran = cli("deliveries", "replay", "wh_b", "--json")

    assert ran.json() == {"2": "applied"}
    with transaction(engine, write=False) as store:
        named, other = store.get_delivery("wh_b"), store.get_delivery("2")
    assert named is not None
    assert other is not None
    assert (named["id"], named["replay_outcome"]) == (2, "applied")
    assert (other["id"], other["replay_outcome"]) == (1, None)


def test_replay_records_its_own_outcome_and_is_not_a_delivery(
    cli: InProcessCli, engine: Engine
) -> None:
    """Replaying an applied delivery keeps ``applied`` and the delivery count as they were."""
    body = score_body("sj_1", "app-1")
    with transaction(engine) as store:
        result = ScoringResult(
            "sj_1",
            "completed",
            job_id="job-1",
            application_id="app-1",
            score=6,
            verdict="Solid",
            strengths=(),
            concerns=(),
            interview_focus=(),
            tenant_id="acme-corp",
            completed_at=datetime(2026, 3, 1, 8, tzinfo=UTC),
        )
        store.apply_result(result, source="webhook", now=T0, delivered=True)
    deliver(engine, "d1", body, outcome="applied", event="score.completed", scoring_job_id="sj_1")

    ran = cli("deliveries", "replay", "d1", "--json")

    assert ran.json() == {"1": "duplicate"}
    with transaction(engine, write=False) as store:
        delivery, stored = store.get_delivery("d1"), store.get_result("sj_1")
    assert delivery is not None
    assert stored is not None
    assert (delivery["outcome"], delivery["replay_outcome"]) == ("applied", "duplicate")
    assert delivery["replayed_at"] is not None
    assert stored["delivery_count"] == 1


def test_replay_all_unparsed_parses_each_once(cli: InProcessCli, engine: Engine) -> None:
    """A delivery a replay parsed is not replayed again by the next --all-unparsed."""
    deliver(engine, "d1", score_body("sj_1", "app-1"), outcome="stored-unparsed")

    first = cli("deliveries", "replay", "--all-unparsed", "--json")
    second = cli("deliveries", "replay", "--all-unparsed", "--json")

    assert first.json() == {"1": "applied"}
    assert second.json() == {}
    with transaction(engine, write=False) as store:
        delivery = store.get_delivery("d1")
    assert delivery is not None
    assert (delivery["outcome"], delivery["scoring_job_id"]) == ("stored-unparsed", "sj_1")


def test_stats_names_deliveries_whose_body_did_not_parse(cli: InProcessCli, engine: Engine) -> None:
    """Deliveries without an event are counted as ``(unparsed)``, never ``None``."""
    deliver(engine, "d1", b"??", outcome="stored-unparsed")

    ran = cli("stats")

    assert "events: (unparsed)=1" in ran.out
    assert "None" not in ran.out


# ---- issue 8 item 13: stored text is plain text --------------------------------------------------

HOSTILE = {
    "scoring_job_id": "sj_1",
    "job_id": "job[/bold]",
    "application_id": "[link=https://evil.example]job-1[/link]",
    "verdict": "clear\x1b[2Jscreen",
    "error_code": "two\r\nrows",
}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_on_a_terminal_shows_markup_as_text_and_escapes_control_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No MarkupError, no hyperlink, no escape code from stored values on a TTY."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "300")

    print_table([HOSTILE], list(HOSTILE), "results")

    shown = terminal.getvalue()
    assert "job[/bold]" in shown
    assert "[link=https://evil.example]job-1[/link]" in shown
    assert "\x1b]8;" not in shown  # OSC 8: a hyperlink
    assert "\x1b[2J" not in shown
    assert "clear\\x1b[2Jscreen" in shown
    assert "two\\r\\nrows" in shown


def test_piped_rows_stay_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """CR, LF and tabs in stored text cannot fake rows or columns in tab-separated output."""
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)

    print_table([HOSTILE, {**HOSTILE, "scoring_job_id": "sj_2"}], list(HOSTILE), "results")

    lines = piped.getvalue().splitlines()
    assert len(lines) == 3
    assert all(len(line.split("\t")) == len(HOSTILE) for line in lines)
    assert "\x1b" not in piped.getvalue()


def test_results_show_neutralises_control_characters(cli: InProcessCli, engine: Engine) -> None:
    """The key/value view of one result escapes ESC and newlines too."""
    with transaction(engine) as store:
        result = ScoringResult("sj_1", "completed", verdict="a\x1b[2Jb\nc", completed_at=T0)
        store.apply_result(result, source="webhook", now=T0)

    ran = cli("results", "show", "sj_1")

    assert "\x1b" not in ran.out
    assert "a\\x1b[2Jb\\nc" in ran.out


# ---- item 14: send-test-webhook for the local loop ---------------------------------------------


async def send(cli: InProcessCli, engine: Engine, *args: str) -> list[dict[str, Any]]:
    """Run send-test-webhook --json against a real receiver on ``engine``; JSON lines out."""
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(Settings(nova_webhook_secrets=WEBHOOK_SECRET, database_url=url))
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    async with serving(app, sock):
        ran = await asyncio.to_thread(
            cli, "send-test-webhook", f"http://127.0.0.1:{port}/webhooks/nova", "--json", *args
        )
    assert ran.code == 0, ran.err
    return [json.loads(line) for line in ran.out.splitlines()]


@pytest.mark.slow
@pytest.mark.anyio
async def test_send_test_webhook_repeat_shows_the_duplicate_and_the_ids_sent(
    cli: InProcessCli, engine: Engine
) -> None:
    """--repeat 2 sends one X-Webhook-Id twice: applied, then duplicate; ids are printed."""
    sent = await send(
        cli, engine, "--event", "score.completed", "--scoring-job-id", "sj_rep", "--repeat", "2"
    )

    assert [json.loads(s["body"])["status"] for s in sent] == ["applied", "duplicate"]
    assert {s["scoringJobId"] for s in sent} == {"sj_rep"}
    assert len({s["webhook_id"] for s in sent}) == 1


@pytest.mark.slow
@pytest.mark.anyio
async def test_send_test_webhook_data_sends_a_custom_payload_with_the_given_id(
    cli: InProcessCli, engine: Engine, tmp_path: Path
) -> None:
    """--data FILE is signed and sent as it is; --webhook-id names the delivery."""
    (tmp_path / "payload.json").write_bytes(score_body("sj_custom", "app-custom"))

    sent = await send(cli, engine, "--data", "payload.json", "--webhook-id", "wh_mine")

    assert (sent[0]["event"], sent[0]["webhook_id"]) == ("score.completed", "wh_mine")
    with transaction(engine, write=False) as store:
        stored, delivery = store.get_result("sj_custom"), store.get_delivery("wh_mine")
    assert stored is not None
    assert stored["application_id"] == "app-custom"
    assert delivery is not None


# ---- item 14-15: deliveries tail, --since/--until ------------------------------------------------


def test_results_list_since_and_until_bound_the_update_time(
    cli: InProcessCli, engine: Engine
) -> None:
    """--since is inclusive, --until exclusive; ISO times and unix seconds both work."""
    with transaction(engine) as store:
        for n in range(4):
            result = ScoringResult(f"sj_{n}", "completed", completed_at=T0)
            store.apply_result(result, source="webhook", now=T0 + timedelta(hours=n))

    iso = cli(
        "results",
        "list",
        "--since",
        "2026-03-01T10:00:00Z",
        "--until",
        "2026-03-01T12:00:00Z",
        "--json",
    )
    unix = cli(
        "results", "list", "--since", str(int((T0 + timedelta(hours=3)).timestamp())), "--json"
    )
    bad = cli("results", "list", "--until", "yesterday")

    assert [r["scoring_job_id"] for r in iso.json()] == ["sj_2", "sj_1"]
    assert [r["scoring_job_id"] for r in unix.json()] == ["sj_3"]
    assert bad.code == 2
    assert "--until" in bad.error_line


def test_deliveries_list_since_takes_an_age(cli: InProcessCli, engine: Engine) -> None:
    """``--since 1h`` keeps only deliveries of the last hour."""
    now = datetime.now(UTC)
    deliver(engine, "old", b"{}", outcome="applied", now=now - timedelta(hours=3))
    deliver(engine, "new", b"{}", outcome="applied", now=now - timedelta(minutes=5))

    ran = cli("deliveries", "list", "--since", "1h", "--json")

    assert [r["delivery_key"] for r in ran.json()] == ["new"]


def test_deliveries_tail_prints_the_last_lines_oldest_first(
    cli: InProcessCli, engine: Engine
) -> None:
    """``tail -n 2 --timeout 0``: the header and the two newest deliveries, oldest first."""
    for n in range(3):
        deliver(engine, f"d{n}", b"{}", outcome="applied", now=T0 + timedelta(seconds=n))

    ran = cli("deliveries", "tail", "-n", "2", "--timeout", "0")

    lines = ran.out.splitlines()
    assert lines[0].startswith("id\treceived_at")
    assert [line.split("\t")[6] for line in lines[1:]] == ["d1", "d2"]


# slow: tail polls until its 3 s --timeout: seconds of wall time, kept out of the inner loop.
@pytest.mark.slow
@pytest.mark.anyio
async def test_deliveries_tail_shows_a_delivery_that_arrives_while_it_runs(
    cli: InProcessCli, engine: Engine
) -> None:
    """A delivery stored while tail polls is printed, once."""
    tail = asyncio.create_task(
        asyncio.to_thread(
            cli, "deliveries", "tail", "--json", "--interval", "0.05", "--timeout", "3"
        )
    )
    await asyncio.sleep(0.2)
    await asyncio.to_thread(deliver, engine, "late", b"{}", outcome="applied")

    ran = await tail

    assert [json.loads(line)["delivery_key"] for line in ran.out.splitlines()] == ["late"]


def test_a_table_on_a_narrow_terminal_fits_and_keeps_ids_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """80 columns: free text is cut with an ellipsis, every id and timestamp stays whole."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "80")
    row = {
        "scoring_job_id": "cm3x9k2v80000abcd1234efgh",
        "updated_at": datetime(2026, 3, 1, 9, tzinfo=UTC),
        "verdict": "A long verdict that goes on " * 6,
    }

    print_table([row], list(row), "results")

    lines = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()).splitlines()  # styles
    assert max(len(line) for line in lines) <= 80
    assert any("cm3x9k2v80000abcd1234efgh" in line for line in lines)
    assert any("2026-03-01 09:00:00" in line for line in lines)
    assert any("…" in line for line in lines)
