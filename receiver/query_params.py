"""Strict parsing of read-API query parameters. Pure: no I/O.

Every problem is a ``QueryError`` naming the parameter, answered 400: an unknown or
repeated parameter, an empty value, non-ASCII digits (``str.isdigit`` says yes to "²" and
"١٢٣"), numbers too long to be sensible, and timestamps that no calendar or column holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from receiver.cursors import CursorError
from receiver.values import is_ascii_digits

MAX_TEXT = 200
_MAX_DIGITS = 12
_DURATION = re.compile(r"([0-9]{1,6})([smhdw])")
# An unencoded "+" in a query string arrives as a space: "…T10:00:00 01:00".
_SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# One vocabulary: the statuses a stored result can have.
_T = TypeVar("_T")


class QueryError(ValueError):
    """A query parameter that cannot be used; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class Query:
    """The query parameters of one request, read strictly.

    ``items`` is the multi-map as pairs (Starlette's ``query_params.multi_items()``);
    ``allowed`` the parameters the route knows. Unknown parameters are refused up front.
    """

    def __init__(self, items: Sequence[tuple[str, str]], allowed: Collection[str]) -> None:
        unknown = sorted({name for name, _ in items if name not in allowed})
        if unknown:
            names = ", ".join(repr(name)[:60] for name in unknown)
            raise QueryError(
                unknown[0][:60],
                f"unknown parameter(s) {names}; known: {', '.join(sorted(allowed))}",
            )
        self._values: dict[str, str] = {}
        for name, value in items:
            if name in self._values:
                raise QueryError(name, "given more than once")
            self._values[name] = value

    def text(self, name: str) -> str | None:
        """A plain text value (an id): printable, at most ``MAX_TEXT`` characters."""
        value = self._values.get(name)
        if value is None:
            return None
        if not value:
            raise QueryError(name, "empty value")
        if len(value) > MAX_TEXT or not value.isprintable():
            raise QueryError(name, f"must be printable text of at most {MAX_TEXT} characters")
        return value

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        if value not in choices:
            raise QueryError(name, f"must be one of {', '.join(choices)}")
        return value

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        """A whole number in ``[low, high]``, written in ASCII digits."""
        value = self._values.get(name)
        if value is None:
            return default
        if not (is_ascii_digits(value) and len(value) <= _MAX_DIGITS):
            raise QueryError(name, f"must be a whole number from {low} to {high}")
        number = int(value)
        if not low <= number <= high:
            raise QueryError(name, f"must be a whole number from {low} to {high}")
        return number

    def raw(self, name: str) -> str | None:
        """The value as given (for cursors, which have their own strict decoder)."""
        return self._values.get(name)

    def since(self, name: str, *, now: datetime) -> datetime | None:
        """An ISO-8601 time, unix seconds, or an age like ``1h`` / ``7d`` (meaning now minus)."""
        value = self._values.get(name)
        if value is None:
            return None
        try:
            return parse_since(value, now=now)
        except ValueError:
            raise QueryError(
                name, "must be an ISO-8601 time, unix seconds, or an age like 30m, 1h, 7d"
            ) from None


def parse_since(text: str, *, now: datetime) -> datetime:
    """See ``Query.since``; raises ``ValueError`` for anything else or out of range."""
    if not text or not text.isascii() or len(text) > 40:
        raise ValueError(text)
    age = _DURATION.fullmatch(text)
    try:
        if age is not None:
            return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
        if text.isdigit():
            if len(text) > _MAX_DIGITS:
                raise ValueError(text)
            return datetime.fromtimestamp(int(text), tz=UTC)
        parsed = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", text))
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        # Converting near the calendar's ends overflows (0001-01-01T00:00+01:00).
        return parsed.astimezone(UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(text) from exc


def cursor_param(query: Query, listing: str, decode: Callable[[str, str], _T]) -> _T | None:
    """The ``after`` cursor of ``listing``, decoded; a bad one is a ``QueryError``."""
    raw = query.raw("after")
    if raw is None:
        return None
    try:
        return decode(listing, raw)
    except CursorError as exc:
        raise QueryError("after", f"{exc}: pass the `next` value of a previous answer") from None
