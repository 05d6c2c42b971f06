"""The command line's contract with scripts: stdout is data only, errors are one line and
a documented exit code (usage and configuration 2, another reconcile running 75).

Run in process (``receiver.cli.run``); fake Nova is served by uvicorn on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stamina
import structlog

from receiver.fake_nova import create_fake_nova
from receiver.fake_nova.config import FakeNovaConfig
from receiver.serving import bound_socket, free_port, port_of, serving
from storage.db import make_engine, transaction
from tests.cli_inproc import InProcessCli, Ran

APPLICATIONS = [
    {"applicationId": f"app-{n}", "resume": {"type": "text", "content": f"# app-{n}\nPython"}}
    for n in range(3)
]


@pytest.fixture(name="no_retry_waits")
def fixture_no_retry_waits() -> Iterator[None]:
    """stamina's test mode: retries at once (and still logged), the client's cap applies."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture(name="unconfigured_logging")
def fixture_unconfigured_logging() -> Iterator[None]:
    """structlog and stamina as a fresh process has them: structlog's default printer writes
    to stdout, and stamina's retry logger is created anew (not one an earlier test cached)."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    stamina.instrumentation.set_on_retry_hooks(None)
    yield
    structlog.configure(**saved)
    stamina.instrumentation.set_on_retry_hooks(None)


@asynccontextmanager
async def nova(**config: Any) -> AsyncIterator[str]:
    """Fake Nova on a loopback port; yields NOVA_API_URL."""
    fake = create_fake_nova(FakeNovaConfig(**config), background_delivery=False)
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    async with fake, serving(fake.app, sock):
        yield f"http://127.0.0.1:{port}"


async def in_thread(cli: InProcessCli, *args: str, **env: str) -> Ran:
    """Run the CLI (which runs its own event loop) beside the test's servers."""
    return await asyncio.to_thread(cli, *args, **env)


FAULTS = {
    "5xx": {"api_error_rate": 1.0},
    "429": {"rate_limit": 0.5},  # below one request per second: every request is a 429
}


# ---- item 1: --json is JSON whatever Nova does -----------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.usefixtures("no_retry_waits", "unconfigured_logging")
@pytest.mark.parametrize("fault", ["5xx", "429", "unreachable"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
async def test_reconcile_json_stays_pure_json_while_requests_are_retried(
    cli: InProcessCli, fault: str, dry_run: bool
) -> None:
    """Retry warnings go to stderr: stdout of ``reconcile --json`` parses whole as JSON."""
    assert cli("track", "job-1", "batch-1").code == 0
    extra = ["--dry-run"] if dry_run else []
    if fault == "unreachable":
        ran = await in_thread(
            cli, "reconcile", "--json", *extra, NOVA_API_URL=f"http://127.0.0.1:{free_port()}"
        )
    else:
        async with nova(**FAULTS[fault]) as url:
            ran = await in_thread(cli, "reconcile", "--json", *extra, NOVA_API_URL=url)

    summary = ran.json()
    assert summary["errors"], summary
    assert ran.code == 1
    assert "stamina.retry_scheduled" in ran.err


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.usefixtures("no_retry_waits", "unconfigured_logging")
async def test_submit_json_stays_pure_json_while_requests_are_retried(cli: InProcessCli) -> None:
    """A submit whose request succeeds after retried 5xx answers prints only its JSON."""
    (cli.tmp_path / "apps.json").write_text(
        json.dumps({"jobDescription": "Engineer", "applications": APPLICATIONS})
    )
    async with nova(api_error_rate=0.6, seed=3) as url:
        ran = await in_thread(
            cli, "submit", "apps.json", "--job", "job-1", "--json", NOVA_API_URL=url
        )

    assert ran.code == 0, ran.err
    assert len(ran.json()[0]["scoring_job_ids"]) == 3
    assert "stamina.retry_scheduled" in ran.err


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.usefixtures("no_retry_waits", "unconfigured_logging")
@pytest.mark.parametrize("fault", ["5xx", "429", "unreachable"])
async def test_a_submit_that_nova_never_accepts_prints_nothing_on_stdout(
    cli: InProcessCli, fault: str
) -> None:
    """When every attempt fails, ``submit --json`` prints no partial output: one error line."""
    (cli.tmp_path / "apps.json").write_text(
        json.dumps({"jobDescription": "Engineer", "applications": APPLICATIONS})
    )
    args = ("submit", "apps.json", "--job", "job-1", "--json")
    if fault == "unreachable":
        ran = await in_thread(cli, *args, NOVA_API_URL=f"http://127.0.0.1:{free_port()}")
    else:
        async with nova(**FAULTS[fault]) as url:
            ran = await in_thread(cli, *args, NOVA_API_URL=url)

    assert ran.code == 1
    assert ran.out == ""
    assert "stamina.retry_scheduled" in ran.err
    assert sum(line.startswith("nova-sink: error:") for line in ran.err.splitlines()) == 1


# ---- item 2: one compact line ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
async def test_reconcile_json_is_one_line_so_appending_runs_makes_json_lines(
    cli: InProcessCli,
) -> None:
    """Two runs appended together give two JSON lines, each a whole summary."""
    async with nova() as url:
        first = await in_thread(cli, "reconcile", "--json", NOVA_API_URL=url)
        second = await in_thread(cli, "reconcile", "--json", NOVA_API_URL=url)

    lines = (first.out + second.out).splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["converged"] for line in lines] == [True, True]


# ---- item 3: usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("results", "lis"),  # no such command
        ("results", "list", "--limt", "3"),  # no such option
        ("results", "list", "--limit", "many"),  # bad parameter
        ("results", "list", "--limit", "0"),  # out of range
        ("erase",),  # missing option
        ("results", "show"),  # missing argument
    ],
)
def test_usage_errors_print_clicks_usage_message_and_exit_2(
    cli: InProcessCli, args: tuple[str, ...]
) -> None:
    """A mistyped command or option is a usage error (exit 2), never an "unexpected" crash."""
    ran = cli(*args)

    assert ran.code == 2
    assert "Usage: nova-sink" in ran.err
    assert "unexpected" not in ran.err
    assert ran.out == ""


