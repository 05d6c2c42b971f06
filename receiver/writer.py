"""The group-commit writer: a lane commits the deliveries that queued up meanwhile, at once.

With ``synchronous=FULL`` every commit is an fsync, so sharing one among concurrent
requests is what makes durable ingest fast. A request is answered only after the commit
that contains its rows has returned.

The event loop hands its lane a batch per loop turn: the deliveries of every request that
got that far in the turn, in one hand-off (per-delivery hand-offs, a queue put and a future
wake-up per request, made the threads fight over the GIL and stretched p99 several-fold).
The lane commits, as one group, every batch that arrived while it was busy (up to
``max_group`` deliveries): it never waits for the event loop to send the next group, and
the group is as large as the load makes it. Batches are committed in the order they were
handed over, so the outcome is that of one delivery at a time, in arrival order.

The lane is a thread of this process (``ThreadLane``) or a process of its own
(``receiver.commit_process.ProcessLane``, what ``serve`` uses), where parsing and SQL run
on the other core without taking the GIL from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

from receiver.commit import Batch, GroupCommitter, Outcome
from receiver.ingest import Committed, Received
from storage.db import Engine
from storage.errors import StoreUnavailable

# A queued delivery's longest wait before its lane picks it up. A group waits at most the
# lock (PostgreSQL) or busy (SQLite) timeout, 5 s, for a lock, so a delivery is normally
# answered within two of them; this bound only cuts in when several statements of a group
# each wait their full timeout, or under overload, and keeps every answer well inside
# Nova's 30 s timeout.
MAX_WAIT_SECONDS = 10.0

# The most deliveries in one commit group.
MAX_GROUP = 256

# Under load the lane keeps its connection from one group to the next; idle this long, it
# gives it back to the pool.
RELEASE_AFTER_IDLE_SECONDS = 1.0

_Job = tuple[Received, "asyncio.Future[Committed]"]
Done = Callable[[list[Outcome]], None]
# A batch as ``ThreadLane`` queues it: who to tell, on which event loop.
_Handed = tuple[Batch, Done, asyncio.AbstractEventLoop]
_Item = TypeVar("_Item")


class Lane(Protocol):
    """Where the writer's batches are committed, in the order they are sent."""

    @property
    def running(self) -> bool:
        """True while batches can be sent."""
        ...

    async def start(self) -> None:
        """Get ready to commit; called on the event loop that will send the batches."""
        ...

    def send(self, batch: Batch, done: Done) -> None:
        """Commit ``batch`` after the batches sent before it; ``done`` gets one outcome per
        delivery, called on the event loop's thread."""
        ...

    async def stop(self) -> None:
        """Stop once the batches sent so far are done; give everything back."""
        ...


def serve_groups(
    committer: GroupCommitter,
    take: Callable[[float | None], _Item | None],
    take_queued: Callable[[], _Item | None],
    batch_of: Callable[[_Item], Batch],
    answer: Callable[[list[_Item], list[list[Outcome]]], None],
    *,
    release_after: float,
) -> None:
    """A lane's loop, the same in a thread (``ThreadLane``) and in the commit process: wait
    for a batch, commit it together with every batch queued up behind it (to ``MAX_GROUP``
    deliveries) as one group, answer the group, until the stream of batches ends.

    ``take(timeout)`` is the next item (``timeout`` None: however long it takes) and
    ``take_queued()`` the next one already there; both return None at the end of the stream
    and raise ``queue.Empty`` when nothing came. Idle for ``release_after``, the lane gives
    its connection back to the pool. A group is answered before the lane stops, so an end of
    the stream behind it loses nothing.
    """
    while True:
        try:
            first = take(release_after)
        except queue.Empty:
            committer.release()  # idle: hold no connection while waiting
            first = take(None)
        if first is None:
            return
        group, ended = [first], False
        size = len(batch_of(first).rows)
        while size < MAX_GROUP:
            try:
                item = take_queued()
            except queue.Empty:
                break
            if item is None:
                ended = True
                break
            group.append(item)
            size += len(batch_of(item).rows)
        answer(group, committer.commit_batches([batch_of(item) for item in group]))
        if ended:
            return


