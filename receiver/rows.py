"""Stored rows as JSON values: one rendering for the CLI's ``--json`` and the read API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


def json_value(value: Any) -> Any:
    """Timestamps as ISO-8601 UTC with ``Z``; raw bodies as text (undecodable bytes shown
    as U+FFFD); everything else as the database gave it."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def json_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): json_value(value) for key, value in row.items()}
