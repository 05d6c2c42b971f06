"""Opaque paging cursors for the read API. Pure: no I/O.

A cursor is the base64url text of a small JSON array, ``[listing, *last sort key]``.
Clients must treat it as opaque (its shape may change); it is not signed because it only
names a position in data the same token can read anyway. Decoding is strict: a cursor of
another listing, a wrong shape, or a value of the wrong type is a ``CursorError``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

MAX_CURSOR_CHARS = 512
# Sequence numbers and row ids fit in a signed 64-bit column.
MAX_POSITION = 2**63 - 1


class CursorError(ValueError):
    """A cursor that this listing did not hand out."""


def encode(listing: str, *key: Any) -> str:
    """The cursor for ``key``, the last sort key of a page of ``listing``."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([listing, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(listing: str, text: str, arity: int) -> list[Any]:
    if not text or len(text) > MAX_CURSOR_CHARS or not text.isascii():
        raise CursorError("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise CursorError("malformed cursor") from None
    if not isinstance(values, list) or len(values) != arity + 1:
        raise CursorError("malformed cursor")
    if values[0] != listing:
        raise CursorError(f"not a cursor of {listing}")
    return values[1:]


def _position(value: Any) -> int:
    # bool is an int to Python; a position never is.
    if type(value) is not int or not 0 <= value <= MAX_POSITION:
        raise CursorError("malformed cursor")
    return value


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise CursorError("malformed cursor")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CursorError("malformed cursor") from None
    if parsed.tzinfo is None:
        raise CursorError("malformed cursor")
    return parsed.astimezone(UTC)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise CursorError("malformed cursor")
    return value


def decode_position(listing: str, text: str) -> int:
    """A cursor holding one number (change sequence, inbox row id)."""
    (value,) = _decode(listing, text, 1)
    return _position(value)


def decode_timestamp_key(listing: str, text: str) -> tuple[datetime, str]:
    """A cursor holding (timestamp, id): results by first seen, batches by tracked at."""
    at, ident = _decode(listing, text, 2)
    return _timestamp(at), _text(ident)
