"""The CLI against PostgreSQL: explicit migrations, and a clear refusal before them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_cli_subprocess, scrubbed_env
from tests.cli_inproc import InProcessCli

pytestmark = pytest.mark.postgres

SECRET = "whsec_cli_postgres_secret_0123456789"


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


@pytest.fixture(name="cli")
def fixture_cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    empty_schema_url: str,
) -> InProcessCli:
    env = {"DATABASE_URL": empty_schema_url, "NOVA_WEBHOOK_SECRETS": SECRET}
    return InProcessCli(capsys, monkeypatch, tmp_path, env, [SECRET])


# A real process: the refusal leaves its engine undisposed (receiver/cli/common.py
# ``open_engine``), which in process would surface as a ResourceWarning in a later test.
@pytest.mark.slow
def test_serve_refuses_an_unmigrated_postgres_database_in_one_line(
    tmp_path: Path, empty_schema_url: str
) -> None:
    """PostgreSQL is never migrated implicitly: serve names the command to run, no traceback."""
    env = scrubbed_env(DATABASE_URL=empty_schema_url, NOVA_WEBHOOK_SECRETS=SECRET)
    result = run_cli_subprocess(tmp_path, "serve", "--port", "1", env=env, secrets=[SECRET])
    assert result.code == 1
    assert "nova-sink db upgrade" in result.error_line


def test_db_upgrade_then_current_reports_the_head(cli: InProcessCli) -> None:
    """db upgrade creates the schema; db current then exits 0 and prints the head revision."""
    before = cli("db", "current")
    assert before.code == 1
    upgraded = cli("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert "upgraded from nothing" in upgraded.out
    after = cli("db", "current", "--json")
    assert after.code == 0
    assert '"up_to_date": true' in after.out
