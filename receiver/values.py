"""The value rules shared by every way Nova's data arrives (webhooks, API answers). Pure.

Each rule is a plausibility check on a value a scorer or Nova's API can actually produce;
anything else is hostile or broken input and must never become a stored result:

- ``parse_timestamp``: ISO-8601 (``Z`` or offset, optional fractions) or unix seconds,
  ASCII only, between 2000 and 2100. ``str.isdigit`` is true for ``"١٢٣"`` and ``"²"``,
  which ``int`` reads as another number or rejects, so digits are checked as ASCII.
- ``check_score``: Nova documents 0-10 and 1-10 scales; 0..10 covers both.
- ``plain_segment``: ids end up in request paths (``/v1/jobs/{jobId}/…``); ``..`` or a
  ``/`` would make a request address another resource.
- ``normalize_status``: every generation's status spelling mapped to three values.

Each raises ``ValueError`` with a message that names the problem, never echoing long input.
"""

from __future__ import annotations

from datetime import UTC, datetime

from storage.records import Status

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MIN_SCORE, MAX_SCORE = 0, 10
# Longer than any ISO-8601 spelling with microseconds and an offset: refuse before parsing.
_MAX_TIMESTAMP_CHARS = 40
# Unix seconds for 2100 have 10 digits; more is implausible and int() of it is wasted work.
_MAX_UNIX_DIGITS = 11

_PENDING = frozenset({"queued", "pending", "processing", "in_progress"})
_TERMINAL: dict[str, Status] = {"completed": "completed", "failed": "failed"}
_BATCH_FAILED = frozenset({"failed", "partial_failure"})
# Characters that must never reach a path segment, even percent-quoted: separators that a
# server (or a proxy decoding %2F) could read as structure.
SEPARATORS = frozenset("/\\")
# Segments that name a directory, not a resource.
DOT_SEGMENTS = frozenset({".", ".."})


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of ASCII ``0-9`` only (``str.isdigit`` accepts ``"١²"``)."""
    return text.isascii() and text.isdigit()


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp or unix seconds to an aware UTC datetime in 2000-2100.

    A naive timestamp is taken as UTC. Raises ``ValueError`` on anything else.
    """
    text = value.strip()
    if len(text) > _MAX_TIMESTAMP_CHARS or not text.isascii():
        raise ValueError("not an ASCII ISO-8601 timestamp")
    if text.isdigit():
        if len(text) > _MAX_UNIX_DIGITS:
            raise ValueError("unix timestamp out of range")
        parsed = datetime.fromtimestamp(int(text), tz=UTC)
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except (ValueError, OverflowError):
            raise ValueError("not an ISO-8601 timestamp") from None
        # An offset pushing year 1 or 9999 out of datetime's range overflows in astimezone.
        try:
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
    if not EARLIEST <= parsed < LATEST:
        raise ValueError("timestamp outside 2000-2100")
    return parsed


def check_score(value: int) -> int:
    """``value`` when it is on Nova's documented scale, else ``ValueError``."""
    if not MIN_SCORE <= value <= MAX_SCORE:
        raise ValueError(f"score outside {MIN_SCORE}..{MAX_SCORE}")
    return value


def is_plain_segment(value: str) -> bool:
    """Whether ``value`` can be one path segment as it is: not ``.``/``..``, no separator,
    no control character, not empty."""
    return (
        bool(value)
        and value not in DOT_SEGMENTS
        and SEPARATORS.isdisjoint(value)
        # isprintable() is the fast path; it is also false for format characters such as
        # a right-to-left mark, which an id in Hebrew may carry: only C0/C1 controls fail.
        and (value.isprintable() or not any(_is_control(char) for char in value))
    )


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def plain_segment(value: str) -> str:
    """``value`` when ``is_plain_segment``, else ``ValueError``."""
    if not is_plain_segment(value):
        raise ValueError("not a plain path segment (empty, '.', '..', '/', '\\' or control)")
    return value


def normalize_status(value: str) -> Status:
    """Map any generation's status spelling to ``pending | completed | failed``.

    Raises ``ValueError`` for a value no generation of the docs uses.
    """
    lowered = value.strip().lower()
    if lowered in _PENDING:
        return "pending"
    if lowered in _TERMINAL:
        return _TERMINAL[lowered]
    if lowered in _BATCH_FAILED:
        return "failed"
    raise ValueError(f"unknown status {value[:40]!r}")
