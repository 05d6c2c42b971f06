"""CLI start-up stays lean: what ``--help`` and the read-only commands import.

Timings are measured by ``benchmarks/cli_startup.py``, never asserted; these tests pin the
cause instead: which heavy packages a command pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage.db import make_engine, transaction
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


def loaded(tmp_path: Path, *args: str) -> list[str]:
    """The heavy modules that running ``nova-sink *args`` in a fresh interpreter imported."""
    url = migrated_database(tmp_path / "e.db")
    engine = make_engine(url)
    try:
        with transaction(engine) as store:
            store.apply_result(completed("sj_1"), source="webhook", now=NOW)
    finally:
        engine.dispose()
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
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
