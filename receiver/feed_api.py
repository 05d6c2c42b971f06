"""``GET /api/changes``: the change feed's request, without HTTP (``receiver.read_api`` serves it).

Changes after the cursor, ascending. ``after=now`` starts at the current head. ``wait=S``
holds the answer until a change arrives, S seconds pass, or the client goes away; the
database is polled (every ``poll_seconds`` while someone waits), because other instances
and ``reconcile`` write to it too. ``include=result`` adds each result as stored now
(null once erased), read in the same transaction as the page.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from receiver import cursors
from receiver.query_params import Query, cursor_param
from receiver.rows import json_row
from storage.records import STATUSES
from storage.store import ChangeFilter, Store

FEED_PARAMETERS = ("after", "limit", "wait", "job", "batch", "status", "include")
MAX_WAIT_SECONDS = 30
POLL_SECONDS = 0.25
_T = TypeVar("_T")


class Reader(Protocol):
    """Runs a read-only query in a transaction, off the event loop."""

    def __call__(self, query: Callable[[Store], _T], /) -> Awaitable[_T]: ...


@dataclass(frozen=True, slots=True)
class _Read:
    rows: Sequence[Mapping[Any, Any]]
    next_seq: int
    results: Mapping[str, Mapping[Any, Any]]


def _read_page(
    store: Store, *, after: int, flt: ChangeFilter, limit: int, with_results: bool
) -> _Read:
    page = store.list_changes(after=after, flt=flt, limit=limit)
    ids = [row["scoring_job_id"] for row in page.rows] if with_results else []
    return _Read(page.rows, page.next_seq, store.results_by_id(ids))


async def read_changes(
    query: Query,
    *,
    limit: int,
    read: Reader,
    disconnected: Callable[[], Awaitable[bool]],
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    """The answer body ``{"data": [...], "next": cursor}`` (raises ``QueryError``)."""
    wait = query.integer("wait", default=0, low=0, high=MAX_WAIT_SECONDS)
    with_results = query.choice("include", ("result",)) is not None
    flt = ChangeFilter(
        job_id=query.text("job"),
        batch_id=query.text("batch"),
        status=query.choice("status", STATUSES),
    )
    if query.raw("after") == "now":
        position = await read(lambda store: store.change_head())
    else:
        position = cursor_param(query, "changes", cursors.decode_position) or 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        page = await read(
            functools.partial(
                _read_page, after=position, flt=flt, limit=limit, with_results=with_results
            )
        )
        position = page.next_seq
        if page.rows or loop.time() >= deadline:
            break
        await asyncio.sleep(min(poll_seconds, max(0.0, deadline - loop.time())))
        if await disconnected():
            break  # nobody will read the answer; stop polling for it
    data = []
    for row in page.rows:
        item = {**json_row(row), "cursor": cursors.encode("changes", row["seq"])}
        if with_results:
            result = page.results.get(row["scoring_job_id"])
            item["result"] = None if result is None else json_row(result)
        data.append(item)
    return {"data": data, "next": cursors.encode("changes", position)}
