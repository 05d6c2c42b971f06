"""The ``nova-sink`` command line, run in process (``receiver.cli.run``).

Each command runs in ``tmp_path`` (no stray ``.env``) with an environment that holds only
what the test sets. Every invocation goes through ``InProcessCli``, which also checks that no
configured secret (webhook secrets, API key, read-token key) ever appears in the output.
Commands that talk to Nova get a fake Nova served by uvicorn on a loopback port. The
installed console script itself is exercised by ``tests/test_cli_process.py``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.fake_nova import FakeNova, FakeNovaConfig, create_fake_nova
from receiver.serving import bound_socket, port_of, serving
from receiver.settings import Settings
from receiver.signatures import fingerprint
from storage.db import make_engine, transaction
from storage.records import BatchState, InboundDelivery, RejectedApplication, ScoringResult
from tests.cli_inproc import InProcessCli, Ran
from tests.servers import free_port, migrated_database

WEBHOOK_SECRET = "whsec_cli_primary_secret_abcdef0123"
ROTATED_SECRET = "whsec_cli_rotated_secret_456789fedc"
API_KEY = "sk_test_cli_api_key_7c1d2e"
SINK_KEY = "sink-read-key-0123456789abcdef-xyz"
SECRETS = (WEBHOOK_SECRET, ROTATED_SECRET, API_KEY, SINK_KEY)
TENANT = "acme-corp"
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
COMMANDS = (
    "serve",
    "demo",
    "fake-nova",
    "send-test-webhook",
    "submit",
    "track",
    "reconcile",
    "results",
    "batches",
    "deliveries",
    "stats",
    "purge",
    "erase",
    "secrets",
    "token",
    "db",
    "doctor",
)
SUMMARY_KEYS = {
    "batches_checked",
    "results_added",
    "results_updated",
    "rejected_recorded",
    "errors",
    "gaps_remaining",
    "converged",
}


@dataclass
class Sink:
    """A migrated SQLite file, its engine, and the in-process CLI configured for it."""

    tmp_path: Path
    url: str
    engine: Engine
    cli: InProcessCli

    def run(self, *args: str, input: str = "", **env: str) -> Ran:
        """Run ``nova-sink *args``; ``env`` adds or (with "") removes variables."""
        return self.cli(*args, input=input, **env)

    async def arun(self, *args: str, **env: str) -> Ran:
        """``run`` from an async test: the CLI runs its own event loop in a thread, beside
        the test's loop (and the servers it runs)."""
        return await asyncio.to_thread(self.run, *args, **env)


@pytest.fixture(name="sink")
def fixture_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sink]:
    url = migrated_database(tmp_path / "sink.db")
    engine = make_engine(url)
    env = {
        "DATABASE_URL": url,
        "NOVA_WEBHOOK_SECRETS": f"{WEBHOOK_SECRET},{ROTATED_SECRET}",
        "NOVA_API_KEY": API_KEY,
        "NOVA_TENANT_ID": TENANT,
        "SINK_SECRET_KEY": SINK_KEY,
        "COLUMNS": "200",
        "LOG_FORMAT": "json",
    }
    yield Sink(tmp_path, url, engine, InProcessCli(capsys, monkeypatch, tmp_path, env, SECRETS))
    engine.dispose()


# ---- builders ---------------------------------------------------------------------------------


def result(n: int, **fields: Any) -> ScoringResult:
    values: dict[str, Any] = {
        "scoring_job_id": f"sj_{n:03d}",
        "status": "completed",
        "job_id": "job-1",
        "application_id": f"app-{n:03d}",
        "batch_id": "batch-a" if n % 2 else "batch-b",
        "tenant_id": TENANT,
        "score": n % 10 + 1,
        "verdict": f"verdict {n}",
        "strengths": ("Python", "SQL"),
        "concerns": (),
        "interview_focus": ("System design",),
        "completed_at": T0,
    }
    values.update(fields)
    return ScoringResult(**values)


