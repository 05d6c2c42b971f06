"""inbox identity through ordered indexes: (scoring_job_id, delivery_key), key alone without a job

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

The key stays unique, with the same rows: a delivery's scoring job id is a function of its
body, so ``(scoring_job_id, delivery_key)`` is unique where the key was; deliveries without
a job keep a unique index on the key alone. The unique constraint on the key (a random
hash: a page of its own in every commit for every delivery) and the index on the job id
(the new index's first column) go. On SQLite the table is rebuilt (its unique constraint
is part of the table), so the upgrade takes as long as copying the inbox once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite's constraint has no name; batch mode names it by this convention to drop it.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_SQLITE_KEY_CONSTRAINT = "uq_delivery_delivery_key"
_WITH_JOB = "scoring_job_id IS NOT NULL"
_WITHOUT_JOB = "scoring_job_id IS NULL"


def upgrade() -> None:
    _drop_key_constraint_and_job_index()
    _partial_unique("ux_delivery_job_key", ["scoring_job_id", "delivery_key"], _WITH_JOB)
    _partial_unique("ux_delivery_key_without_job", ["delivery_key"], _WITHOUT_JOB)


def downgrade() -> None:
    op.drop_index("ux_delivery_key_without_job", table_name="delivery")
    op.drop_index("ux_delivery_job_key", table_name="delivery")
    op.create_index("ix_delivery_scoring_job_id", "delivery", ["scoring_job_id"], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("delivery", naming_convention=_NAMING) as batch_op:
            batch_op.create_unique_constraint(_SQLITE_KEY_CONSTRAINT, ["delivery_key"])
    else:
        op.create_unique_constraint("delivery_delivery_key_key", "delivery", ["delivery_key"])


def _drop_key_constraint_and_job_index() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":  # one rebuild of the table, without either
        with op.batch_alter_table(
            "delivery", naming_convention=_NAMING, recreate="always"
        ) as batch_op:
            batch_op.drop_constraint(_SQLITE_KEY_CONSTRAINT, type_="unique")
            batch_op.drop_index("ix_delivery_scoring_job_id")
        return
    for constraint in sa.inspect(bind).get_unique_constraints("delivery"):
        name = constraint["name"]
        if constraint["column_names"] == ["delivery_key"] and name is not None:
            op.drop_constraint(name, "delivery", type_="unique")
    op.drop_index("ix_delivery_scoring_job_id", table_name="delivery")


def _partial_unique(name: str, columns: list[str], where: str) -> None:
    op.create_index(
        name,
        "delivery",
        columns,
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )
