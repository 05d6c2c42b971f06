"""signature pins: the construction learned per webhook secret

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: existing rows of every other table are untouched.
    op.create_table(
        "signature_pin",
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("construction", sa.String(), nullable=False),
        sa.Column("pinned_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("signature_pin")
