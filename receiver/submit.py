"""The submit use case: create scoring batches in Nova and start tracking them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from receiver.nova import CreatedBatch, NovaClient
from storage.db import Engine, transaction
from storage.store import ResultChange

MAX_APPLICATIONS_PER_BATCH = 25  # Nova's documented limit per scoring-batch request


def chunked(items: Sequence[Any], size: int = MAX_APPLICATIONS_PER_BATCH) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def submit_batches(
    client: NovaClient,
    engine: Engine,
    *,
    job_id: str,
    tenant_id: str | None,
    fields: Mapping[str, Any],
    applications: Sequence[Mapping[str, Any]],
    now: Callable[[], datetime],
) -> list[CreatedBatch]:
    """Submit ``applications`` in batches of 25; record each batch, its scoring jobs (pending)
    and its rejected applications as soon as Nova accepted it."""
    created = []
    for chunk in chunked(applications):
        answer = await client.create_scoring_batch(
            job_id, {**fields, "applications": chunk}, tenant_id=tenant_id
        )
        await asyncio.to_thread(_record, engine, answer, job_id, tenant_id, now())
        created.append(answer)
    return created


def _record(
    engine: Engine, answer: CreatedBatch, job_id: str, tenant_id: str | None, now: datetime
) -> None:
    with transaction(engine) as store:
        store.track_batch(answer.batch, now=now)
        created = store.track_pending_jobs(
            scoring_job_ids=answer.scoring_job_ids,
            batch_id=answer.batch.batch_id,
            job_id=job_id,
            tenant_id=tenant_id,
            now=now,
        )
        store.record_rejected(answer.rejected, now=now)
        # The change feed: pending results are results too (last: it takes the counter lock).
        store.log_changes([ResultChange(i, "created") for i in created], now=now)