def test_bare_nova_sink_prints_help_and_exits_0(cli: InProcessCli) -> None:
    """No command at all asks for help: help on stdout, exit 0, nothing on stderr."""
    ran = cli()

    assert ran.code == 0
    assert "Usage: nova-sink" in ran.out
    assert "reconcile" in ran.out
    assert ran.err == ""


def test_version_prints_the_installed_version(cli: InProcessCli) -> None:
    """``--version`` prints ``nova-sink X.Y.Z`` and exits 0."""
    from importlib.metadata import version

    ran = cli("--version")

    assert (ran.code, ran.out.strip()) == (0, f"nova-sink {version('nova-sink')}")


# ---- item 4: DATABASE_URL and other malformed values --------------------------------------------


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "sqlite://", "", "postgres:/x"])
def test_a_malformed_database_url_is_one_line_naming_the_variable_and_exit_2(
    cli: InProcessCli, url: str
) -> None:
    """Any URL that is not SQLite or PostgreSQL: one line naming DATABASE_URL, exit 2."""
    ran = cli("results", "list", DATABASE_URL=url or "   ")

    assert ran.code == 2
    assert "DATABASE_URL" in ran.error_line
    assert "unexpected" not in ran.err


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_urls_as_platforms_spell_them_are_read_as_postgresql(
    cli: InProcessCli, scheme: str, postgres_url: str
) -> None:
    """``postgres://`` and ``postgresql://`` reach the database with psycopg 3."""
    url = postgres_url.replace("postgresql+psycopg", scheme)

    ran = cli("db", "current", "--json", DATABASE_URL=url)

    assert "current" in ran.json()
    assert "unexpected" not in ran.err


@pytest.mark.parametrize("ttl", ["99999999999999999d", "\u0661\u0662d", "5y", "d"])
def test_an_impossible_token_lifetime_is_a_usage_error(cli: InProcessCli, ttl: str) -> None:
    """``token create --ttl`` out of range or malformed: one line naming --ttl, exit 2."""
    ran = cli("token", "create", "--ttl", ttl)

    assert ran.code == 2
    assert "--ttl" in ran.error_line


# ---- item 5: errors keep their type -------------------------------------------------------------


def test_reconcile_of_an_untracked_batch_names_it(cli: InProcessCli) -> None:
    """``--batch UNKNOWN``: one line naming the batch and how to track it, exit 1."""
    ran = cli("reconcile", "--batch", "batch-x", NOVA_API_URL="http://127.0.0.1:9")

    assert ran.code == 1
    assert "'batch-x' is not tracked" in ran.error_line
    assert "nova-sink track JOB_ID batch-x" in ran.error_line


def hold_lease(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with transaction(engine) as store:
            now = datetime.now(UTC)
            store.acquire_lease(
                "reconcile", holder="other-host:4242:abcd", now=now, ttl=timedelta(minutes=10)
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_another_reconcile_running_exits_75(cli: InProcessCli, as_json: bool) -> None:
    """A held lease is a temporary failure (EX_TEMPFAIL, 75); --json still prints JSON."""
    hold_lease(cli.env["DATABASE_URL"])

    ran = cli("reconcile", *(["--json"] if as_json else []), NOVA_API_URL="http://127.0.0.1:9")

    assert ran.code == 75
    assert "another reconcile is running (other-host:4242:abcd)" in ran.error_line
    if as_json:
        assert ran.json()["error"] == "lease_held"
    else:
        assert ran.out == ""


def test_a_lease_lost_mid_run_surfaces_as_itself_not_an_exception_group(
    cli: InProcessCli,
) -> None:
    """The TaskGroup's ExceptionGroup is unwrapped at the boundary: its leaf is reported."""
    from receiver.cli.common import leaf_error
    from storage.errors import LeaseHeld

    leaf = LeaseHeld("reconcile", "x")
    group = ExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("inner", [leaf])])

    assert leaf_error(group) is leaf


