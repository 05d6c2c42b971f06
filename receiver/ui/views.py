"""View models for the dashboard: what each page shows, computed from stored rows. Pure.

A batch's convergence state answers "is the local copy of this batch complete?":

- ``converged``: Nova finished the batch, we hold a terminal result for every job it
  counts, and no ``batch.completed`` is waiting for reconcile to confirm it;
- ``unreachable``: Nova answered 404 for it run after run (reconcile gave it up), or the
  latest reconcile run reported errors and did not get to this batch (it was tracked
  before the run and not reconciled since the run started);
- ``gaps``: Nova finished the batch and counts more results than we hold;
- ``due``: still scoring at Nova, or waiting for the next reconcile to confirm it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from storage.records import UNREACHABLE, batch_settled


class Convergence(StrEnum):
    CONVERGED = "converged"
    GAPS = "gaps"
    DUE = "due"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class BatchView:
    """One row of the overview's batch table."""

    row: Mapping[Any, Any]
    local_completed: int
    local_failed: int
    local_pending: int
    state: Convergence


def convergence(
    batch: Mapping[Any, Any], local: Mapping[str, int], last_run: Mapping[Any, Any] | None
) -> Convergence:
    """The batch's state (see the module docstring); ``local`` counts results by status."""
    local_done = local.get("completed", 0) + local.get("failed", 0)
    if batch["status"] == UNREACHABLE or _missed_by(last_run, batch):
        return Convergence.UNREACHABLE
    settled = batch_settled(
        batch["status"], batch["completed_jobs"], batch["failed_jobs"], local_done
    )
    if settled and not batch["due"]:
        return Convergence.CONVERGED
    if batch["status"] != "pending" and not settled:
        return Convergence.GAPS
    return Convergence.DUE


def _missed_by(run: Mapping[Any, Any] | None, batch: Mapping[Any, Any]) -> bool:
    if run is None or run["dry_run"] or run["finished_at"] is None or not run["errors"]:
        return False
    reconciled = batch["last_reconciled_at"]
    return batch["tracked_at"] < run["started_at"] and (
        reconciled is None or reconciled < run["started_at"]
    )


def batch_view(
    batch: Mapping[Any, Any], local: Mapping[str, int], last_run: Mapping[Any, Any] | None
) -> BatchView:
    return BatchView(
        row=batch,
        local_completed=local.get("completed", 0),
        local_failed=local.get("failed", 0),
        local_pending=local.get("pending", 0),
        state=convergence(batch, local, last_run),
    )


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (no interpolation: every answer is a measured value)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LagSummary:
    deliveries: int
    p50: float | None
    p95: float | None


def lag_summary(pairs: Sequence[tuple[datetime, datetime]]) -> LagSummary:
    """p50/p95 seconds from Nova finishing a result to our storing it."""
    seconds = [(received - finished).total_seconds() for finished, received in pairs]
    return LagSummary(len(seconds), percentile(seconds, 0.5), percentile(seconds, 0.95))


# Control characters but newline and tab, and lone surrogates: a parsed body may hold
# "\ud800", which no UTF-8 response can carry.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """Stored text with control characters and lone surrogates shown as U+FFFD."""
    return _UNPRINTABLE.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class Body:
    """A body for reading. ``parsed`` is None when only a prefix was read (a list page)."""

    text: str
    parsed: bool | None
    truncated: bool


def pretty_body(
    raw: bytes | None, *, limit: int | None = None, complete: bool = True
) -> Body | None:
    """A raw body for reading: indented JSON when it parses, else the text as received.

    ``complete=False``: ``raw`` is only the start of the body (shown as received, marked
    truncated, not judged as JSON or not).
    """
    if raw is None:
        return None
    if not complete:
        return Body(printable(raw.decode("utf-8", errors="replace")), None, True)
    parsed = True
    try:
        text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # deep nesting raises RecursionError, not ValueError
        parsed = False
        text = raw.decode("utf-8", errors="replace")
    truncated = limit is not None and len(text) > limit
    if truncated:
        text = text[:limit]
    return Body(printable(text), parsed, truncated)


def when(value: datetime | None) -> str:
    """A timestamp as people read it in a UTC tool: ``2026-01-15 12:00:00Z``."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.0f} ms"
    if abs(seconds) < 120:
        return f"{seconds:.1f} s"
    return str(timedelta(seconds=round(seconds)))
