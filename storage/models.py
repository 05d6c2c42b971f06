"""SQLModel tables. Readable with plain ``sqlite3``: snake_case columns named after Nova's fields.

Table models do not validate (SQLModel skips validation for ``table=True``); values are
validated by ``receiver.events`` / ``receiver.nova`` before they get here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Re-exported (mypy's explicit form): the migrations and ``storage.store.dialect`` import it
# from here.
from storage.types import UTCDateTime as UTCDateTime  # noqa: PLC0414
from storage.types import json_column_type


def _ts(*, index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)


def _json() -> Any:
    return Field(default=None, sa_type=json_column_type())


class ScoringJob(SQLModel, table=True):
    """One row per ``scoringJobId``; a rescore is a separate row."""

    __tablename__ = "scoring_job"

    scoring_job_id: str = Field(primary_key=True)
    job_id: str | None = Field(default=None, index=True)
    application_id: str | None = Field(default=None, index=True)
    batch_id: str | None = Field(default=None, index=True)
    tenant_id: str | None = None
    status: str = Field(index=True)  # pending | completed | failed
    nova_status: str | None = None  # Nova's original spelling
    is_rescore: bool | None = None
    criteria_version_id: str | None = None
    score: int | None = None
    verdict: str | None = None
    strengths: list[str] | None = _json()
    concerns: list[str] | None = _json()
    interview_focus: list[str] | None = _json()
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    queued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    failed_at: datetime | None = _ts()
    source: str  # webhook | reconcile | submit
    first_seen_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(index=True, nullable=False)
    delivery_count: int = 0

    # Keyset paging of the read API walks results newest first by this pair.
    __table_args__ = (
        sa.Index("ix_scoring_job_first_seen_at_id", "first_seen_at", "scoring_job_id"),
    )


class Batch(SQLModel, table=True):
    """A tracked scoring batch."""

    __tablename__ = "batch"

    batch_id: str = Field(primary_key=True)
    job_id: str = Field(index=True)
    tenant_id: str | None = None
    api: str = "v1"  # v1 | legacy
    status: str = "pending"  # pending | completed | failed
    nova_status: str | None = None
    total_jobs: int | None = None
    completed_jobs: int | None = None
    failed_jobs: int | None = None
    created_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    tracked_at: datetime = _ts(nullable=False)
    last_reconciled_at: datetime | None = _ts()
    due: bool = Field(default=True, index=True)
    # Consecutive reconcile runs that Nova answered 404 for this batch; at
    # ``UNREACHABLE_AFTER`` the batch becomes ``unreachable`` and stops being reconciled.
    not_found_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class RejectedApplicationRow(SQLModel, table=True):
    """An application Nova rejected at batch intake."""

    __tablename__ = "rejected_application"

    batch_id: str = Field(primary_key=True, foreign_key="batch.batch_id", ondelete="CASCADE")
    application_id: str = Field(primary_key=True)
    code: str | None = None
    message: str | None = None
    reason: str | None = None
    recorded_at: datetime = _ts(nullable=False)


# The inbox's two unique indexes cover these rows each (``Delivery``; the upserts name them).
WITH_JOB = "scoring_job_id IS NOT NULL"
WITHOUT_JOB = "scoring_job_id IS NULL"


class Delivery(SQLModel, table=True):
    """The inbox: one row per distinct signed delivery, with the raw signed bytes.

    ``delivery_key`` is the body's SHA-256, plus the webhook id only when the signature
    covers it (``storage.records.inbox_key``); ``webhook_id`` is recorded either way.
    ``webhook_id_reused``: this row's webhook id had already come with another body.

    The key is unique through two partial indexes, not through one index on the
    key: a hash is random, so an index on it alone took a page of its own in every commit
    for every delivery (a quarter of a SQLite commit's pages, and its checkpoints' scattered
    writes: benchmarks/README.md, ninth pass). A delivery's scoring job id is a function of
    its body, hence of its key, so ``(scoring_job_id, delivery_key)`` is unique exactly when
    the key is; Nova's ids are time-ordered (cuid), so that index grows at its right edge,
    and it serves look-ups by job too. Deliveries without a job (tests, batch summaries,
    unparsed bodies: few) are unique by key alone. A replay that reads a job id from an
    unparsed body fills it in only where that keeps the key unique (``update_delivery``).
    """

    __tablename__ = "delivery"
    __table_args__ = (
        sa.Index(
            "ux_delivery_job_key",
            "scoring_job_id",
            "delivery_key",
            unique=True,
            sqlite_where=sa.text(WITH_JOB),
            postgresql_where=sa.text(WITH_JOB),
        ),
        sa.Index(
            "ux_delivery_key_without_job",
            "delivery_key",
            unique=True,
            sqlite_where=sa.text(WITHOUT_JOB),
            postgresql_where=sa.text(WITHOUT_JOB),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_key: str
    webhook_id: str | None = Field(default=None, index=True)
    body_sha256: str | None = None  # None only for rows whose body was purged before 0002
    webhook_id_reused: bool = False
    event: str | None = Field(default=None, index=True)
    scoring_job_id: str | None = None  # looked up through ux_delivery_job_key
    batch_id: str | None = None
    outcome: str
    signature_scheme: str
    secret_fingerprint: str
    received_at: datetime = _ts(index=True, nullable=False)
    last_received_at: datetime = _ts(nullable=False)
    attempts: int = 1
    # Bytes, not text: NUL bytes and lone surrogates in a signed payload must not fail the insert.
    raw_body: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    body_purged_at: datetime | None = _ts()
    # What the last ``deliveries replay`` made of it; ``outcome`` stays what Nova got.
    replay_outcome: str | None = None
    replayed_at: datetime | None = _ts()


class ErasedApplication(SQLModel, table=True):
    """A tombstone: an application whose data was erased and must never be re-imported.

    Only the id is kept (it identifies nobody without the erased rows).
    """

    __tablename__ = "erased_application"

    application_id: str = Field(primary_key=True)
    erased_at: datetime = _ts(nullable=False)


class ReconcileRun(SQLModel, table=True):
    """One ``nova-sink reconcile`` run."""

    __tablename__ = "reconcile_run"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts()
    dry_run: bool = False
    batches_checked: int = 0
    results_added: int = 0
    results_updated: int = 0
    rejected_recorded: int = 0
    errors: dict[str, int] | None = _json()
    gaps_remaining: int = 0
    converged: bool = False


class Lease(SQLModel, table=True):
    """Named leases, so that overlapping cron runs of one job never work the same database."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = _ts(nullable=False)


