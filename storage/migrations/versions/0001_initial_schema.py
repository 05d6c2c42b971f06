"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch",
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=True),
        sa.Column("api", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("nova_status", sa.String(), nullable=True),
        sa.Column("total_jobs", sa.Integer(), nullable=True),
        sa.Column("completed_jobs", sa.Integer(), nullable=True),
        sa.Column("failed_jobs", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tracked_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_reconciled_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("due", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batch_due"), ["due"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_job_id"), ["job_id"], unique=False)

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_key", sa.String(), nullable=False),
        sa.Column("webhook_id", sa.String(), nullable=True),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("scoring_job_id", sa.String(), nullable=True),
        sa.Column("batch_id", sa.String(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("signature_scheme", sa.String(), nullable=False),
        sa.Column("secret_fingerprint", sa.String(), nullable=False),
        sa.Column("received_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=True),
        sa.Column("body_purged_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_key"),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_event"), ["event"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_received_at"), ["received_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_delivery_scoring_job_id"), ["scoring_job_id"], unique=False
        )

    op.create_table(
        "lease",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "reconcile_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("batches_checked", sa.Integer(), nullable=False),
        sa.Column("results_added", sa.Integer(), nullable=False),
        sa.Column("results_updated", sa.Integer(), nullable=False),
        sa.Column("rejected_recorded", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("gaps_remaining", sa.Integer(), nullable=False),
        sa.Column("converged", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "scoring_job",
        sa.Column("scoring_job_id", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=True),
        sa.Column("application_id", sa.String(), nullable=True),
        sa.Column("batch_id", sa.String(), nullable=True),
        sa.Column("tenant_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("nova_status", sa.String(), nullable=True),
        sa.Column("is_rescore", sa.Boolean(), nullable=True),
        sa.Column("criteria_version_id", sa.String(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=True),
        sa.Column("strengths", sa.JSON(), nullable=True),
        sa.Column("concerns", sa.JSON(), nullable=True),
        sa.Column("interview_focus", sa.JSON(), nullable=True),
        sa.Column("error_type", sa.String(), nullable=True),
        sa.Column("error_code", sa.String(), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("queued_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("first_seen_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivery_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scoring_job_id"),
    )
    with op.batch_alter_table("scoring_job", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scoring_job_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_scoring_job_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_scoring_job_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_scoring_job_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_scoring_job_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "rejected_application",
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("application_id", sa.String(), nullable=False),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("message", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("recorded_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.batch_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "application_id"),
    )


def downgrade() -> None:
    op.drop_table("rejected_application")
    with op.batch_alter_table("scoring_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_job_updated_at"))
        batch_op.drop_index(batch_op.f("ix_scoring_job_status"))
        batch_op.drop_index(batch_op.f("ix_scoring_job_job_id"))
        batch_op.drop_index(batch_op.f("ix_scoring_job_batch_id"))
        batch_op.drop_index(batch_op.f("ix_scoring_job_application_id"))

    op.drop_table("scoring_job")
    op.drop_table("reconcile_run")
    op.drop_table("lease")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_scoring_job_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_received_at"))
        batch_op.drop_index(batch_op.f("ix_delivery_event"))

    op.drop_table("delivery")
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_job_id"))
        batch_op.drop_index(batch_op.f("ix_batch_due"))

    op.drop_table("batch")
