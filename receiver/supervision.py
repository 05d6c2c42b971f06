"""A worker of ``nova-sink serve --workers N`` stops when ``serve`` is gone.

uvicorn's workers do not watch their supervisor: when ``serve`` is killed (-9, the OOM
killer) they go on holding the port, unsupervised, so a ``serve`` started again cannot
bind it, and on SQLite their shared commit process (``receiver.commit_hub``) has gone with
``serve``'s control socket. gunicorn's workers compare their parent's pid with the one they
started under; ours do the same, once a second, and on a change stop as on SIGTERM:
in-flight deliveries are drained (committed and answered) and the port is freed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("nova_sink.serve")

__all__ = ["SUPERVISOR_ENV", "stop_when_orphaned", "supervisor_pid"]

# Set by ``serve`` for its workers: the pid of the process that supervises them.
SUPERVISOR_ENV = "NOVA_SINK_SUPERVISOR_PID"
CHECK_INTERVAL_SECONDS = 1.0


def supervisor_pid(
    environ: Mapping[str, str] = os.environ, parent: Callable[[], int] = os.getppid
) -> int | None:
    """The supervisor this process was started under, or None when it runs on its own.

    The variable counts only while it names our parent: a process that inherited it from a
    worker (a grandchild of ``serve``) is not a worker.
    """
    value = environ.get(SUPERVISOR_ENV, "")
    return int(value) if value.isdigit() and int(value) == parent() else None


def _terminate() -> None:
    # uvicorn's own SIGTERM handler: the graceful shutdown, drain included.
    signal.raise_signal(signal.SIGTERM)


async def stop_when_orphaned(
    supervisor: int,
    *,
    parent: Callable[[], int] = os.getppid,
    stop: Callable[[], None] = _terminate,
    interval: float = CHECK_INTERVAL_SECONDS,
) -> None:
    """Return once ``supervisor`` is no longer our parent, having called ``stop``."""
    while parent() == supervisor:
        await asyncio.sleep(interval)
    log.error("supervisor_gone", supervisor=supervisor, pid=os.getpid())
    stop()
