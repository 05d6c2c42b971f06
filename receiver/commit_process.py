"""The commit process: the writer's groups parsed and committed outside the serving process.

One serving process is bounded by its event loop's thread: with the commits in a thread
of the same process, parsing and SQL took the GIL from the event loop for about half of
each delivery's Python, and every statement's GIL hand-back waited behind a burst of
requests. Here they run in a child process on the other core, and the serving process
only verifies, hashes and hands over plain values.

The parent (``ProcessLane``, a ``receiver.writer.Lane``) talks to its child over a private
socket pair in length-prefixed pickle frames; pickle is safe here because both ends are
this program and nobody else can reach the pair. The protocol, one group at a time:

- parent → child: the configuration (database URL, logging), then one frame per batch,
  ``(now, queued_at, rows)``, each row a ``Received`` as a plain tuple;
- child → parent: ``("ready", pid)``, then one frame per commit group: for each batch the
  group took, in order, one outcome per row.

The child commits, as one group, every batch that arrived while it was committing the last
one (``receiver.writer``), so it never waits for the parent's event loop between groups.

Durability is unchanged: a request is answered 2xx only after its group's commit has
returned in the child. If the child dies, the group in hand is answered 503 (Nova retries;
the inbox deduplicates whatever did commit) and a new child is started. If the parent
dies, the child sees end-of-file, finishes the group in hand and exits. The child ignores
SIGINT and SIGTERM, which a terminal or a service manager sends the whole process group:
it stops when its parent closes the pair, after the parent has drained its queue.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pickle
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from receiver.commit import Batch, GroupCommitter, Outcome
from receiver.ingest import Committed, Received
from receiver.logs import Format, configure_logging
from receiver.writer import MAX_WAIT_SECONDS, RELEASE_AFTER_IDLE_SECONDS, Done, serve_groups
from storage.db import Synchronous, make_engine
from storage.errors import StoreUnavailable

log = structlog.get_logger("nova_sink.commit")

_HEADER = struct.Struct("!I")
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
RESTART_DELAY_SECONDS = 0.2
# Where ``serve --workers N`` tells its workers that their shared commit process listens
# (``receiver.commit_hub``); unset, each worker starts a commit process of its own.
SHARED_COMMIT_ENV = "NOVA_SINK_COMMIT_SOCKET"


class LaneConfig(NamedTuple):
    """What a commit process is told first: its database, logging and bounds."""

    database_url: str
    synchronous: Synchronous
    log_format: Format
    log_level: str
    max_wait: float = MAX_WAIT_SECONDS
    release_after: float = RELEASE_AFTER_IDLE_SECONDS


class CommitFailed(Exception):
    """A delivery's commit failed in the commit process on something other than the
    database being unavailable (the child logged the traceback)."""


def _frame(value: object) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def _encode(outcome: Outcome) -> tuple[Any, ...]:
    if isinstance(outcome, Committed):
        return ("committed", *outcome)
    if isinstance(outcome, StoreUnavailable):
        return ("unavailable", str(outcome))
    return ("failed", f"{type(outcome).__name__}: {outcome}")


def _decode(wire: tuple[Any, ...]) -> Outcome:
    kind, *rest = wire
    if kind == "committed":
        return Committed(*rest)
    (message,) = rest
    return StoreUnavailable(message) if kind == "unavailable" else CommitFailed(message)


# ---- parent side ------------------------------------------------------------------------


def spawn(*fds: int, shared: bool = False) -> subprocess.Popen[bytes]:
    """Start a commit process that inherits ``fds`` (its socket to us; with ``shared``, the
    listening socket of ``receiver.commit_hub`` and its control socket)."""
    flags = ["--shared"] if shared else []
    # -P: ``-m`` would put the working directory first on the child's path, ahead of this
    # process's own tree (``PYTHONPATH``): a ``receiver`` package there (another checkout)
    # would run instead of ours.
    return subprocess.Popen(  # noqa: S603 - this interpreter, our module
        [sys.executable, "-P", "-m", "receiver.commit_process", *flags, *map(str, fds)],
        pass_fds=fds,
        stdin=subprocess.DEVNULL,
        env=_child_environment(),
    )


def _child_environment() -> dict[str, str]:
    """This environment, with this process's ``receiver`` package first on the path: the
    child runs the same code as its parent, even when that is not the installed copy
    (``uvicorn --app-dir``, a benchmark's older revision)."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class _Frames(asyncio.Protocol):
    """Splits the child's byte stream into frames."""

    def __init__(self, on_frame: Callable[[Any], None], on_lost: Callable[[], None]) -> None:
        self._buffer = bytearray()
        self._on_frame = on_frame
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            self._on_frame(pickle.loads(payload))  # noqa: S301 - our own child, see module

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


class ProcessLane:
    """A ``receiver.writer.Lane`` whose groups are committed by a child process."""

    def __init__(
        self,
        database_url: str,
        *,
        synchronous: Synchronous,
        log_format: Format,
        log_level: str,
        max_wait: float = MAX_WAIT_SECONDS,
        release_after: float = RELEASE_AFTER_IDLE_SECONDS,
        shared: str | None = None,
    ) -> None:
        # ``shared``: the socket of a commit process that ``serve --workers N`` started for
        # all its workers (``receiver.commit_hub``), instead of a child of this process.
        self._shared = shared
        self._pid: int | None = None  # what the commit process said in its ``ready``
        self._config = LaneConfig(
            database_url, synchronous, log_format, log_level, max_wait, release_after
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._ready: asyncio.Future[int] | None = None
        # The batches the child has, in order: who to tell, and how many deliveries.
        self._waiting: collections.deque[tuple[Done, int]] = collections.deque()
        self._running = False
        self._stopping = False
        self._restart: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def pid(self) -> int | None:
        """The commit process's pid, while one runs."""
        return self._pid if self._running else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._shared is not None:
            await self._connect(loop, self._shared)
            return
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = spawn(theirs.fileno())
        await self._connect(loop, ours)

    async def _connect(self, loop: asyncio.AbstractEventLoop, to: socket.socket | str) -> None:
        """Say hello (the configuration) over ``to`` (our end of the pair, or the shared
        commit process's path) and wait for its ``ready``."""
        self._ready = loop.create_future()
        protocol = lambda: _Frames(self._on_frame, self._on_lost)  # noqa: E731
        try:
            if isinstance(to, str):
                transport, _ = await loop.create_unix_connection(protocol, path=to)
            else:
                transport, _ = await loop.create_unix_connection(protocol, sock=to)
        except OSError as exc:  # the shared process's socket is gone: serve is stopping
            raise StoreUnavailable(f"the commit process cannot be reached: {exc}") from None
        self._transport = transport
        transport.write(_frame(self._config))
        try:
            pid = await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_SECONDS)
        except (TimeoutError, StoreUnavailable):
            transport.close()
            await self._reap()
            raise StoreUnavailable("the commit process did not start") from None
        self._pid = pid
        self._running = True
        log.debug("commit_process_started", pid=pid, shared=self._shared is not None)

    def send(self, batch: Batch, done: Done) -> None:
        assert self._transport is not None, "send before start"
        self._waiting.append((done, len(batch.rows)))
        rows = [tuple(received) for received in batch.rows]
        # ``now`` as naive UTC: pickling an aware datetime pickles its ``timezone`` through
        # copyreg, which recomputes the class's slot names on every frame (~3 µs each side).
        now = batch.now.astimezone(UTC).replace(tzinfo=None)
        self._transport.write(_frame((now, batch.queued_at, rows)))

    async def stop(self) -> None:
        self._stopping = True
        if self._restart is not None:
            await asyncio.gather(self._restart, return_exceptions=True)
        self._running = False
        if self._transport is not None:
            self._transport.close()  # end-of-file: the child finishes and exits
        await self._reap()

    async def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("commit_process_killed", pid=process.pid)
            process.kill()
            await asyncio.to_thread(process.wait)

    def _on_frame(self, message: Any) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(message[1])
            return
        for wires in message:
            done, _ = self._waiting.popleft()
            done([_decode(wire) for wire in wires])

    def _on_lost(self) -> None:
        was_running, self._running = self._running, False
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreUnavailable("the commit process exited"))
        lost = StoreUnavailable("the commit process exited")
        while self._waiting:
            # Committed or not, nobody can tell: 503, and Nova's retry is deduplicated.
            done, count = self._waiting.popleft()
            done([lost] * count)
        if was_running and not self._stopping:
            code = self._process.poll() if self._process is not None else None
            log.error("commit_process_exited", code=code, shared=self._shared is not None)
            self._restart = asyncio.ensure_future(self._start_again())

    async def _start_again(self) -> None:
        await self._reap()
        await asyncio.sleep(RESTART_DELAY_SECONDS)  # a child that keeps dying: no busy loop
        if self._stopping:
            return
        try:
            await self.start()
        except StoreUnavailable:
            log.error("commit_process_not_restarted")