class ResultChangeRow(SQLModel, table=True):
    """The change feed: one row per change a consumer can see, numbered in commit order.

    ``seq`` is handed out by ``ChangeCounter`` in the committing transaction, so numbers
    become visible in increasing order even with several writers (see ``store.changes``).
    ``status``, ``job_id`` and ``batch_id`` are the result's values at that change, for
    filtering the feed without a join.
    """

    __tablename__ = "result_change"
    __table_args__ = (
        sa.Index("ix_result_change_job_id_seq", "job_id", "seq"),
        sa.Index("ix_result_change_batch_id_seq", "batch_id", "seq"),
    )

    seq: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    scoring_job_id: str  # no index: only erase looks rows up by it (migration 0007)
    kind: str  # created | updated
    status: str
    job_id: str | None = None
    batch_id: str | None = None
    changed_at: datetime = _ts(nullable=False)


class ChangeCounter(SQLModel, table=True):
    """One row: the last change sequence number handed out. Its row lock orders committers."""

    __tablename__ = "change_counter"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class SignaturePin(SQLModel, table=True):
    """The signed-message construction learned for one webhook secret (NOVA.md, Decision 1).

    Keyed by the secret's fingerprint, never the secret. Only learned pins are stored: a
    construction configured with ``NOVA_SIGNATURE_CONSTRUCTION`` overrides every row.
    """

    __tablename__ = "signature_pin"

    fingerprint: str = Field(primary_key=True)
    construction: str  # body | timestamp.body | id.timestamp.body
    pinned_at: datetime = _ts(nullable=False)


METADATA = SQLModel.metadata