# ---- item 11: read-only commands create nothing --------------------------------------------------


@pytest.mark.parametrize(
    "args", [("db", "current"), ("results", "list"), ("stats",), ("deliveries", "list")]
)
def test_read_only_commands_never_create_the_sqlite_file(
    cli: InProcessCli, args: tuple[str, ...]
) -> None:
    """Pointed at a file that does not exist, a read-only command reports it, creates nothing."""
    missing = cli.tmp_path / "absent.db"

    ran = cli(*args, DATABASE_URL=f"sqlite:///{missing}")

    assert ran.code == 1
    assert not missing.exists()


# ---- ids that end up in request paths to Nova ---------------------------------------------------

NOT_PLAIN_IDS = ["..", ".", "job/1", "job\\1", "job\x1b[2J", "job\n1", "", " "]


def tracked_batches(cli: InProcessCli) -> Any:
    return cli("batches", "list", "--json").json()


@pytest.mark.parametrize("bad", NOT_PLAIN_IDS)
@pytest.mark.parametrize("position", [0, 1], ids=["JOB_ID", "BATCH_ID"])
def test_track_refuses_an_id_that_is_not_a_plain_path_segment(
    cli: InProcessCli, bad: str, position: int
) -> None:
    """``track`` with ``..``, a separator, a control character or nothing: exit 2, naming the
    argument, and nothing tracked."""
    ids = ["job-1", "batch-1"]
    ids[position] = bad

    ran = cli("track", *ids)

    assert ran.code == 2
    assert ran.error_line.startswith(f"nova-sink: error: {('JOB_ID', 'BATCH_ID')[position]}: ")
    assert tracked_batches(cli) == []


def test_track_from_file_refuses_an_entry_with_an_unsafe_id_and_tracks_none(
    cli: InProcessCli,
) -> None:
    """One bad entry in ``--from-file`` names its entry and field; the good ones are not
    tracked either."""
    (cli.tmp_path / "batches.csv").write_text("job_id,batch_id\njob-1,batch-1\njob-2,..\n")

    ran = cli("track", "--from-file", "batches.csv")

    assert ran.code == 2
    assert "entry 2: batch_id: '..'" in ran.error_line
    assert tracked_batches(cli) == []


@pytest.mark.parametrize("bad", ["t\r\nX-Injected: 1", "t\x00", "a/b"])
def test_track_refuses_a_tenant_that_cannot_be_an_x_tenant_id_header(
    cli: InProcessCli, bad: str
) -> None:
    """The tenant becomes reconcile's X-Tenant-Id header: a CR/LF or control character would
    make every request for the batch fail later. Refused now (exit 2), on the command line
    and in a file, and nothing tracked."""
    ran = cli("track", "job-1", "batch-1", "--tenant", bad)
    assert ran.code == 2
    assert ran.error_line.startswith("nova-sink: error: --tenant: ")

    (cli.tmp_path / "batches.jsonl").write_text(
        json.dumps({"job_id": "job-1", "batch_id": "batch-1", "tenant": bad}) + "\n"
    )
    ran = cli("track", "--from-file", "batches.jsonl")
    assert ran.code == 2
    assert "entry 1: tenant" in ran.error_line
    assert tracked_batches(cli) == []


def test_a_tenant_setting_with_a_line_break_is_a_configuration_error(cli: InProcessCli) -> None:
    """``NOVA_TENANT_ID`` with a CR/LF: one line naming the variable, exit 2."""
    ran = cli("track", "job-1", "batch-1", NOVA_TENANT_ID="t\r\nX-Injected: 1")
    assert ran.code == 2
    assert "NOVA_TENANT_ID" in ran.error_line
    assert tracked_batches(cli) == []


def test_submit_refuses_a_job_id_that_is_not_a_plain_path_segment(cli: InProcessCli) -> None:
    """``submit --job ../x``: exit 2 naming --job, before any request to Nova."""
    (cli.tmp_path / "apps.json").write_text(
        json.dumps({"jobDescription": "Engineer", "applications": APPLICATIONS})
    )

    ran = cli("submit", "apps.json", "--job", "../x", NOVA_API_URL="http://127.0.0.1:9")

    assert ran.code == 2
    assert ran.error_line.startswith("nova-sink: error: --job: ")
    assert tracked_batches(cli) == []


def test_reconcile_refuses_a_batch_id_that_is_not_a_plain_path_segment(cli: InProcessCli) -> None:
    """``reconcile --batch ..``: exit 2 naming --batch (it could never be fetched)."""
    ran = cli("reconcile", "--batch", "..", NOVA_API_URL="http://127.0.0.1:9")

    assert ran.code == 2
    assert ran.error_line.startswith("nova-sink: error: --batch: ")
