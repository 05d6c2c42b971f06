"""Every SQL statement of nova-sink, one module per aggregate behind the ``Store`` facade.

``Store`` never commits: callers own the transaction (``storage.db.transaction``). Writes
are single statements where concurrency could race (``INSERT … ON CONFLICT``). Statements
that differ by dialect live in ``storage.store.dialect``.

- ``results``: scoring jobs, merged by the precedence rules
- ``batches``: tracked batches and intake rejections
- ``inbox``: deliveries, raw bodies and attempts
- ``runs``: reconcile runs and the lease
- ``admin``: retention, erasure, stats, schema probe
- ``changes``: the change feed, numbered in commit order
- ``pages``: keyset pages for the read API
- ``dashboard``: keyset-paged reads for the dashboard
- ``pins``: the signature construction pinned per webhook secret
"""

from __future__ import annotations

from storage.store.admin import AdminQueries
from storage.store.batches import BatchQueries
from storage.store.changes import (
    ChangeFilter,
    ChangePage,
    ChangeQueries,
    ResultChange,
    feed_change,
)
from storage.store.dashboard import DashboardQueries
from storage.store.inbox import InboxQueries
from storage.store.pages import PageQueries
from storage.store.pins import Pin, PinQueries
from storage.store.results import Change, ResultFilter, ResultQueries
from storage.store.runs import RunQueries

__all__ = [
    "Change",
    "ChangeFilter",
    "ChangePage",
    "Pin",
    "ResultChange",
    "ResultFilter",
    "Store",
    "feed_change",
]


# Subclasses precede their bases: DashboardQueries extends PageQueries, which extends
# ResultQueries.
class Store(
    DashboardQueries,
    PageQueries,
    ResultQueries,
    BatchQueries,
    InboxQueries,
    RunQueries,
    AdminQueries,
    ChangeQueries,
    PinQueries,
):
    """Typed queries over one open connection (and its transaction)."""
