"""Opaque keyset cursors and query-parameter checks for the dashboard's lists. Pure.

A cursor is the last row's sort key, JSON in URL-safe base64: opaque to people, stable for
bookmarks, and checked on the way back in (a malformed one is a 400, never a 500).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

MAX_PARAM_LENGTH = 200


class BadParameter(ValueError):
    """A query parameter that cannot be used; the message names it (answered 400)."""


def encode_cursor(*key: str | int | datetime) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(raw: str, *, shape: tuple[type, ...], name: str = "after") -> list[Any]:
    """The key inside a cursor, checked against ``shape`` (``datetime`` for timestamps)."""
    try:
        padded = raw + "=" * (-len(raw) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        raise BadParameter(f"{name} is not a cursor this dashboard made") from None
    if not isinstance(values, list) or len(values) != len(shape):
        raise BadParameter(f"{name} is not a cursor this dashboard made")
    key: list[Any] = []
    for value, kind in zip(values, shape, strict=True):
        if kind is datetime and isinstance(value, str):
            try:
                at = datetime.fromisoformat(value)
            except ValueError:
                raise BadParameter(f"{name} is not a cursor this dashboard made") from None
            if at.tzinfo is None:  # ours always carry UTC; a naive one is not ours
                raise BadParameter(f"{name} is not a cursor this dashboard made")
            key.append(at.astimezone(UTC))
        elif _is(value, kind):
            key.append(value)
        else:
            raise BadParameter(f"{name} is not a cursor this dashboard made")
    return key


def _is(value: object, kind: type) -> bool:
    if kind is int:  # bool is an int subclass, and no cursor of ours holds one
        return isinstance(value, int) and not isinstance(value, bool)
    return kind is str and isinstance(value, str)


def choice(
    params: Mapping[str, str], name: str, allowed: Collection[str] | None = None
) -> str | None:
    """An optional filter value: empty means none; ``allowed`` lists the valid ones."""
    value = params.get(name) or None
    if value is None:
        return None
    if len(value) > MAX_PARAM_LENGTH or not value.isprintable():
        raise BadParameter(f"{name} is too long or not printable")
    if allowed is not None and value not in allowed:
        raise BadParameter(f"{name} must be one of: {', '.join(sorted(allowed))}")
    return value


def only(params: Mapping[str, str], known: Collection[str]) -> None:
    """Reject parameters a page does not know: a typo must not silently show everything."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadParameter(f"unknown parameter {unknown[0]}")