# ---- child side -------------------------------------------------------------------------


class _FrameReader:
    """The parent's frames, cut from one buffer: a single ``recv`` takes every byte the parent
    has written so far, usually all the batches of the next group, where reading each frame's
    header and payload on its own cost several system calls per batch, and a time-out on the
    socket two more (the socket stays blocking; ``select`` waits with a time-out instead).

    ``take`` and ``take_queued`` follow ``receiver.writer.serve_groups``: a frame, None at
    end-of-file, ``queue.Empty`` when none came.
    """

    def __init__(self, sock: socket.socket, *, chunk: int = 1 << 16) -> None:
        self._sock = sock
        # What one read asks for, unless more of a frame begun is known to be coming. Not
        # more: a 1 MiB read cost ~10 µs in allocating its buffer alone (an mmap), once or
        # twice per commit group, where a group's batches are a few kilobytes.
        self._chunk = chunk
        self._buffer = b""
        self._start = 0  # where the next frame begins in the buffer
        self._eof = False

    def take(self, timeout: float | None = None) -> Any:
        """The next frame, waiting at most ``timeout`` for its first byte (None: forever)."""
        while True:
            frame = self._cut()
            if frame is not _INCOMPLETE:
                return frame
            if self._eof:
                return None
            if timeout is not None and not select.select([self._sock], [], [], timeout)[0]:
                raise queue.Empty
            timeout = None  # begun: the rest of a frame follows its start promptly
            self._fill()

    def take_queued(self) -> Any:
        """The next frame if it is here or its bytes have begun to arrive (the rest is
        waited for); ``queue.Empty`` when the socket has nothing new to read."""
        frame = self._cut()
        if frame is not _INCOMPLETE or self._eof:
            return None if frame is _INCOMPLETE else frame
        if not select.select([self._sock], [], [], 0)[0]:
            raise queue.Empty
        return self.take()

    def read_frames(self) -> list[Any]:
        """Every frame complete after one read: for a socket that ``select`` found ready,
        so that the read does not block. At end-of-file, ``ended`` is true."""
        self._fill()
        frames = []
        while (frame := self._cut()) is not _INCOMPLETE:
            frames.append(frame)
        return frames

    @property
    def ended(self) -> bool:
        return self._eof

    def _fill(self) -> None:
        data = self._sock.recv(max(self._chunk, self._missing()))
        if not data:
            self._eof = True
        self._buffer = self._buffer[self._start :] + data
        self._start = 0

    def _end(self) -> int | None:
        """Where the frame begun in the buffer ends (None: its header is not complete)."""
        start = self._start
        if len(self._buffer) - start < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer, start)
        return start + _HEADER.size + int(size)

    def _missing(self) -> int:
        """How many bytes of the frame begun in the buffer are still to come (0: none, or
        its header is not complete)."""
        end = self._end()
        return 0 if end is None else max(0, end - len(self._buffer))

    def _cut(self) -> Any:
        end = self._end()
        if end is None or len(self._buffer) < end:
            return _INCOMPLETE
        start, self._start = self._start, end
        return pickle.loads(self._buffer[start + _HEADER.size : end])  # noqa: S301 - our parent


