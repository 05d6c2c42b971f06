"""The shared base of the store's aggregates: one open connection and its dialect."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage.store.dialect import dialect_insert


class StoreBase:
    """Typed queries over one open connection (and its transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which knows ``ON CONFLICT``."""
        return dialect_insert(self._dialect)(table)