def store_results(engine: Engine, count: int) -> None:
    """``count`` results, each updated one second after the previous one."""
    with transaction(engine) as store:
        for n in range(count):
            store.apply_result(result(n), source="webhook", now=T0 + timedelta(seconds=n))


def score_body(scoring_job_id: str, application_id: str) -> bytes:
    payload = {
        "event": "score.completed",
        "tenantId": TENANT,
        "scoringJobId": scoring_job_id,
        "jobId": "job-1",
        "applicationId": application_id,
        "result": {
            "score": 6,
            "assessment": {
                "verdict": "Solid",
                "strengths": ["Go"],
                "concerns": [],
                "interviewFocus": ["Testing"],
            },
        },
        "completedAt": "2026-03-01T08:00:00Z",
    }
    return json.dumps(payload).encode()


def store_delivery(
    engine: Engine,
    key: str,
    body: bytes,
    *,
    outcome: str,
    event: str | None = None,
    scoring_job_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    now: datetime = T0,
) -> None:
    delivery = InboundDelivery(
        delivery_key=key,
        webhook_id=key,
        event=event,
        body=body,
        signature_scheme="x-webhook-signature/body",
        secret_fingerprint=fingerprint(secret),
        scoring_job_id=scoring_job_id,
    )
    with transaction(engine) as store:
        store.record_delivery(delivery, outcome=outcome, now=now)


