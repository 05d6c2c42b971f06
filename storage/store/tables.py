"""The tables the store's statements are built on, with short column namespaces."""

from __future__ import annotations

import sqlalchemy as sa

from storage.models import (
    Batch,
    ChangeCounter,
    Delivery,
    ErasedApplication,
    Lease,
    ReconcileRun,
    RejectedApplicationRow,
    ResultChangeRow,
    ScoringJob,
    SignaturePin,
)

JOBS: sa.Table = ScoringJob.__table__  # type: ignore[attr-defined]
BATCHES: sa.Table = Batch.__table__  # type: ignore[attr-defined]
REJECTED: sa.Table = RejectedApplicationRow.__table__  # type: ignore[attr-defined]
DELIVERIES: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
RUNS: sa.Table = ReconcileRun.__table__  # type: ignore[attr-defined]
LEASES: sa.Table = Lease.__table__  # type: ignore[attr-defined]
CHANGES: sa.Table = ResultChangeRow.__table__  # type: ignore[attr-defined]
COUNTER: sa.Table = ChangeCounter.__table__  # type: ignore[attr-defined]
ERASED: sa.Table = ErasedApplication.__table__  # type: ignore[attr-defined]
PINS: sa.Table = SignaturePin.__table__  # type: ignore[attr-defined]
j, b, r, d = JOBS.c, BATCHES.c, REJECTED.c, DELIVERIES.c
