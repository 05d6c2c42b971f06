"""Plain values that cross the storage boundary, and the precedence rules. Pure: no I/O.

Webhooks and reconciliation both describe a scoring job as a ``ScoringResult``; both go
through ``decide`` so that the order in which they arrive never changes the final row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

Status = Literal["pending", "completed", "failed"]
STATUSES: tuple[Status, ...] = get_args(Status)
Api = Literal["v1", "legacy"]

# Higher wins. Nothing ever goes back to a non-terminal status, and completed outranks failed.
_RANK: dict[str, int] = {"pending": 0, "failed": 1, "completed": 2}


class Outcome(StrEnum):
    """What an incoming state did to the stored result (also the webhook response status)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class ScoringResult:
    """One scoring job as Nova describes it, from a webhook or from the API."""

    scoring_job_id: str
    status: Status
    nova_status: str | None = None
    job_id: str | None = None
    application_id: str | None = None
    tenant_id: str | None = None
    batch_id: str | None = None
    criteria_version_id: str | None = None
    is_rescore: bool | None = None
    score: int | None = None
    verdict: str | None = None
    strengths: tuple[str, ...] | None = None
    concerns: tuple[str, ...] | None = None
    interview_focus: tuple[str, ...] | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None

    @property
    def event_at(self) -> datetime | None:
        """When the terminal event this state reflects happened."""
        return _event_at(self.status, self.completed_at, self.failed_at)

    def columns(self) -> dict[str, Any]:
        """Column values for ``scoring_job`` (lists for the JSON columns)."""
        values = {name: getattr(self, name) for name in _RESULT_FIELDS}
        for name in _LIST_FIELDS:
            if values[name] is not None:
                values[name] = list(values[name])
        return values


_RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ScoringResult))
_LIST_FIELDS = ("strengths", "concerns", "interview_focus")

# Columns that only ever fill a gap: whoever knows them first wins, nobody erases them.
ENRICHMENT_COLUMNS: tuple[str, ...] = (
    "job_id",
    "application_id",
    "tenant_id",
    "batch_id",
    "criteria_version_id",
    "is_rescore",
    "queued_at",
    "started_at",
)
DATA_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(ScoringResult) if f.name not in {"scoring_job_id", *ENRICHMENT_COLUMNS}
)


@dataclass(frozen=True, slots=True)
class StoredState:
    """The part of a stored row that precedence looks at."""

    status: Status
    completed_at: datetime | None
    failed_at: datetime | None

    @property
    def event_at(self) -> datetime | None:
        return _event_at(self.status, self.completed_at, self.failed_at)


def _event_at(
    status: Status, completed_at: datetime | None, failed_at: datetime | None
) -> datetime | None:
    if status == "completed":
        return completed_at
    if status == "failed":
        return failed_at
    return None


def decide(existing: StoredState | None, incoming: ScoringResult) -> Outcome:
    """Whether ``incoming`` replaces the stored state (applied), repeats it, or lost to it."""
    if existing is None:
        return Outcome.APPLIED
    rank_in, rank_ex = _RANK[incoming.status], _RANK[existing.status]
    if rank_in != rank_ex:
        return Outcome.APPLIED if rank_in > rank_ex else Outcome.STALE
    if incoming.status == "pending":
        return Outcome.DUPLICATE
    new, old = incoming.event_at, existing.event_at
    if new is None or new == old:
        return Outcome.DUPLICATE
    if old is None or new > old:
        return Outcome.APPLIED  # a newer terminal event may update fields
    return Outcome.STALE


