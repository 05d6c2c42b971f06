"""change feed: result_change, change_counter; first-seen index for keyset paging

Existing results are numbered as creations, oldest first, so that a consumer starting
from the beginning of the feed sees every stored result.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_change",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("scoring_job_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=True),
        sa.Column("batch_id", sa.String(), nullable=True),
        sa.Column("changed_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("result_change", schema=None) as batch_op:
        batch_op.create_index("ix_result_change_job_id_seq", ["job_id", "seq"], unique=False)
        batch_op.create_index("ix_result_change_batch_id_seq", ["batch_id", "seq"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_result_change_scoring_job_id"), ["scoring_job_id"], unique=False
        )
    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("scoring_job", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scoring_job_first_seen_at_id", ["first_seen_at", "scoring_job_id"], unique=False
        )
    # Number the results already stored, oldest first (one statement, both dialects).
    op.execute(
        """
        INSERT INTO result_change (seq, scoring_job_id, kind, status, job_id, batch_id, changed_at)
        SELECT ROW_NUMBER() OVER (ORDER BY first_seen_at, scoring_job_id),
               scoring_job_id, 'created', status, job_id, batch_id, updated_at
        FROM scoring_job
        """
    )
    op.execute("INSERT INTO change_counter (id, seq) SELECT 1, COUNT(*) FROM scoring_job")


def downgrade() -> None:
    with op.batch_alter_table("scoring_job", schema=None) as batch_op:
        batch_op.drop_index("ix_scoring_job_first_seen_at_id")
    op.drop_table("change_counter")
    with op.batch_alter_table("result_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_change_scoring_job_id"))
        batch_op.drop_index("ix_result_change_batch_id_seq")
        batch_op.drop_index("ix_result_change_job_id_seq")
    op.drop_table("result_change")
