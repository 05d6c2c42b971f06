"""The shared base of the store's aggregates: one open connection and its dialect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from storage.store.dialect import dialect_insert, id_list_param


class StoreBase:
    """Typed queries over one open connection (and its transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    def _id_list(self, ids: Sequence[str]) -> Any:
        """One parameter holding a list of ids: a JSON array for SQLite's ``json_each``, a
        list (an array) for PostgreSQL's ``= ANY``. One statement text for any count."""
        return id_list_param(self._dialect, ids)

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which knows ``ON CONFLICT``."""
        return dialect_insert(self._dialect)(table)