class ThreadLane:
    """Commits in a thread of this process: for an engine passed in (tests, the demo),
    which another process could not share."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_wait: float = MAX_WAIT_SECONDS,
        release_after: float = RELEASE_AFTER_IDLE_SECONDS,
    ) -> None:
        self._committer = GroupCommitter(engine, max_wait=max_wait)
        self._release_after = release_after
        self._queue: queue.SimpleQueue[_Handed | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nova-sink-writer", daemon=True)
        # Read on every delivery (``Thread.is_alive`` takes a lock each time).
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        self._running = True
        self._thread.start()

    def send(self, batch: Batch, done: Done) -> None:
        self._queue.put((batch, done, asyncio.get_running_loop()))

    async def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
        self._running = False

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._running = False
            self._committer.release()

    def _serve(self) -> None:
        def answer(group: list[_Handed], outcomes: list[list[Outcome]]) -> None:
            answers = [(done, out) for (_, done, _), out in zip(group, outcomes, strict=True)]
            # One wake-up of the event loop per group, whatever its size; a closed loop has
            # nobody waiting for these answers any more.
            with contextlib.suppress(RuntimeError):
                group[0][2].call_soon_threadsafe(_deliver, answers)

        serve_groups(
            self._committer,
            lambda timeout: self._queue.get(timeout=timeout),
            self._queue.get_nowait,
            _batch_of,
            answer,
            release_after=self._release_after,
        )


def _batch_of(handed: _Handed) -> Batch:
    return handed[0]


def _deliver(answers: list[tuple[Done, list[Outcome]]]) -> None:
    for done, outcomes in answers:
        done(outcomes)


class Writer:
    """Queues deliveries on the event loop and hands them to its lane once per loop turn;
    each request is answered when the group that contains it is committed."""

    def __init__(self, lane: Lane, *, now: Callable[[], datetime]) -> None:
        self.lane = lane
        self._now = now
        # Event-loop state: only ever touched on the loop's thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Job] = []
        self._flush_scheduled = False
        self._in_flight = 0  # batches with the lane
        self._closed = False
        self._started = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        await self.lane.start()
        self._started = True

    async def stop(self) -> None:
        """Answer every queued delivery (committed), then stop the lane. Later deliveries
        are refused (``StoreUnavailable``): the endpoint answers 503."""
        self._closed = True
        if self._started:
            await self._idle.wait()
        await self.lane.stop()

    async def submit(self, item: Received) -> Committed:
        """Queue ``item`` and wait until it is committed."""
        if self._closed or not self._started or not self.lane.running:
            # Not started (app used without its lifespan), stopped, or the lane is down
            # (a commit process being restarted): never hang, Nova retries a 503.
            raise StoreUnavailable("the writer is not running")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._in_flight or self._pending:
                raise StoreUnavailable("the writer is serving another event loop")
            self._loop = loop
        future: asyncio.Future[Committed] = loop.create_future()
        self._pending.append((item, future))
        self._idle.clear()
        if not self._flush_scheduled:
            # call_soon, not now: requests that are ready in this loop turn join the batch.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        jobs = [job for job in self._pending if not job[1].done()]  # went away meanwhile
        self._pending = []
        if not jobs:
            self._settle()
            return
        if not self.lane.running:
            _answer(jobs, [StoreUnavailable("the writer is not running")] * len(jobs))
            self._settle()
            return
        now, queued_at = self._now(), time.monotonic()
        for start in range(0, len(jobs), MAX_GROUP):
            chunk = jobs[start : start + MAX_GROUP]
            self._in_flight += 1
            batch = Batch(now, queued_at, [item for item, _ in chunk])
            self.lane.send(batch, functools.partial(self._done, chunk))

    def _done(self, jobs: list[_Job], outcomes: list[Outcome]) -> None:
        self._in_flight -= 1
        _answer(jobs, outcomes)
        self._settle()

    def _settle(self) -> None:
        if not self._in_flight and not self._pending:
            self._idle.set()


def _answer(jobs: list[_Job], outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(jobs, outcomes, strict=True):
        if future.done():  # the request went away (cancelled)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
