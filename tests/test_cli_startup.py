"""CLI start-up stays lean: what ``--help`` and the read-only commands import.

Timings are measured by ``benchmarks/cli_startup.py``, never asserted; these tests pin the
cause instead: which heavy packages a command pulls in.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.cli import common
from storage.db import make_engine, transaction
from tests.cli_inproc import InProcessCli
from tests.factories import NOW, completed
from tests.servers import migrated_database

_PROBE = """
import json, sys
from receiver.cli import run
code = run(sys.argv[1:])
heavy = (
    "pydantic", "pydantic_settings", "sqlalchemy", "sqlalchemy.orm", "sqlmodel",
    "storage.models", "structlog", "markdown_it", "httpx", "starlette", "alembic",
)
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}), file=sys.stderr)
"""


def run_fresh(
    tmp_path: Path, url: str, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``script`` with ``args`` in a fresh interpreter, on the database at ``url`` alone."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def loaded(tmp_path: Path, *args: str) -> list[str]:
    """The heavy modules that running ``nova-sink *args`` in a fresh interpreter imported."""
    url = migrated_database(tmp_path / "e.db")
    engine = make_engine(url)
    try:
        with transaction(engine) as store:
            store.apply_result(completed("sj_1"), source="webhook", now=NOW)
    finally:
        engine.dispose()
    done = run_fresh(tmp_path, url, _PROBE, *args)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return list(report["loaded"])


@pytest.mark.slow
def test_help_imports_no_database_settings_or_markdown_library(tmp_path: Path) -> None:
    """``nova-sink --help`` loads typer and the CLI modules only."""
    assert loaded(tmp_path, "--help") == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("results", "list"),
        ("results", "list", "--json", "--status", "completed", "--since", "7d"),
        ("results", "show", "sj_1", "--json"),
        ("results", "export", "--format", "jsonl"),
    ],
    ids=["list", "list-json-filtered", "show", "export"],
)
def test_result_reads_import_no_table_model_orm_or_settings_library(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """``results list|show|export`` read through SQLAlchemy Core alone: no SQLModel, no
    ``sqlalchemy.orm``, no table models, no pydantic-settings (pydantic is typer's, which
    coerces option values with it), and no structlog, httpx or alembic."""
    assert loaded(tmp_path, *args) == ["pydantic", "sqlalchemy"]


# ---- the cyclic GC is paused for start-up, and resumed -----------------------------------


@pytest.fixture(name="paused")
def fixture_paused() -> Iterator[None]:
    """The collector paused as ``main`` pauses it; this process gets it back afterwards."""
    common.pause_gc()
    assert not gc.isenabled()
    try:
        yield
    finally:
        common.resume_gc()
        gc.unfreeze()


@pytest.mark.usefixtures("paused")
def test_a_quiet_command_resumes_the_collector_once_its_database_is_open(
    cli: InProcessCli,
) -> None:
    """``results list`` keeps it paused through its imports, then resumes it."""
    assert cli("results", "list").code == 0
    assert gc.isenabled()


@pytest.mark.usefixtures("paused")
def test_other_commands_resume_the_collector_first_thing(cli: InProcessCli) -> None:
    """A command that may run for long (here one that stops at its settings) resumes it."""
    assert cli("reconcile", NOVA_API_KEY="").code == 2
    assert gc.isenabled()


def test_resuming_without_a_pause_changes_nothing() -> None:
    """``run`` (tests, embedding) never pauses; a resume then freezes nothing."""
    frozen = gc.get_freeze_count()
    common.resume_gc()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


_MAIN = """
import gc, sys
from receiver.cli import main
sys.argv = ["nova-sink", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    print(exc.code, gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr)
"""


@pytest.mark.slow
def test_the_console_script_pauses_the_collector_and_resumes_it(tmp_path: Path) -> None:
    """``main`` pauses it; ``results list`` resumes it with start-up's objects frozen."""
    url = migrated_database(tmp_path / "e.db")
    done = run_fresh(tmp_path, url, _MAIN, "results", "list")
    assert done.stderr.split() == ["0", "True", "True"], done.stderr
