"""Every SQL statement of nova-sink, one module per aggregate behind the ``Store`` facade.

``Store`` never commits: callers own the transaction (``storage.db.transaction``). Writes
are single statements where concurrency could race (``INSERT … ON CONFLICT``). Statements
that differ by dialect live in ``storage.store.dialect``.

- ``results``: scoring jobs, merged by the precedence rules
- ``batches``: tracked batches and intake rejections
- ``inbox``: deliveries, raw bodies and attempts
- ``groups``: what a commit group of deliveries writes first
- ``runs``: reconcile runs and the lease
- ``admin``: retention, erasure, stats, schema probe
- ``changes``: the change feed, numbered in commit order
- ``pages``: keyset pages for the read API
- ``dashboard``: keyset-paged reads for the dashboard
- ``pins``: the signature construction pinned per webhook secret
- ``reads``: the result reads and the schema probe without the table models
  (``ResultReader``, for the CLI's start-up)
- ``facade``: ``Store`` itself

The names below are imported on first use (PEP 562 ``__getattr__``): importing this
package, or ``storage.store.reads``, loads neither the table models nor SQLModel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.store.changes import (
        ChangeFilter,
        ChangePage,
        ResultChange,
        feed_change,
    )
    from storage.store.facade import Store
    from storage.store.pins import Pin
    from storage.store.reads import ResultFilter, ResultReader
    from storage.store.results import Change

__all__ = [
    "Change",
    "ChangeFilter",
    "ChangePage",
    "Pin",
    "ResultChange",
    "ResultFilter",
    "ResultReader",
    "Store",
    "feed_change",
]

_HOMES = {
    "Change": "results",
    "ChangeFilter": "changes",
    "ChangePage": "changes",
    "Pin": "pins",
    "ResultChange": "changes",
    "ResultFilter": "reads",
    "ResultReader": "reads",
    "Store": "facade",
    "feed_change": "changes",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
