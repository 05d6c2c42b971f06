"""The hot path's value conversions (``storage.store.dialect``) store exactly what the
general path (SQLAlchemy's types, ``json.dumps``) would: the two paths write the same rows,
and readers, exports and comparisons cannot tell them apart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from storage.store.dialect import json_texts, sqlite_time

OFFSETS = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Far enough from the ends of the calendar that converting to UTC stays inside it.
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)


def _fields(value: datetime) -> str:
    """The format field by field, as SQLAlchemy's SQLite ``DateTime`` writes it."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


@given(MOMENTS)
def test_a_time_is_stored_as_sqlites_datetime_text_in_utc(value: datetime) -> None:
    """Whatever the offset, year or microseconds (zero included, which ``isoformat``
    would drop unless told): the UTC text, always with six fractional digits."""
    assert sqlite_time(value) == _fields(value)


@given(st.lists(st.text()))
def test_a_list_of_texts_is_stored_as_json_dumps_writes_it(values: list[str]) -> None:
    """Any text, non-ASCII, quotes, control characters and lone surrogates included."""
    assert json_texts(tuple(values)) == json.dumps(values)
