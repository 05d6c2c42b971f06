"""The shared base of the store's aggregates: one open connection and its dialect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from storage.db import INDEXED_PLANS, wrapped_driver_errors
from storage.store.dialect import dialect_insert, id_list_param


class StoreBase:
    """Typed queries over one open connection (and its transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    def _driver_sql(
        self, sql: str, params: Any, *, many: bool = False, replan: bool = False
    ) -> Any:
        """Run prebuilt SQL text on the driver's own cursor; returns the cursor.

        For the webhook hot path (``storage.store.dialect.hot_sql``): ``exec_driver_sql``
        spends ~16 µs of Python per statement around the driver's call (result metadata,
        events, context), more than SQLite needs to run a small statement, and it runs in
        the writer thread, holding the GIL against the event loop. Driver errors are
        wrapped as SQLAlchemy's, so ``storage.db`` maps them to ``StoreUnavailable`` alike.

        ``replan``: on PostgreSQL, never a server-side prepared statement, so every run is
        planned for the table as it is. psycopg prepares a statement on its fifth run, and
        PostgreSQL then settles on a generic plan made for the table of that moment: for
        a look-up whose best plan depends on the table's size, one made on a new, nearly
        empty database scanned the whole table on every later run (the inbox look-up grew
        from 0.5 ms at 3,200 rows to 2.7 ms at 12,800) until autovacuum's first ANALYZE.
        Not on the writer lane's connection, which plans without sequential scans
        (``storage.db.WriteLane``): there a kept plan is an index plan, and preparing the
        look-up saves planning it for every commit group.

        On the writer lane's PostgreSQL connection, in pipeline mode (``storage.db.WriteLane``),
        the statement is only sent: read its rows with ``_rows``.
        """
        cursor = self.conn.connection.cursor()
        with wrapped_driver_errors(self.conn, sql, params, many=many):
            if many:
                cursor.executemany(sql, params)
            elif replan and self._dialect == "postgresql" and not self.conn.info.get(INDEXED_PLANS):
                # psycopg's own keyword; SQLAlchemy types the cursor as plain DBAPI.
                cursor.execute(sql, params, prepare=False)  # type: ignore[call-arg]
            else:
                cursor.execute(sql, params)
        return cursor

    def _rows(self, cursor: Any) -> list[Any]:
        """The rows of a statement ``_driver_sql`` ran. In pipeline mode they are awaited
        here, with everything sent before them, and a failure of any of those raised here."""
        with wrapped_driver_errors(self.conn, "(rows)"):
            rows: list[Any] = cursor.fetchall()
        return rows

    def _id_list(self, ids: Sequence[str]) -> Any:
        """One parameter holding a list of ids: a JSON array for SQLite's ``json_each``, a
        list (an array) for PostgreSQL's ``= ANY``. One statement text for any count."""
        return id_list_param(self._dialect, ids)

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which knows ``ON CONFLICT``."""
        return dialect_insert(self._dialect)(table)
