"""change feed: no index on result_change.scoring_job_id

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

Only ``erase`` looks feed rows up by scoring job id, and it is a rare operator command;
every commit paid for the index instead, a page per group and an insert per change (3 %
of the commit process: benchmarks/README.md, ninth pass). ``erase`` now reads the feed
whole: 0.09 s per million changes on SQLite.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_result_change_scoring_job_id", table_name="result_change")


def downgrade() -> None:
    op.create_index(
        "ix_result_change_scoring_job_id", "result_change", ["scoring_job_id"], unique=False
    )
