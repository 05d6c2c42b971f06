"""A worker of ``serve --workers N`` stops when serve is gone (``receiver.supervision``).
The end-to-end case, serve killed with -9, is in ``tests/test_commit_hub.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from receiver.supervision import SUPERVISOR_ENV, stop_when_orphaned, supervisor_pid


def parents(*pids: int) -> Iterator[int]:
    yield from pids


def test_a_worker_stops_once_its_parent_is_no_longer_serve() -> None:
    seen = parents(40, 40, 40, 1)  # serve is pid 40; orphans are adopted by init
    stops: list[int] = []

    asyncio.run(
        stop_when_orphaned(40, parent=lambda: next(seen), stop=lambda: stops.append(1), interval=0)
    )

    assert stops == [1]
    assert next(seen, None) is None  # it looked until the change, and stopped looking


def test_a_process_outside_serve_is_not_supervised() -> None:
    assert supervisor_pid({}, parent=lambda: 40) is None
    assert supervisor_pid({SUPERVISOR_ENV: "not a pid"}, parent=lambda: 40) is None


def test_the_variable_counts_only_while_it_names_our_parent() -> None:
    """A grandchild of serve (a process a worker started) inherits the variable but is
    not a worker: it must not stop when its own parent, the worker, exits."""
    assert supervisor_pid({SUPERVISOR_ENV: "40"}, parent=lambda: 40) == 40
    assert supervisor_pid({SUPERVISOR_ENV: "40"}, parent=lambda: 41) is None
