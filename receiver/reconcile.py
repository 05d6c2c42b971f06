"""Reconciliation: close every gap between the local store and Nova's truth.

``plan_*`` functions are pure: they decide what to fetch from what is stored. ``Reconciler``
is the thin shell around them: it reads the gaps, calls Nova with bounded concurrency (the
client rate-limits and retries), and writes each batch in one transaction with the same
precedence rules as the webhook path. A lease keeps overlapping cron runs apart.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from receiver.errors import NovaApiError, NovaHttpError, NovaSinkError, leaf_error
from receiver.nova import LegacyJobRef, NovaClient
from storage.db import Engine, transaction
from storage.errors import LeaseHeld
from storage.records import Api, BatchState, RejectedApplication, ScoringResult, batch_settled
from storage.store import ResultChange, Store, feed_change

_T = TypeVar("_T")
_R = TypeVar("_R")

LEASE_NAME = "reconcile"
LEASE_TTL = timedelta(minutes=10)
DEFAULT_GRACE = timedelta(minutes=5)


class BatchNotTracked(NovaSinkError):
    """``--batch ID`` names a batch this database does not track."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id!r} is not tracked")
        self.batch_id = batch_id


# ---- pure planning ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchTarget:
    batch_id: str
    job_id: str
    tenant_id: str | None
    api: Api


@dataclass(frozen=True, slots=True)
class JobTarget:
    """A pending scoring job that no tracked batch covers: fetched on its own."""

    scoring_job_id: str
    job_id: str | None
    application_id: str | None
    tenant_id: str | None


def plan_batches(rows: Iterable[Mapping[Any, Any]]) -> list[BatchTarget]:
    """Batch rows with a gap → what to fetch."""
    return [
        BatchTarget(row["batch_id"], row["job_id"], row["tenant_id"], row["api"]) for row in rows
    ]


def plan_jobs(rows: Iterable[Mapping[Any, Any]]) -> list[JobTarget]:
    return [
        JobTarget(row["scoring_job_id"], row["job_id"], row["application_id"], row["tenant_id"])
        for row in rows
    ]


def plan_legacy_fetches(
    refs: Sequence[LegacyJobRef], local_status: Mapping[str, str]
) -> list[LegacyJobRef]:
    """Legacy batches list statuses only: fetch the details of jobs Nova finished that we
    do not hold in that state. Jobs still pending at Nova have nothing to fetch yet."""
    return [
        ref
        for ref in refs
        if ref.status != "pending" and local_status.get(ref.scoring_job_id) != ref.status
    ]


# ---- the run ----------------------------------------------------------------------------


@dataclass
class Summary:
    """What one run did; ``as_dict`` is the ``--json`` output and the ``reconcile_run`` row."""

    dry_run: bool = False
    batches_checked: int = 0
    jobs_checked: int = 0
    results_added: int = 0
    results_updated: int = 0
    results_enriched: int = 0  # only filled fields a webhook does not carry
    rejected_recorded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_details: list[dict[str, str]] = field(default_factory=list)
    gaps_remaining: int = 0
    erased_skipped: int = 0  # results and rejections of erased applications not re-imported
    batches_unreachable: list[str] = field(default_factory=list)  # given up on this run
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    run_id: int | None = None

    @property
    def converged(self) -> bool:
        return self.gaps_remaining == 0 and not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "batches_checked": self.batches_checked,
            "jobs_checked": self.jobs_checked,
            "results_added": self.results_added,
            "results_updated": self.results_updated,
            "results_enriched": self.results_enriched,
            "rejected_recorded": self.rejected_recorded,
            "errors": dict(self.errors),
            "error_details": self.error_details[:50],
            "gaps_remaining": self.gaps_remaining,
            "converged": self.converged,
            "erased_skipped": self.erased_skipped,
            "batches_unreachable": self.batches_unreachable,
            "requests": self.requests,
            "retries": self.retries,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True, slots=True)
class _Fetched:
    """Nova's view of one batch, ready to write."""

    target: BatchTarget
    batch: BatchState
    jobs: tuple[ScoringResult, ...]
    rejected: tuple[RejectedApplication, ...]


