"""The group-commit writer: one thread commits the deliveries that queued up meanwhile.

With ``synchronous=FULL`` every commit is an fsync, so sharing one among concurrent
requests is what makes durable ingest fast. A request is answered only after the commit
that contains its rows has returned.

The event loop owns the queue: requests append to a list, and a group is handed to the
thread only when it is idle, so each group costs one thread wake-up to go and one
``call_soon_threadsafe`` to come back, whatever its size. Per-delivery hand-offs (one
queue put and one future wake-up per request) made the two threads fight over the GIL and
stretched p99 several-fold.

After a commit, the next group may wait a moment (at most ``MAX_FILL_WAIT_SECONDS``, and
never longer than half the last commit took) for the deliveries of the requests it just
answered: their clients send the next one within a few hundred microseconds, and without
the wait the groups alternate between two halves of the connections, each paying its own
fsync. An idle writer never waits: a lone delivery is committed at once.

A delivery that waited in the queue longer than ``max_wait`` (a group ahead of it stuck on
a lock until the lock timeout) is answered 503 without touching the database: one stuck
group never holds the deliveries behind it past that bound.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime

from receiver.ingest import Accepted, ingest, ingest_group
from storage.db import Engine, WriteLane
from storage.errors import StoreUnavailable

# A queued delivery's longest wait before the writer picks it up. A group waits at most the
# lock (PostgreSQL) or busy (SQLite) timeout, 5 s, for a lock, so a delivery is normally
# answered within two of them; this bound only cuts in when several statements of a group
# each wait their full timeout, or under overload, and keeps every answer well inside
# Nova's 30 s timeout.
MAX_WAIT_SECONDS = 10.0

MAX_FILL_WAIT_SECONDS = 0.001

# Under load the writer keeps its connection from one group to the next; idle this long,
# it gives it back to the pool.
RELEASE_AFTER_IDLE_SECONDS = 1.0

_Job = tuple[Accepted, "asyncio.Future[str]", float]
_Outcome = str | BaseException


class Writer:
    """One thread that commits queued deliveries in groups of up to ``max_group``.

    If a group fails on a data error, each delivery of it is retried in its own transaction
    so that one bad row cannot fail its neighbours. If the database is unavailable, every
    delivery of the group fails with ``StoreUnavailable`` (the endpoint answers 503).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime],
        max_group: int = 256,
        max_wait: float = MAX_WAIT_SECONDS,
        release_after: float = RELEASE_AFTER_IDLE_SECONDS,
    ) -> None:
        self._lane = WriteLane(engine)
        self._now = now
        self._max_group = max_group
        self._max_wait = max_wait
        self._release_after = release_after
        self._queue: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nova-sink-writer", daemon=True)
        # Event-loop state: only ever touched on the loop's thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Job] = []
        self._busy = False  # a group is with the thread
        self._flush_scheduled = False
        self._fill_target = 0  # deliveries expected in the next group
        self._fill_timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Set while the thread runs; read on every delivery (``Thread.is_alive`` takes a
        # lock each time).
        self._running = False
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Answer every queued delivery (committed), then stop the thread.

        Safe from any thread; off the event loop's thread it waits until the queued
        deliveries are answered (the loop must keep running, as in a lifespan shutdown).
        """
        self._closed = True
        on_loop = self._loop is not None and _running_loop() is self._loop
        if not on_loop:
            self._idle.wait(timeout)
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    async def submit(self, item: Accepted) -> str:
        """Queue ``item`` and wait until it is committed; returns the response status."""
        if self._closed or not self._running:
            # Not started (app used without its lifespan) or already stopped: never hang.
            raise StoreUnavailable("the writer is not running")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._busy or self._pending:
                raise StoreUnavailable("the writer is serving another event loop")
            self._loop = loop
        future: asyncio.Future[str] = loop.create_future()
        self._pending.append((item, future, time.monotonic()))
        self._idle.clear()
        if self._fill_timer is not None and len(self._pending) >= self._fill_target:
            self._flush()
        elif not self._busy and not self._flush_scheduled and self._fill_timer is None:
            # call_soon, not now: requests that are ready in this loop turn join the group.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    # ---- event-loop side ----------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._fill_timer is not None:
            self._fill_timer.cancel()
            self._fill_timer = None
        if self._busy or not self._pending:
            return
        group = self._pending[: self._max_group]
        del self._pending[: self._max_group]
        if not self._running:
            _answer(group, [StoreUnavailable("the writer is not running")] * len(group))
            self._after_group()
            return
        self._busy = True
        self._queue.put(group)

    def _done(self, group: list[_Job], outcomes: list[_Outcome], seconds: float) -> None:
        self._busy = False
        _answer(group, outcomes)
        # Everyone in flight: the requests already queued, and those just answered.
        self._fill_target = min(self._max_group, len(group) + len(self._pending))
        wait = min(MAX_FILL_WAIT_SECONDS, seconds / 2)
        if self._pending and len(self._pending) < self._fill_target and wait > 0:
            assert self._loop is not None
            self._fill_timer = self._loop.call_later(wait, self._flush)
            return
        self._after_group()

    def _after_group(self) -> None:
        if self._pending:
            self._flush()
        else:
            self._idle.set()

    # ---- writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._running = False

    def _serve(self) -> None:
        while True:
            try:
                group = self._queue.get(timeout=self._release_after)
            except queue.Empty:
                self._lane.release()  # idle: hold no connection while waiting
                group = self._queue.get()
            if group is None:
                self._lane.release()
                return
            started = time.monotonic()
            outcomes = self._commit(group)
            seconds = time.monotonic() - started
            loop = self._loop
            if loop is None:  # pragma: no cover - a group always comes from a loop
                continue
            try:
                loop.call_soon_threadsafe(self._done, group, outcomes, seconds)
            except RuntimeError:
                continue  # the loop is closed: nobody is waiting for these answers any more

    def _commit(self, group: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome | None] = [None] * len(group)
        deadline = time.monotonic() - self._max_wait
        live: list[int] = []
        for index, (_, future, queued_at) in enumerate(group):
            if future.cancelled():
                outcomes[index] = StoreUnavailable("cancelled")
            elif queued_at < deadline:
                outcomes[index] = StoreUnavailable("queued behind a stuck write for too long")
            else:
                live.append(index)
        # A stable lock order keeps concurrent writers (other processes) from deadlocking.
        live.sort(key=lambda i: group[i][0].delivery.scoring_job_id or "")
        items = [group[i][0] for i in live]
        for index, outcome in zip(live, self._commit_items(items), strict=True):
            outcomes[index] = outcome
        return [o if o is not None else StoreUnavailable("not committed") for o in outcomes]

    def _commit_items(self, items: list[Accepted]) -> list[_Outcome]:
        if not items:
            return []
        try:
            with self._lane.transaction() as store:
                statuses: list[_Outcome] = list(ingest_group(store, items, now=self._now()))
        except StoreUnavailable as exc:
            return [exc] * len(items)
        except Exception as exc:  # noqa: BLE001 - isolate the bad delivery: retry each alone
            if len(items) == 1:
                return [exc]
            return [self._commit_alone(item) for item in items]
        return statuses

    def _commit_alone(self, item: Accepted) -> _Outcome:
        try:
            with self._lane.transaction() as store:
                return ingest(store, item, now=self._now())
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request, not swallowed
            return exc


def _answer(group: list[_Job], outcomes: list[_Outcome]) -> None:
    for (_, future, _), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the request went away (cancelled)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