def merge(row: Mapping[Any, Any], incoming: ScoringResult, outcome: Outcome) -> dict[str, Any]:
    """The column updates that ``incoming`` makes to the stored ``row``, given ``outcome``.

    - Enrichment columns (ids, queue times) fill gaps, whoever brings them.
    - An applied state replaces every data column with its own values, empty ones
      included: the row is always one coherent assessment (the winning event's), never a
      blend of an old verdict with a new score, so the final row is the same whatever
      order the events arrived in.
    - A duplicate or stale state changes no data (a failure after a completion erases
      nothing).
    """
    values = incoming.columns()
    updates = {c: values[c] for c in ENRICHMENT_COLUMNS if row[c] is None and values[c] is not None}
    if outcome is Outcome.APPLIED:
        updates.update({c: values[c] for c in DATA_COLUMNS if row[c] != values[c]})
    return updates


@dataclass(frozen=True, slots=True)
class BatchState:
    """A scoring batch as tracked locally or reported by Nova."""

    batch_id: str
    job_id: str
    tenant_id: str | None = None
    api: Api = "v1"
    status: Status = "pending"
    nova_status: str | None = None
    total_jobs: int | None = None
    completed_jobs: int | None = None
    failed_jobs: int | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None


# The inbox outcome of a verified body that was kept, not applied (replayable later).
STORED_UNPARSED = "stored-unparsed"

# The inbox outcome of a score event for a candidate ``erase`` removed (a webhook Nova sent,
# or retried, after the erasure): neither its result nor its body is kept.
ERASED = "erased"

# A batch status of ours, beside Nova's: Nova answered 404 for it run after run, and
# reconcile stopped asking (``nova-sink batches untrack`` or ``reconcile --batch`` revive it).
UNREACHABLE = "unreachable"


def batch_settled(
    status: str, completed_jobs: int | None, failed_jobs: int | None, local_terminal: int
) -> bool:
    """Whether a batch's local copy is complete: Nova finished the batch, and we hold a
    terminal result for every job Nova counts as finished.

    The one definition of "no gap left in this batch". Reconcile clears a batch's ``due``
    flag by it, the dashboard's convergence state reads it, and the store's SQL for
    "batches with a gap" (``storage.store.batches.settled_clause``) says the same thing,
    held equal to this function by a property test on both databases.
    """
    if status == "pending":
        return False
    return local_terminal >= (completed_jobs or 0) + (failed_jobs or 0)


@dataclass(frozen=True, slots=True)
class RejectedApplication:
    """An application Nova refused at batch intake: no scoring job, no webhook."""

    batch_id: str
    application_id: str
    code: str | None
    message: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class InboundDelivery:
    """A verified webhook delivery, as the inbox records it."""

    delivery_key: str
    webhook_id: str | None
    event: str | None
    body: bytes
    signature_scheme: str
    secret_fingerprint: str
    scoring_job_id: str | None = None
    batch_id: str | None = None
    body_sha256: str | None = None  # computed from ``body`` when not given

    def digest(self) -> str:
        """The hex SHA-256 of the body."""
        return self.body_sha256 or hashlib.sha256(self.body).hexdigest()


MAX_WEBHOOK_ID_LENGTH = 200


def storable_webhook_id(value: str | None) -> str | None:
    """``value`` when it is sane text for a column, else None (NUL, control, overlong)."""
    if value is None or len(value) > MAX_WEBHOOK_ID_LENGTH:
        return None
    return value if value.isascii() and value.isprintable() else None


def inbox_key(body_sha256: str, signed_id: str | None) -> str:
    """An inbox row's identity (NOVA.md, decision 4): the body's SHA-256, plus the webhook id
    only when the signature covers it (``signed_id``).

    An unsigned id proves nothing, so it never splits or merges rows. The forms cannot
    collide: a hex digest never contains ``/``, and an id no column should hold is keyed
    by its own digest under another tag.
    """
    key = "sha256:" + body_sha256
    if signed_id is None:
        return key
    if storable_webhook_id(signed_id) is not None:
        return f"{key}/id:{signed_id}"
    raw = signed_id.encode("utf-8", "surrogatepass")
    return f"{key}/id-sha256:{hashlib.sha256(raw).hexdigest()}"