class Reconciler:
    """One reconcile run over ``engine`` with ``client``. Seams: ``now``, ``client``, ``engine``."""

    def __init__(
        self,
        engine: Engine,
        client: NovaClient,
        *,
        now: Callable[[], datetime],
        concurrency: int = 8,
        grace: timedelta = DEFAULT_GRACE,
        dry_run: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.now = now
        self.concurrency = max(1, concurrency)
        self.grace = grace
        self.dry_run = dry_run
        self.on_progress = on_progress
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.summary = Summary(dry_run=dry_run)
        self._done = 0
        self._total = 0
        self._write_lane = asyncio.Lock()

    async def run(self, *, batch_id: str | None = None) -> Summary:
        """Reconcile every gap (or one batch); returns the summary."""
        started = time.perf_counter()
        run_id = None
        if not self.dry_run:
            run_id = await asyncio.to_thread(self._begin)
        try:
            batches, jobs = await asyncio.to_thread(self._targets, batch_id)
            self._total = len(batches) + len(jobs)
            self._progress()
            semaphore = asyncio.Semaphore(self.concurrency)
            # A TaskGroup cancels the rest if the store fails or the lease is lost; its
            # ExceptionGroup is unwrapped so callers can catch LeaseHeld, StoreUnavailable…
            try:
                async with asyncio.TaskGroup() as group:
                    for target in batches:
                        group.create_task(self._guarded(semaphore, self._batch, target))
                    for job in jobs:
                        group.create_task(self._guarded(semaphore, self._job, job))
            except BaseExceptionGroup as group_error:
                raise leaf_error(group_error) from None
            self.summary.gaps_remaining = await asyncio.to_thread(self._gaps, batch_id)
        finally:
            self.summary.requests = self.client.stats.requests
            self.summary.retries = dict(self.client.stats.retries)
            self.summary.duration_s = time.perf_counter() - started
            if run_id is not None:
                self.summary.run_id = run_id
                await asyncio.to_thread(self._finish, run_id)
        return self.summary

    # -- database steps (run in a worker thread) ---------------------------------------------

    def _begin(self) -> int:
        with transaction(self.engine) as store:
            holder = store.acquire_lease(
                LEASE_NAME, holder=self.holder, now=self.now(), ttl=LEASE_TTL
            )
            if holder != self.holder:
                raise LeaseHeld(LEASE_NAME, holder)
            return store.start_run(now=self.now(), dry_run=False)

    def _finish(self, run_id: int) -> None:
        summary = self.summary.as_dict()
        with transaction(self.engine) as store:
            store.finish_run(run_id, now=self.now(), summary=summary)
            store.release_lease(LEASE_NAME, holder=self.holder)

    def _targets(self, batch_id: str | None) -> tuple[list[BatchTarget], list[JobTarget]]:
        older_than = self.now() - self.grace
        with transaction(self.engine, write=False) as store:
            batches = plan_batches(
                store.batches_to_reconcile(older_than=older_than, batch_id=batch_id)
            )
            if batch_id is not None:
                if not batches:
                    raise BatchNotTracked(batch_id)
                return batches, []
            return batches, plan_jobs(store.stale_pending_jobs(older_than=older_than))

    def _gaps(self, batch_id: str | None) -> int:
        if self.dry_run:
            return self._total  # nothing was written, so every gap found is still open
        older_than = self.now() - self.grace
        with transaction(self.engine, write=False) as store:
            rows = store.batches_to_reconcile(older_than=older_than, batch_id=batch_id)
            if batch_id is not None:  # the named batch is listed whether or not it has a gap
                return sum(1 for row in rows if row["due"] or row["status"] == "pending")
            return len(rows) + len(store.stale_pending_jobs(older_than=older_than))

    def _local_statuses(self, batch_id: str) -> dict[str, str]:
        with transaction(self.engine, write=False) as store:
            return {
                row["scoring_job_id"]: row["status"] for row in store.results_for_batch(batch_id)
            }

    def _write(self, fetched: _Fetched) -> _Written:
        now = self.now()
        with transaction(self.engine, commit=not self.dry_run) as store:
            written = _apply(store, fetched.jobs, now)
            erased = store.erased_application_ids(a.application_id for a in fetched.rejected)
            rejected = [a for a in fetched.rejected if a.application_id not in erased]
            written.skipped += len(fetched.rejected) - len(rejected)
            written.rejected = store.record_rejected(rejected, now=now)
            terminal = sum(
                row["status"] != "pending"
                for row in store.results_for_batch(fetched.target.batch_id)
            )
            state = fetched.batch
            if not state.job_id:
                state = replace(state, job_id=fetched.target.job_id)
            settled = batch_settled(state.status, state.completed_jobs, state.failed_jobs, terminal)
            store.update_batch(state, now=now, due=not settled, reconciled=True)
            self._renew(store, now)
            store.log_changes(written.feed, now=now)  # last: it takes the feed's counter lock
        return written

    def _write_job(self, result: ScoringResult) -> _Written:
        now = self.now()
        with transaction(self.engine, commit=not self.dry_run) as store:
            written = _apply(store, (result,), now)
            self._renew(store, now)
            store.log_changes(written.feed, now=now)  # last: it takes the feed's counter lock
        return written

    def _count(self, written: _Written) -> None:
        # Counted here, on the event loop, not in the worker threads that wrote.
        self.summary.results_added += written.added
        self.summary.results_updated += written.updated
        self.summary.results_enriched += written.enriched
        self.summary.rejected_recorded += written.rejected
        self.summary.erased_skipped += written.skipped

    def _renew(self, store: Store, now: datetime) -> None:
        if self.dry_run:
            return
        holder = store.acquire_lease(LEASE_NAME, holder=self.holder, now=now, ttl=LEASE_TTL)
        if holder != self.holder:
            raise LeaseHeld(LEASE_NAME, holder)

    async def _in_write_lane(self, write: Callable[[_T], _R], item: _T) -> _R:
        """One write at a time: fetches run concurrently, but SQLite has one write lock, and
        writers queueing on it in threads would time out instead of taking turns."""
        async with self._write_lane:
            return await asyncio.to_thread(write, item)

    # -- Nova steps --------------------------------------------------------------------------

    async def _guarded(
        self,
        semaphore: asyncio.Semaphore,
        step: Callable[[_T], Awaitable[None]],
        target: _T,
    ) -> None:
        # The coroutine is created only once a slot is free: a cancelled run leaves no
        # never-awaited coroutines behind.
        async with semaphore:
            try:
                await step(target)
            except NovaApiError as exc:
                self._error(exc)
            finally:
                self._done += 1
                self._progress()

    def _error(self, exc: NovaApiError) -> None:
        kind = exc.kind
        self.summary.errors[kind] += 1
        where = "; ".join(getattr(exc, "__notes__", ()))
        self.summary.error_details.append({"kind": kind, "where": where, "error": str(exc)})

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._done, self._total)

    async def _batch(self, target: BatchTarget) -> None:
        self.summary.batches_checked += 1
        try:
            fetched = await (
                self._fetch_v1(target) if target.api == "v1" else self._fetch_legacy(target)
            )
        except NovaHttpError as exc:
            if exc.status == 404 and not self.dry_run:
                given_up = await self._in_write_lane(self._not_found, target.batch_id)
                if given_up:
                    # Reported once, in this run's summary; no longer an error of every run.
                    self.summary.batches_unreachable.append(target.batch_id)
                    return
            exc.add_note(f"batch {target.batch_id}")
            raise
        except NovaApiError as exc:
            exc.add_note(f"batch {target.batch_id}")
            raise
        self._count(await self._in_write_lane(self._write, fetched))

    def _not_found(self, batch_id: str) -> bool:
        with transaction(self.engine) as store:
            return store.record_not_found(batch_id, now=self.now())

    async def _fetch_v1(self, target: BatchTarget) -> _Fetched:
        snapshot = await self.client.get_batch(
            target.job_id, target.batch_id, tenant_id=target.tenant_id
        )
        self.summary.jobs_checked += len(snapshot.jobs)
        return _Fetched(target, snapshot.batch, snapshot.jobs, snapshot.rejected)

    async def _fetch_legacy(self, target: BatchTarget) -> _Fetched:
        legacy = await self.client.get_legacy_batch(target.batch_id, tenant_id=target.tenant_id)
        local = await asyncio.to_thread(self._local_statuses, target.batch_id)
        wanted = plan_legacy_fetches(legacy.jobs, local)
        details = await asyncio.gather(
            *(
                self.client.get_legacy_scoring_job(ref.scoring_job_id, tenant_id=target.tenant_id)
                for ref in wanted
            )
        )
        self.summary.jobs_checked += len(legacy.jobs)
        batch_id = target.batch_id
        pending = tuple(
            ScoringResult(
                scoring_job_id=ref.scoring_job_id,
                status="pending",
                nova_status=ref.nova_status,
                job_id=legacy.batch.job_id or target.job_id,
                application_id=ref.application_id,
                tenant_id=target.tenant_id,
                batch_id=batch_id,
            )
            for ref in legacy.jobs
            if ref.status == "pending" and ref.scoring_job_id not in local
        )
        finished = tuple(replace(result, batch_id=batch_id) for result in details)
        return _Fetched(target, legacy.batch, finished + pending, ())

    async def _job(self, target: JobTarget) -> None:
        self.summary.jobs_checked += 1
        try:
            result = await self._fetch_job(target)
        except NovaApiError as exc:
            exc.add_note(f"scoring job {target.scoring_job_id}")
            raise
        self._count(await self._in_write_lane(self._write_job, result))

    async def _fetch_job(self, target: JobTarget) -> ScoringResult:
        if target.job_id and target.application_id:
            return await self.client.get_scoring_job(
                target.job_id,
                target.application_id,
                target.scoring_job_id,
                tenant_id=target.tenant_id,
            )
        # Without job and application ids only the legacy path addresses a job by id alone.
        return await self.client.get_legacy_scoring_job(
            target.scoring_job_id, tenant_id=target.tenant_id
        )


@dataclass
class _Written:
    added: int = 0
    updated: int = 0
    enriched: int = 0
    rejected: int = 0
    feed: list[ResultChange] = field(default_factory=list)
    skipped: int = 0


def _apply(store: Store, results: Iterable[ScoringResult], now: datetime) -> _Written:
    """Apply ``results`` by the precedence rules, except those of erased applications:
    an erasure must survive reconcile (tombstones keep their ids only)."""
    written = _Written()
    results = list(results)
    erased = store.erased_application_ids(result.application_id for result in results)
    for result in results:
        if result.application_id in erased:
            written.skipped += 1
            continue
        change = store.apply_result(result, source="reconcile", now=now)
        fed = feed_change(result.scoring_job_id, change)
        if fed is not None:
            written.feed.append(fed)
        if change.created:
            written.added += 1
        elif change.updated:
            written.updated += 1
        elif change.changed:
            written.enriched += 1
    return written
