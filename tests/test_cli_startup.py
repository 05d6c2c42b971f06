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

from tests.servers import migrated_database

_PROBE = """
import json, sys
from receiver.cli import run
code = run(sys.argv[1:])
heavy = ("pydantic", "sqlalchemy", "structlog", "markdown_it", "httpx", "starlette", "alembic")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}), file=sys.stderr)
"""


def loaded(tmp_path: Path, *args: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": migrated_database(tmp_path / "e.db")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=tmp_path,
        env=env,
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
def test_results_list_does_not_import_the_logging_or_http_stack(tmp_path: Path) -> None:
    """A read-only listing needs settings and the database, not structlog, httpx or alembic."""
    assert loaded(tmp_path, "results", "list") == ["pydantic", "sqlalchemy"]
