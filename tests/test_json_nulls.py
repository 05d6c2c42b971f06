"""Empty JSON columns hold SQL NULL (``IS NULL`` works in sqlite3, psql and Datasette)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.db import transaction
from storage.records import ScoringResult

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_a_result_without_lists_stores_sql_null_not_the_text_null(engine: Engine) -> None:
    """A failed result has no strengths: the column IS NULL, it does not hold 'null'."""
    with transaction(engine) as store:
        store.apply_result(
            ScoringResult("sj_1", "failed", error_code="X", failed_at=NOW),
            source="webhook",
            now=NOW,
        )
        store.start_run(now=NOW, dry_run=False)

    with engine.connect() as conn:
        nulls = conn.execute(
            sa.text(
                "SELECT strengths IS NULL, concerns IS NULL, interview_focus IS NULL"
                " FROM scoring_job"
            )
        ).one()
        errors_null = conn.execute(sa.text("SELECT errors IS NULL FROM reconcile_run")).scalar()
    assert tuple(bool(v) for v in nulls) == (True, True, True)
    assert bool(errors_null)


def test_migration_0004_turns_stored_null_text_into_sql_null(engine: Engine) -> None:
    """Rows written before 0004 with the JSON text 'null' read as SQL NULL after upgrade."""
    from alembic import command

    from storage import schema

    with engine.begin() as conn:
        command.downgrade(schema._config(conn), "0001")  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO scoring_job (scoring_job_id, status, source, first_seen_at,"
                " updated_at, delivery_count, strengths, concerns, interview_focus)"
                " VALUES ('sj_old', 'failed', 'webhook', :t, :t, 1, 'null', 'null', '[\"x\"]')"
            ),
            {"t": NOW.replace(tzinfo=None)},
        )

    schema.upgrade(engine)

    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT strengths IS NULL, concerns IS NULL, interview_focus FROM scoring_job")
        ).one()
    assert (bool(row[0]), bool(row[1])) == (True, True)
    assert row[2] in ('["x"]', ["x"])
