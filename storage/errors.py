"""Storage errors (kept apart from ``receiver.errors``: storage never imports receiver)."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of storage errors raised on purpose."""


class StoreUnavailable(StorageError):
    """The database cannot take the write now (down, locked past the timeout, read-only, full).

    The webhook endpoint answers 503 with ``Retry-After``; Nova retries.
    """


class SchemaOutOfDate(StorageError):
    """The database schema is not at the revision this code needs."""

    def __init__(self, current: str | None, expected: str) -> None:
        super().__init__(
            f"database schema is at {current or 'nothing'}, this version needs {expected}: "
            "run `nova-sink db upgrade`"
        )
        self.current = current
        self.expected = expected


class LeaseHeld(StorageError):
    """Another process holds the named lease."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"lease {name!r} is held by {holder}")
        self.name = name
        self.holder = holder