def every_value(engine: Engine) -> str:
    """Every value of every row of every table, as one string to search (except erasure
    tombstones, which keep the erased application ids on purpose, and the ``erased``
    changes of the feed, which keep the erased results' ids to tell consumers)."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    parts = []
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            if name == "erased_application":
                continue
            query = sa.select(table)
            if name == "result_change":
                query = query.where(table.c.kind != "erased")
            for row in conn.execute(query):
                parts += [
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row
                ]
    return "\n".join(parts)


@asynccontextmanager
async def fake_nova(**config: Any) -> AsyncIterator[tuple[FakeNova, str]]:
    """Fake Nova served by uvicorn on a loopback port: (fake, NOVA_API_URL)."""
    fake = create_fake_nova(FakeNovaConfig(**config), background_delivery=False)
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    async with fake, serving(fake.app, sock):
        yield fake, f"http://127.0.0.1:{port}"


def applications(count: int, *, corrupt: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    items = []
    for n in range(count):
        app_id = f"app-{n:03d}"
        if n in corrupt:
            resume = {"type": "url", "url": f"https://files.example.com/{app_id}-corrupt.pdf"}
        else:
            resume = {"type": "text", "content": f"# {app_id}\n\nPython."}
        items.append({"applicationId": app_id, "resume": resume})
    return items


# ---- help and configuration errors ------------------------------------------------------------


def test_help_lists_every_command(sink: Sink) -> None:
    """``--help`` names every command of the spec."""
    shown = sink.run("--help")

    assert shown.code == 0
    missing = [c for c in COMMANDS if not re.search(rf"^  {re.escape(c)}\s", shown.out, re.M)]
    assert missing == []


def test_serve_without_webhook_secrets_exits_2_with_one_line_naming_the_variable(
    sink: Sink,
) -> None:
    """No NOVA_WEBHOOK_SECRETS: serve refuses to start, says which variable, no traceback."""
    served = sink.run("serve", "--port", str(free_port()), NOVA_WEBHOOK_SECRETS="")

    assert served.code == 2
    assert "NOVA_WEBHOOK_SECRETS" in served.error_line


def test_malformed_rate_limit_exits_2_naming_the_variable(sink: Sink) -> None:
    """NOVA_RATE_LIMIT that is not a number: exit 2, one line."""
    ran = sink.run("reconcile", NOVA_RATE_LIMIT="fast")

    assert ran.code == 2
    assert "NOVA_RATE_LIMIT" in ran.error_line


def test_reconcile_without_api_key_exits_2_naming_the_variable(sink: Sink) -> None:
    """reconcile needs NOVA_API_KEY: exit 2, one line."""
    ran = sink.run("reconcile", NOVA_API_KEY="")

    assert ran.code == 2
    assert "NOVA_API_KEY" in ran.error_line


# ---- results ----------------------------------------------------------------------------------


def test_results_list_shows_the_newest_50_unless_told_otherwise(sink: Sink) -> None:
    """Default 50 newest first; --limit N; --all for every row."""
    store_results(sink.engine, 60)

    default = sink.run("results", "list", "--json").json()
    limited = sink.run("results", "list", "--limit", "5", "--json").json()
    everything = sink.run("results", "list", "--all", "--json").json()

    assert [r["scoring_job_id"] for r in default] == [f"sj_{n:03d}" for n in range(59, 9, -1)]
    assert [r["scoring_job_id"] for r in limited] == [
        "sj_059",
        "sj_058",
        "sj_057",
        "sj_056",
        "sj_055",
    ]
    assert len(everything) == 60


def test_results_list_prints_a_tab_separated_table_when_not_on_a_tty(sink: Sink) -> None:
    """Piped output is one header line and one line per row, easy to cut/awk."""
    store_results(sink.engine, 3)

    listed = sink.run("results", "list", "--status", "completed", "--batch", "batch-a")

    header, *rows = listed.out.splitlines()
    assert header.split("\t")[:3] == ["scoring_job_id", "status", "score"]
    assert [row.split("\t")[0] for row in rows] == ["sj_001"]


def test_results_show_prints_every_field_and_fails_cleanly_on_an_unknown_id(sink: Sink) -> None:
    """show --json is the whole row; an unknown id is one error line, exit 1."""
    store_results(sink.engine, 2)

    shown = sink.run("results", "show", "sj_001", "--json")
    unknown = sink.run("results", "show", "sj_nope")

    assert shown.code == 0
    row = shown.json()
    assert (row["scoring_job_id"], row["application_id"], row["score"]) == ("sj_001", "app-001", 2)
    assert row["strengths"] == ["Python", "SQL"]
    assert unknown.code == 1
    assert "sj_nope" in unknown.error_line


def test_results_export_streams_csv(sink: Sink) -> None:
    """export --format csv: a header and one row per result; lists as JSON in their cell."""
    store_results(sink.engine, 60)

    exported = sink.run("results", "export", "--format", "csv")

    rows = list(csv.DictReader(io.StringIO(exported.out)))
    assert len(rows) == 60
    assert rows[0]["scoring_job_id"] == "sj_000"
    assert json.loads(rows[0]["strengths"]) == ["Python", "SQL"]
    assert "exported 60 results" in exported.err


def test_results_export_streams_json_lines_to_a_file(sink: Sink) -> None:
    """export --format jsonl -o FILE: one JSON object per line, filters applied."""
    store_results(sink.engine, 10)
    target = sink.tmp_path / "out.jsonl"

    exported = sink.run(
        "results", "export", "--format", "jsonl", "-o", str(target), "--batch", "batch-b"
    )

    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["scoring_job_id"] for line in lines] == [
        "sj_000",
        "sj_002",
        "sj_004",
        "sj_006",
        "sj_008",
    ]
    assert exported.out == ""


# ---- deliveries -------------------------------------------------------------------------------


def test_deliveries_list_and_show(sink: Sink) -> None:
    """list (newest first, no bodies) and show (with the raw body) by webhook id."""
    store_delivery(
        sink.engine,
        "msg_1",
        score_body("sj_1", "app-1"),
        outcome="applied",
        event="score.completed",
        scoring_job_id="sj_1",
    )
    store_delivery(
        sink.engine, "msg_2", b'{"event":"test","message":"hi"}', outcome="recorded", event="test"
    )

    listed = sink.run("deliveries", "list", "--json").json()
    shown = sink.run("deliveries", "show", "msg_1", "--json").json()

    assert [d["webhook_id"] for d in listed] == ["msg_2", "msg_1"]
    assert all("raw_body" not in d for d in listed)
    assert json.loads(shown["raw_body"])["scoringJobId"] == "sj_1"
    assert sink.run("deliveries", "show", "msg_404").code == 1


def test_an_unknown_argument_of_any_length_is_named_in_one_short_line(sink: Sink) -> None:
    """The error names what was asked for, cut short: a 100,000-character argument must
    not become a 100,000-character error line."""
    for command in (("deliveries", "show"), ("results", "show")):
        ran = sink.run(*command, "k" * 100_000)
        assert ran.code == 1
        assert len(ran.error_line) < 200
        assert "'" + "k" * 80 + "'… (100,000 characters)" in ran.error_line
    assert "no delivery 'msg_404'" in sink.run("deliveries", "show", "msg_404").error_line


def test_replay_applies_a_parsable_body_and_keeps_an_unknown_event_unparsed(sink: Sink) -> None:
    """Replaying stored-unparsed deliveries: a valid event is applied, an unknown one stays."""
    store_delivery(
        sink.engine, "msg_unknown", b'{"event":"candidate.moved","id":1}', outcome="stored-unparsed"
    )
    store_delivery(
        sink.engine, "msg_valid", score_body("sj_late", "app-late"), outcome="stored-unparsed"
    )

    replayed = sink.run("deliveries", "replay", "--all-unparsed", "--json")

    assert replayed.code == 0
    assert sorted(replayed.json().values()) == ["applied", "stored-unparsed"]
    with transaction(sink.engine, write=False) as store:
        applied = store.get_result("sj_late")
        unknown = store.get_delivery("msg_unknown")
        valid = store.get_delivery("msg_valid")
    assert applied is not None
    assert (applied["status"], applied["score"]) == ("completed", 6)
    assert unknown is not None
    assert (unknown["outcome"], unknown["replay_outcome"]) == ("stored-unparsed", "stored-unparsed")
    assert valid is not None
    # What Nova was answered stays; the replay records its own outcome beside it.
    assert (valid["outcome"], valid["replay_outcome"]) == ("stored-unparsed", "applied")


# ---- track ------------------------------------------------------------------------------------


def test_track_a_new_batch_then_again_says_already_tracked_and_succeeds(sink: Sink) -> None:
    """Tracking is idempotent: the second time says so and exits 0."""
    first = sink.run("track", "job-1", "batch-1")
    again = sink.run("track", "job-1", "batch-1")

    assert (first.code, again.code) == (0, 0)
    assert "now tracking batch batch-1" in first.out
    assert "already tracked batch batch-1" in again.out
    with transaction(sink.engine, write=False) as store:
        row = store.get_batch("batch-1")
    assert row is not None
    assert (row["job_id"], row["tenant_id"], row["api"], row["due"]) == (
        "job-1",
        TENANT,
        "v1",
        True,
    )


def test_track_from_csv_and_json_lines_files(sink: Sink) -> None:
    """--from-file reads CSV (header line) and JSON Lines of job_id, batch_id, tenant, api."""
    (sink.tmp_path / "batches.csv").write_text(
        "job_id,batch_id,tenant,api\njob-1,batch-c1,t-one,v1\njob-2,batch-c2,,legacy\n"
    )
    (sink.tmp_path / "batches.jsonl").write_text(
        '{"job_id": "job-3", "batch_id": "batch-j1", "tenant": "t-three", "api": "legacy"}\n'
        '{"job_id": "job-3", "batch_id": "batch-c1"}\n'
    )

    from_csv = sink.run("track", "--from-file", "batches.csv", "--json")
    from_jsonl = sink.run("track", "--from-file", "batches.jsonl", "--json")

    assert from_csv.json() == [
        {"batch_id": "batch-c1", "new": True},
        {"batch_id": "batch-c2", "new": True},
    ]
    assert from_jsonl.json() == [
        {"batch_id": "batch-j1", "new": True},
        {"batch_id": "batch-c1", "new": False},
    ]
    batches = {b["batch_id"]: b for b in sink.run("batches", "list", "--json").json()}
    assert (batches["batch-c1"]["tenant_id"], batches["batch-c1"]["api"]) == ("t-one", "v1")
    assert (batches["batch-c2"]["tenant_id"], batches["batch-c2"]["api"]) == (TENANT, "legacy")
    assert (batches["batch-j1"]["tenant_id"], batches["batch-j1"]["api"]) == ("t-three", "legacy")


def test_track_with_an_unknown_api_fails_with_one_line_and_tracks_nothing(sink: Sink) -> None:
    """--api must be v1 or legacy."""
    tracked = sink.run("track", "job-1", "batch-1", "--api", "v3")

    assert tracked.code == 1
    assert "v1 or legacy" in tracked.error_line
    assert sink.run("batches", "list", "--json").json() == []


# ---- submit and reconcile against fake Nova ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
async def test_submit_json_splits_into_batches_of_25_and_prints_rejections(sink: Sink) -> None:
    """30 applications: two batches; the corrupt resumes are listed as rejected."""
    body = {
        "jobDescription": "Senior backend engineer",
        "applications": applications(30, corrupt=(26, 28)),
    }
    (sink.tmp_path / "apps.json").write_text(json.dumps(body))

    async with fake_nova() as (fake, api_url):
        submitted = await sink.arun("submit", "apps.json", "--job", "job-1", NOVA_API_URL=api_url)

    assert submitted.code == 0, submitted.err
    batch_lines = [line for line in submitted.out.splitlines() if line.startswith("batch ")]
    assert len(batch_lines) == 2
    assert batch_lines[0].endswith("25 scoring jobs queued, 0 applications rejected")
    assert batch_lines[1].endswith("3 scoring jobs queued, 2 applications rejected")
    rejected_rows = [
        line.split("\t") for line in submitted.out.splitlines() if line.startswith("app-")
    ]
    assert [(row[0], row[1]) for row in rejected_rows] == [
        ("app-026", "RESUME_CORRUPTED"),
        ("app-028", "RESUME_CORRUPTED"),
    ]
    assert len(fake.state.batches) == 2
    with transaction(sink.engine, write=False) as store:
        assert store.stats()["results"] == {"pending": 28}
        assert len(store.list_batches(limit=None)) == 2


@pytest.mark.slow
@pytest.mark.anyio
async def test_submit_csv_then_reconcile_converges_with_a_json_summary(sink: Sink) -> None:
    """CSV input plus --job-description; reconcile --json: the documented keys, exit 0."""
    lines = ["application_id,resume_url,resume_text"]
    lines += [f"app-{n:03d},,Python developer {n}" for n in range(27)]
    lines += [
        "app-url,https://files.example.com/cv.pdf,",
        "app-bad,https://files.example.com/x-corrupt.pdf,",
    ]
    (sink.tmp_path / "apps.csv").write_text("\n".join(lines) + "\n")
    (sink.tmp_path / "job.txt").write_text("Senior backend engineer")

    async with fake_nova() as (fake, api_url):
        submitted = await sink.arun(
            "submit",
            "apps.csv",
            "--job",
            "job-1",
            "--job-description",
            "job.txt",
            "--json",
            NOVA_API_URL=api_url,
        )
        first = await sink.arun("reconcile", "--json", NOVA_API_URL=api_url)
        second = await sink.arun("reconcile", "--json", NOVA_API_URL=api_url)
        text = await sink.arun("reconcile", NOVA_API_URL=api_url)

    assert submitted.code == 0, submitted.err
    assert len(fake.state.batches) == 2
    created = submitted.json()
    assert [len(b["scoring_job_ids"]) for b in created] == [25, 3]
    assert [r["application_id"] for b in created for r in b["rejected"]] == ["app-bad"]
    assert first.code == 0, first.err
    summary = first.json()
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["converged"] is True
    assert (summary["batches_checked"], summary["results_updated"]) == (2, 28)
    assert (summary["errors"], summary["gaps_remaining"]) == ({}, 0)
    assert second.code == 0
    assert (second.json()["results_added"], second.json()["results_updated"]) == (0, 0)
    assert text.code == 0
    assert text.out.startswith("CONVERGED")


@pytest.mark.slow
@pytest.mark.anyio
async def test_reconcile_exits_1_while_gaps_remain(sink: Sink) -> None:
    """Nova has not finished scoring: reconcile reports the gaps and exits 1."""
    (sink.tmp_path / "apps.json").write_text(
        json.dumps({"jobDescription": "Engineer", "applications": applications(3)})
    )

    async with fake_nova(score_delay=3600) as (_, api_url):
        await sink.arun("submit", "apps.json", "--job", "job-1", NOVA_API_URL=api_url)
        ran = await sink.arun("reconcile", "--json", NOVA_API_URL=api_url)
        text = await sink.arun("reconcile", NOVA_API_URL=api_url)

    summary = ran.json()
    assert summary["converged"] is False
    assert summary["gaps_remaining"] == 1
    assert text.out.startswith("GAPS REMAIN")
    assert (ran.code, text.code) == (1, 1)


def test_reconcile_of_an_untracked_batch_exits_1_with_a_clear_line(sink: Sink) -> None:
    """--batch UNKNOWN: one line saying it is not tracked and how to track it."""
    ran = sink.run("reconcile", "--batch", "batch-unknown", NOVA_API_URL="http://127.0.0.1:9")

    assert ran.code == 1
    line = ran.error_line
    assert "batch-unknown" in line
    assert "not tracked" in line


# ---- tokens and the read API ------------------------------------------------------------------


def read_app(sink: Sink, *, clock: Any = None) -> Any:
    settings = Settings(
        nova_webhook_secrets=WEBHOOK_SECRET, database_url=sink.url, sink_secret_key=SINK_KEY
    )
    if clock is None:
        return create_app(settings, engine=sink.engine)
    return create_app(settings, engine=sink.engine, now=clock)


def test_token_create_makes_a_token_the_read_api_accepts(sink: Sink) -> None:
    """A created token reads /api/results; no token is 401."""
    store_results(sink.engine, 3)

    created = sink.run("token", "create", "--scope", "read", "--ttl", "1h")

    assert created.code == 0
    token = created.out.strip()
    with TestClient(read_app(sink)) as client:
        allowed = client.get("/api/results", headers={"Authorization": f"Bearer {token}"})
        anonymous = client.get("/api/results")
        forged = client.get("/api/results", headers={"Authorization": f"Bearer {token}x"})
    assert allowed.status_code == 200
    assert len(allowed.json()["data"]) == 3
    assert (anonymous.status_code, forged.status_code) == (401, 401)


def test_an_expired_token_is_refused(sink: Sink) -> None:
    """A 1-second token, checked by an app whose clock is 5 seconds ahead: 401."""
    created = sink.run("token", "create", "--ttl", "1s", "--json")
    token = created.json()["token"]
    later = lambda: datetime.now(UTC) + timedelta(seconds=5)  # noqa: E731 - the clock seam

    with TestClient(read_app(sink, clock=later)) as client:
        expired = client.get("/api/results", headers={"Authorization": f"Bearer {token}"})

    assert expired.status_code == 401


def test_token_create_without_a_sink_secret_key_exits_2(sink: Sink) -> None:
    """The read-token key is required: exit 2, one line naming it."""
    created = sink.run("token", "create", SINK_SECRET_KEY="")

    assert created.code == 2
    assert "SINK_SECRET_KEY" in created.error_line


# ---- retention, erasure, secrets --------------------------------------------------------------


def test_purge_drops_only_bodies_older_than_the_age(sink: Sink) -> None:
    """purge --older-than 90d: old raw bodies go, their rows and newer bodies stay."""
    now = datetime.now(UTC)
    store_delivery(
        sink.engine,
        "msg_old",
        b'{"event":"test"}',
        outcome="recorded",
        now=now - timedelta(days=100),
    )
    store_delivery(
        sink.engine,
        "msg_new",
        b'{"event":"test"}',
        outcome="recorded",
        now=now - timedelta(days=10),
    )

    purged = sink.run("purge", "--older-than", "90d", "--yes", "--json")

    assert purged.json() == {"purged": 1, "dry_run": False}
    with transaction(sink.engine, write=False) as store:
        old, new = store.get_delivery("msg_old"), store.get_delivery("msg_new")
    assert old is not None
    assert old["raw_body"] is None
    assert new is not None
    assert new["raw_body"] == b'{"event":"test"}'
    assert sink.run("purge", "--older-than", "soon").code == 2


def test_erase_removes_every_trace_of_an_application(sink: Sink) -> None:
    """erase -y: results, deliveries and rejections of the candidate are gone; others stay."""
    with transaction(sink.engine) as store:
        store.track_batch(BatchState("batch-z", "job-1", TENANT), now=T0)
        store.apply_result(result(1, application_id="app-erase-me"), source="webhook", now=T0)
        store.apply_result(result(2, application_id="app-keep"), source="webhook", now=T0)
        store.record_rejected(
            [
                RejectedApplication(
                    "batch-z", "app-erase-me", "RESUME_CORRUPTED", "corrupt", "eof"
                ),
                RejectedApplication("batch-z", "app-keep", "RESUME_CORRUPTED", "corrupt", "eof"),
            ],
            now=T0,
        )
    store_delivery(
        sink.engine,
        "msg_a",
        score_body("sj_001", "app-erase-me"),
        outcome="applied",
        event="score.completed",
        scoring_job_id="sj_001",
    )
    store_delivery(
        sink.engine,
        "msg_k",
        score_body("sj_002", "app-keep"),
        outcome="applied",
        event="score.completed",
        scoring_job_id="sj_002",
    )

    erased = sink.run("erase", "--application-id", "app-erase-me", "-y", "--json")

    assert erased.code == 0
    assert erased.json() == {
        "delivery": 1,
        "scoring_job": 1,
        "rejected_application": 1,
        "dry_run": False,
    }
    remaining = every_value(sink.engine)
    assert "app-erase-me" not in remaining
    assert "sj_001" not in remaining
    assert "app-keep" in remaining


def test_erase_without_yes_asks_and_a_no_keeps_everything(sink: Sink) -> None:
    """Without -y the command asks; answering no erases nothing (exit 1)."""
    store_results(sink.engine, 2)

    refused = sink.run("erase", "--application-id", "app-001", input="n\n")

    assert "Erase every record of application app-001?" in refused.err
    with transaction(sink.engine, write=False) as store:
        assert store.get_result("sj_001") is not None
    assert refused.code == 1


def test_secrets_status_shows_fingerprints_and_last_use_never_the_secret(sink: Sink) -> None:
    """One row per configured secret, by fingerprint, with the last delivery it verified."""
    store_delivery(
        sink.engine, "msg_1", b'{"event":"test"}', outcome="recorded", secret=ROTATED_SECRET
    )

    status = sink.run("secrets", "status", "--json")
    table = sink.run("secrets", "status")

    rows = status.json()
    assert [r["fingerprint"] for r in rows] == [
        fingerprint(WEBHOOK_SECRET),
        fingerprint(ROTATED_SECRET),
    ]
    assert rows[0]["last_verified"] is None
    assert rows[1]["last_verified"].startswith("2026-03-01T09:00:00")
    assert fingerprint(ROTATED_SECRET) in table.out
    # InProcessCli has checked that neither secret appears in any output.


def test_erase_also_removes_a_stored_unparsed_delivery_about_the_application(sink: Sink) -> None:
    """A verified body kept unparsed still holds the candidate's data: erase removes it."""
    body = score_body("sj_x", "app-erase-me").replace(b'"score": 6', b'"score": "six"')
    store_delivery(sink.engine, "msg_unparsed", body, outcome="stored-unparsed")
    store_delivery(sink.engine, "msg_other", b'{"event":"test"}', outcome="recorded")

    erased = sink.run("erase", "--application-id", "app-erase-me", "-y")

    assert erased.code == 0
    remaining = every_value(sink.engine)
    assert "msg_other" in remaining
    assert "app-erase-me" not in remaining
