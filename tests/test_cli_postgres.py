"""The CLI against PostgreSQL: explicit migrations, and a clear refusal before them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres

CLI = str(Path(sys.executable).parent / "nova-sink")


@pytest.fixture(name="empty_schema_url")
def fixture_empty_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new, empty schema (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        admin.dispose()


def run(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOVA_", "DATABASE_"))}
    env.update(DATABASE_URL=url, NOVA_WEBHOOK_SECRETS="whsec_cli_postgres_secret")
    return subprocess.run(
        [CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_refuses_an_unmigrated_postgres_database_in_one_line(
    tmp_path: Path, empty_schema_url: str
) -> None:
    """PostgreSQL is never migrated implicitly: serve names the command to run, no traceback."""
    result = run(tmp_path, empty_schema_url, "serve", "--port", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nova-sink db upgrade" in lines[0]
    assert "Traceback" not in result.stderr


def test_db_upgrade_then_current_reports_the_head(tmp_path: Path, empty_schema_url: str) -> None:
    """db upgrade creates the schema; db current then exits 0 and prints the head revision."""
    before = run(tmp_path, empty_schema_url, "db", "current")
    assert before.returncode == 1
    upgraded = run(tmp_path, empty_schema_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from nothing" in upgraded.stdout
    after = run(tmp_path, empty_schema_url, "db", "current", "--json")
    assert after.returncode == 0
    assert '"up_to_date": true' in after.stdout