_INCOMPLETE = object()


def _batch(message: tuple[datetime, float, list[tuple[Any, ...]]] | None) -> Batch | None:
    if message is None:
        return None
    now, queued_at, rows = message
    return Batch(now.replace(tzinfo=UTC), queued_at, [Received(*row) for row in rows])


def serve(sock: socket.socket) -> None:
    """The child's loop: configuration, then group after group until end-of-file."""
    frames = _FrameReader(sock)
    config = frames.take()
    if config is None:
        return

    def answer(_batches: list[Batch], answers: list[list[Outcome]]) -> None:
        sock.sendall(answers_frame(answers))

    with open_committer(config) as committer:
        sock.sendall(_frame(("ready", os.getpid())))
        try:
            serve_groups(
                committer,
                lambda timeout: _batch(frames.take(timeout)),
                lambda: _batch(frames.take_queued()),
                lambda batch: batch,
                answer,
                release_after=config.release_after,
            )
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone: nobody is waiting for these answers any more


@contextmanager
def open_committer(config: LaneConfig) -> Iterator[GroupCommitter]:
    """The committer a configuration frame describes (logging set up as it says), for the
    block; its connection given back and its engine disposed of afterwards."""
    configure_logging(config.log_format, config.log_level)
    engine = make_engine(config.database_url, synchronous=config.synchronous)
    committer = GroupCommitter(engine, max_wait=config.max_wait)
    try:
        yield committer
    finally:
        committer.release()
        engine.dispose()


def answers_frame(answers: list[list[Outcome]]) -> bytes:
    """One group's answers, batch by batch, as a frame; failures other than an unavailable
    database are logged here, where their traceback is."""
    for outcome in (outcome for outcomes in answers for outcome in outcomes):
        if not isinstance(outcome, Committed | StoreUnavailable):
            log.error("commit_failed", exc_info=outcome)
    return _frame([[_encode(o) for o in outcomes] for outcomes in answers])


def main(argv: list[str]) -> None:
    # The terminal's Ctrl-C and a service manager's SIGTERM reach the whole process group;
    # the parent decides when this process stops (by closing the pair), after draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if argv[1] == "--shared":  # receiver.commit_hub: one commit process for every worker
        from receiver.commit_hub import serve_shared

        with (
            socket.socket(fileno=int(argv[2])) as listener,
            socket.socket(fileno=int(argv[3])) as control,
        ):
            serve_shared(listener, control)
        return
    with socket.socket(fileno=int(argv[1])) as sock:
        serve(sock)


if __name__ == "__main__":
    main(sys.argv)
