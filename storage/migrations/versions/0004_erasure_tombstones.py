"""erasure tombstones, replay outcome, unreachable batches, SQL NULL for empty JSON

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON_COLUMNS = ("strengths", "concerns", "interview_focus")


def upgrade() -> None:
    op.create_table(
        "erased_application",
        sa.Column("application_id", sa.String(), nullable=False),
        sa.Column("erased_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("application_id"),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replay_outcome", sa.String(), nullable=True))
        batch_op.add_column(
            sa.Column("replayed_at", storage.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("not_found_count", sa.Integer(), nullable=False, server_default="0")
        )
    # Empty JSON values were written as the JSON text 'null'; they become SQL NULL.
    is_pg = op.get_bind().dialect.name == "postgresql"
    for column in (*_JSON_COLUMNS, "errors"):
        table = "reconcile_run" if column == "errors" else "scoring_job"
        value = f"{column}::text" if is_pg else column
        op.execute(f"UPDATE {table} SET {column} = NULL WHERE {value} = 'null'")  # noqa: S608 - constant names


def downgrade() -> None:
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.drop_column("not_found_count")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("replayed_at")
        batch_op.drop_column("replay_outcome")
    op.drop_table("erased_application")
