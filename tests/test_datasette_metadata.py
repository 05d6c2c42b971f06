"""``datasette/metadata.json`` describes the real schema, and its canned queries run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.servers import migrated_database

METADATA = Path(__file__).resolve().parent.parent / "datasette" / "metadata.json"


def test_every_described_table_and_column_exists_and_every_column_is_described(
    tmp_path: Path,
) -> None:
    """A renamed or added column shows up here, not as a silent gap in Datasette."""
    path = tmp_path / "nova_sink.db"
    migrated_database(path)
    tables = json.loads(METADATA.read_text())["databases"]["nova_sink"]["tables"]
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, meta in tables.items():
            assert table in names, table
            columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            described = set(meta.get("columns", {}))
            assert described <= columns, (table, described - columns)
            if described:
                assert columns - {"id"} <= described, (table, columns - described)
            assert set(meta.get("facets", [])) <= columns, table


def test_every_canned_query_runs(tmp_path: Path) -> None:
    """Each canned query is valid SQL for the current schema."""
    path = tmp_path / "nova_sink.db"
    migrated_database(path)
    queries = json.loads(METADATA.read_text())["databases"]["nova_sink"]["queries"]
    with sqlite3.connect(path) as conn:
        for name, query in queries.items():
            conn.execute(query["sql"]).fetchall()
            assert query["title"], name
