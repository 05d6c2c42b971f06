"""One commit process for every worker of ``nova-sink serve --workers N`` on SQLite.

A SQLite file has one writer at a time. With a commit process per worker
(``receiver.commit_process``), the workers' processes took turns on the file's write lock,
each committing half-sized groups and waiting for the other's: two workers answered fewer
deliveries than one (benchmarks/README.md, seventh pass). Here ``serve`` starts a single
commit process before its workers; every worker's ``ProcessLane`` connects to it instead
of starting its own child, and it commits the batches of all of them as one group. The
serving work (HTTP, verification) spreads over the workers; the commits stay in one queue.

- ``SharedCommitProcess`` (in ``serve``): owns the listening Unix socket, in a private
  directory, for as long as ``serve`` runs, so a replaced commit process answers on the
  same path; starts the process, replaces it when it dies, stops it after the workers.
- ``serve_shared`` (in the commit process): the configuration from ``serve``, then group
  after group from every connected worker (``receiver.writer.serve_groups``), each answer
  to the worker whose batches they are, in the order it sent them, until ``serve`` closes
  the control socket.

The frames are the commit process's own: a worker says hello with its configuration (the
process was configured by ``serve``; the hello only asks for ``ready``), then sends batches.
Durability is unchanged: a worker answers 2xx only once its batch's group has committed.
If the commit process dies, every worker answers its batches in hand 503 and connects
again; if a worker dies, its batches still commit and their answers are dropped.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import structlog

from receiver.commit import Batch, Outcome
from receiver.commit_process import (
    RESTART_DELAY_SECONDS,
    SHARED_COMMIT_ENV,
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    LaneConfig,
    _batch,
    _frame,
    _FrameReader,
    answers_frame,
    open_committer,
    spawn,
)
from receiver.writer import serve_groups
from storage.errors import StoreUnavailable

log = structlog.get_logger("nova_sink.commit")

__all__ = ["SHARED_COMMIT_ENV", "SharedCommitProcess", "serve_shared"]

_BACKLOG = 128

_Item = tuple[socket.socket, Batch]


# ---- in serve ---------------------------------------------------------------------------


class SharedCommitProcess:
    """The shared commit process, for the duration of a ``with`` block: ``path`` is where
    workers connect (``SHARED_COMMIT_ENV``)."""

    def __init__(self, config: LaneConfig) -> None:
        self._config = config
        self._dir: Path | None = None
        self.path = ""
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._stopping = False
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> SharedCommitProcess:
        self._dir = Path(tempfile.mkdtemp(prefix="nova-sink-"))  # 0700: ours alone
        self.path = str(self._dir / "commit.sock")
        try:
            self._listener.bind(self.path)
            self._listener.listen(_BACKLOG)
            self._start()
        except BaseException:
            self._close()
            raise
        self._watcher = threading.Thread(target=self._watch, name="commit-watch", daemon=True)
        self._watcher.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._stopping = True  # from now on nothing is restarted
            control = self._control
        if control is not None:
            control.close()  # end-of-file: it finishes the group in hand and exits
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:  # the watcher may have started one while we were stopping
            process, control = self._process, self._control
        if control is not None:
            control.close()
        if process is not None:
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("commit_process_killed", pid=process.pid)
                process.kill()
                process.wait()
        self._close()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._process is None else self._process.pid

    def _start(self) -> None:
        """Start the process and wait until it is ready (``StoreUnavailable`` if it is not)."""
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                process = spawn(self._listener.fileno(), theirs.fileno(), shared=True)
        except OSError as exc:  # out of processes or descriptors: retried like a crash
            ours.close()
            raise StoreUnavailable(f"the shared commit process cannot start: {exc}") from None
        try:
            ours.sendall(_frame(self._config))
            ready = _FrameReader(ours).take(START_TIMEOUT_SECONDS)
        except (OSError, queue.Empty):  # it died at once, or never said ready
            ready = None
        if ready is None:
            ours.close()
            process.kill()
            process.wait()
            raise StoreUnavailable("the shared commit process did not start")
        with self._lock:
            self._process, self._control = process, ours
        log.debug("commit_process_started", pid=process.pid, shared=True)

    def _watch(self) -> None:
        """Replace the process whenever it dies before ``serve`` stops it."""
        while True:
            with self._lock:
                process = self._process
                if process is None or self._stopping:
                    return
            code = process.wait()
            with self._lock:
                if self._stopping:
                    return
                if self._control is not None:
                    self._control.close()
                self._process = self._control = None
            log.error("commit_process_exited", code=code, shared=True)
            while True:
                time.sleep(RESTART_DELAY_SECONDS)  # one that keeps dying: no busy loop
                with self._lock:
                    if self._stopping:
                        return
                try:
                    self._start()
                    break
                except StoreUnavailable:
                    log.error("commit_process_not_restarted", shared=True)

    def _close(self) -> None:
        self._listener.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


# ---- in the commit process --------------------------------------------------------------


def serve_shared(listener: socket.socket, control: socket.socket) -> None:
    """The shared commit process's loop: configured by ``serve`` over ``control``, then
    group after group from every worker that connects to ``listener``, until ``control``
    ends."""
    config = _FrameReader(control).take()
    if config is None:
        return
    hub = _Hub(listener, control)
    with open_committer(config) as committer:
        control.sendall(_frame(("ready", os.getpid())))
        try:
            serve_groups(
                committer,
                hub.take,
                hub.take_queued,
                lambda item: item[1],
                hub.answer,
                release_after=config.release_after,
            )
        finally:
            hub.close()
    _remove_socket(listener)


def _remove_socket(listener: socket.socket) -> None:
    """Remove the socket and its private directory once ``serve`` has closed the control
    socket: ``serve`` does it too when it stops, but not when it was killed (-9)."""
    path = Path(listener.getsockname())
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: not ours to remove
        path.parent.rmdir()


class _Hub:
    """The workers' batches, as one stream for ``serve_groups``: ``(worker, batch)`` items,
    in the order they arrived; None once ``serve`` has closed the control socket, every
    worker has disconnected, and every batch that came before has been taken.

    ``serve`` closes the control socket after its workers have stopped, unless it was
    killed: then its workers, which notice and stop (``receiver.supervision``), still have
    their batches in hand committed here while they drain.
    """

    def __init__(self, listener: socket.socket, control: socket.socket) -> None:
        self._listener = listener
        self._control = control
        self._readers: dict[socket.socket, _FrameReader] = {}
        self._hello: set[socket.socket] = set()  # connected, configuration not yet read
        self._queue: collections.deque[_Item] = collections.deque()
        self._serve_gone = False  # the control socket has ended: accept no one new
        self._ended = False

    def take(self, timeout: float | None) -> _Item | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._queue and not self._ended:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise queue.Empty
            self._poll(left)
        return self._queue.popleft() if self._queue else None

    def take_queued(self) -> _Item | None:
        if not self._queue:
            self._poll(0)
        if self._queue:
            return self._queue.popleft()
        if self._ended:
            return None
        raise queue.Empty

    def answer(self, items: list[_Item], answers: list[list[Outcome]]) -> None:
        """Each worker gets one frame: its batches' answers, in the order it sent them."""
        by_worker: dict[socket.socket, list[list[Outcome]]] = {}
        for (worker, _), outcomes in zip(items, answers, strict=True):
            by_worker.setdefault(worker, []).append(outcomes)
        for worker, theirs in by_worker.items():
            frame = answers_frame(theirs)
            if worker not in self._readers:
                continue  # gone: nobody is waiting for these answers any more
            try:
                worker.sendall(frame)
            except OSError:
                self._drop(worker)

    def close(self) -> None:
        for worker in list(self._readers):
            self._drop(worker)

    def _poll(self, timeout: float | None) -> None:
        serve = [] if self._serve_gone else [self._control, self._listener]
        for sock in select.select([*serve, *self._readers], [], [], timeout)[0]:
            if sock is self._listener:
                self._accept()
            elif sock is self._control:
                self._serve_gone = not sock.recv(1 << 16)
            elif sock in self._readers:  # not dropped by an earlier one of this round
                self._read(sock)
        self._ended = self._serve_gone and not self._readers

    def _accept(self) -> None:
        worker, _ = self._listener.accept()
        worker.setblocking(True)
        self._readers[worker] = _FrameReader(worker)
        self._hello.add(worker)

    def _read(self, worker: socket.socket) -> None:
        reader = self._readers[worker]
        try:
            frames = reader.read_frames()
            if frames and worker in self._hello:
                # Its configuration: the process's own came from serve; the hello asks for
                # ``ready`` only.
                self._hello.discard(worker)
                frames = frames[1:]
                worker.sendall(_frame(("ready", os.getpid())))
        except OSError:  # reset by a worker that died
            self._drop(worker)
            return
        self._queue.extend((worker, batch) for batch in map(_batch, frames) if batch is not None)
        if reader.ended:
            self._drop(worker)

    def _drop(self, worker: socket.socket) -> None:
        self._readers.pop(worker, None)
        self._hello.discard(worker)
        worker.close()
