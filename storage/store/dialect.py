"""Every dialect-specific statement of the store, in one place.

The statements of the webhook hot path are SQL text built once per dialect from the table
definitions and executed on the driver's cursor with plain tuples: no statement
compilation, no per-row bind processing. SQLAlchemy's ``execute(insert(...), rows)`` spent
more Python time per row than SQLite spent storing it, in the writer thread, where that
time also holds the GIL against the event loop. The values are converted here, once per
row, to what each driver stores (``hot_sql(dialect).job_row``).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

import sqlalchemy as sa

from storage.models import WITH_JOB, WITHOUT_JOB, UTCDateTime
from storage.records import ScoringResult
from storage.store.tables import DELIVERIES, JOBS, d, j


def dialect_insert(dialect: str) -> Any:
    """The dialect's ``insert``, which knows ``ON CONFLICT``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


@functools.cache
def job_insert(dialect: str) -> Any:
    """Insert a result unless its scoring job is stored; returns the ids inserted."""
    return (
        dialect_insert(dialect)(JOBS)
        .on_conflict_do_nothing(index_elements=["scoring_job_id"])
        .returning(j.scoring_job_id)
    )


@functools.cache
def delivery_upsert(dialect: str, *, with_job: bool) -> Any:
    """Insert an inbox row, or count one more attempt on it; returns the attempts.

    ``with_job``: the delivery has a scoring job id; its row is unique by job and key, the
    others by key alone (``storage.models.Delivery``)."""
    stmt = dialect_insert(dialect)(DELIVERIES)
    elements, where = _INBOX_IDENTITY[with_job]
    return stmt.on_conflict_do_update(
        index_elements=list(elements),
        index_where=sa.text(where),
        set_={
            "attempts": d.attempts + stmt.excluded.attempts,
            "last_received_at": stmt.excluded.last_received_at,
        },
    ).returning(d.attempts)


# The inbox's two unique indexes, as an upsert names them: (columns, the index's WHERE).
_INBOX_IDENTITY = {
    True: (("scoring_job_id", "delivery_key"), WITH_JOB),
    False: (("delivery_key",), WITHOUT_JOB),
}


def _inbox_conflict(with_job: bool) -> str:
    elements, where = _INBOX_IDENTITY[with_job]
    return (
        f" ON CONFLICT ({', '.join(elements)}) WHERE {where} DO UPDATE SET"
        " attempts = delivery.attempts + excluded.attempts,"
        " last_received_at = excluded.last_received_at"
    )


def id_list_param(dialect: str, ids: Sequence[str]) -> Any:
    """One parameter holding a list of ids: a JSON array for SQLite's ``json_each``, a
    list (an array) for PostgreSQL's ``= ANY``. One statement text for any count."""
    return list(ids) if dialect == "postgresql" else json_texts(ids)


def body_contains(dialect: str, needle: bytes) -> sa.ColumnElement[bool]:
    """Whether a delivery's raw body contains ``needle`` (a byte substring search)."""
    literal = sa.literal(needle, sa.LargeBinary)
    if dialect == "postgresql":
        return sa.func.position(literal.op("IN")(d.raw_body)) > 0
    return sa.func.instr(d.raw_body, literal) > 0


# ---- the hot path: prebuilt SQL text ---------------------------------------------------------

# The values a result brings, in table order; the group adds source, times and the count.
RESULT_COLUMNS: tuple[str, ...] = tuple(
    c.name
    for c in JOBS.columns
    if c.name not in {"source", "first_seen_at", "updated_at", "delivery_count"}
)
_GROUP_COLUMNS = ("source", "first_seen_at", "updated_at", "delivery_count")
DELIVERY_COLUMNS: tuple[str, ...] = (
    "delivery_key",
    "webhook_id",
    "body_sha256",
    "webhook_id_reused",
    "event",
    "scoring_job_id",
    "batch_id",
    "outcome",
    "signature_scheme",
    "secret_fingerprint",
    "received_at",
    "last_received_at",
    "attempts",
    "raw_body",
)
_LISTS = frozenset(c.name for c in JOBS.columns if isinstance(c.type, sa.JSON))
_TIMES = frozenset(c.name for c in JOBS.columns if isinstance(c.type, UTCDateTime))


def sqlite_time(value: datetime | None) -> str | None:
    """A UTC datetime as SQLAlchemy's SQLite ``DateTime`` stores it (sortable text:
    ``YYYY-MM-DD HH:MM:SS.ffffff``), by ``isoformat`` (C) without its offset: a third
    faster than formatting the seven fields, for every result the writer stores."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # the clock's and the parser's times are UTC already
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def json_texts(values: Sequence[str]) -> str:
    """``json.dumps(list(values))`` for strings, to the byte: each string by the encoder's
    own C function, without building an encoder per call as ``json.dumps`` does (2.2 µs
    for three short strings, against 0.6; three lists per result the writer stores)."""
    return "[" + ", ".join(map(encode_basestring_ascii, values)) + "]"


def _pg_time(value: datetime | None) -> datetime | None:
    return value


def _pg_type(column: sa.Column[Any]) -> str:
    from sqlalchemy.dialects import postgresql

    dialect: sa.Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(column.type.compile(dialect=dialect))


@dataclass(frozen=True, slots=True)
class HotSql:
    """The hot path's statements and value conversions for one dialect."""

    # Insert new results. SQLite: executemany of rows; PostgreSQL: one statement over the
    # rows as one JSON parameter (``job_records``) that returns the ids it inserted, and
    # leaves out erased candidates itself, so that it can be sent before the look-up of
    # them has answered (``Store.open_group``).
    insert_jobs: str
    # Insert inbox rows, or count attempts: those with a scoring job id, and the others.
    upsert_deliveries: str
    upsert_deliveries_without_job: str
    # What a commit group needs to know before it writes, each part a look-up by one list
    # of ids, of rows (kind, id, value): (0, application id, NULL) for the application ids
    # that ``erase`` tombstoned; (1, webhook id, body hash) for the stored deliveries under
    # a webhook id; (2, scoring job id, NULL) for the results stored already (SQLite only:
    # PostgreSQL's ``insert_jobs`` returns what it inserted, and has no such part). The
    # parts a group needs run as one statement (``prior``): one statement less per group.
    prior_parts: tuple[str, str, str]

    def prior(self, wanted: tuple[bool, bool, bool]) -> str:
        """The statement of the ``prior_parts`` that ``wanted`` names, one parameter each."""
        parts = zip(self.prior_parts, wanted, strict=True)
        return _union(tuple(part for part, want in parts if want))

    # The change feed: add n to the counter (creating its row), returning the new value
    # (``bump_counter``); one statement for all the changes of a commit, copying each
    # result's status, job and batch as they are now (``log_changes``). SQLite: the two
    # in turn, the rows numbered from the counter's value. PostgreSQL: ``log_changes`` does
    # both (a data-modifying WITH), since each statement costs the backend ~100 µs whatever
    # it does; SQLite has no INSERT in WITH. A change of a result that is not stored gets no
    # status (the LEFT JOIN), which the column refuses: the transaction fails instead of
    # handing out a number no reader would ever see, and nothing has to be read back
    # before the COMMIT is sent.
    bump_counter: str
    log_changes: str
    time: Callable[[datetime | None], Any]
    returns_inserted: bool

    def job_row(self, result: ScoringResult) -> tuple[Any, ...]:
        """The result's ``RESULT_COLUMNS`` values as this driver stores them."""
        row = list(_RESULT_VALUES(result))  # one C call for all the attributes
        for i in _LIST_INDEXES:
            value = row[i]
            # Empty stays SQL NULL, as the models' JSON(none_as_null=True) stores it.
            row[i] = None if value is None else json_texts(value)
        time = self.time
        for i in _TIME_INDEXES:
            if row[i] is not None:
                row[i] = time(row[i])
        return tuple(row)

    @staticmethod
    def job_records(rows: Iterable[tuple[Any, ...]]) -> str:
        """PostgreSQL: ``job_row``s as the JSON array of records ``insert_jobs`` reads.

        One JSON text for the group: psycopg adapts each list parameter element by element
        in Python, and the 21 column arrays this replaced cost 240 µs of the writer's CPU
        per group of 8, against 90 µs for this.
        """
        records = []
        for row in rows:
            values = list(row)
            for i in _TIME_INDEXES:
                if values[i] is not None:
                    values[i] = values[i].isoformat()
            records.append(dict(zip(RESULT_COLUMNS, values, strict=True)))
        return json.dumps(records)


_RESULT_VALUES = operator.attrgetter(*RESULT_COLUMNS)
_LIST_INDEXES = tuple(i for i, name in enumerate(RESULT_COLUMNS) if name in _LISTS)
_TIME_INDEXES = tuple(i for i, name in enumerate(RESULT_COLUMNS) if name in _TIMES)


_BUMP_COUNTER = (
    "INSERT INTO change_counter (id, seq) VALUES (1, ?)"
    " ON CONFLICT (id) DO UPDATE SET seq = change_counter.seq + excluded.seq RETURNING seq"
)
_CHANGE_COLUMNS = "seq, scoring_job_id, kind, status, job_id, batch_id, changed_at"


@functools.cache
def _union(parts: tuple[str, ...]) -> str:
    return " UNION ALL ".join(parts)


def _placeholders(style: str, n: int) -> str:
    return ", ".join([style] * n)


def _delivery_upsert_sql(style: str, *, with_job: bool) -> str:
    return (
        f"INSERT INTO delivery ({', '.join(DELIVERY_COLUMNS)})"  # noqa: S608 - our names
        f" VALUES ({_placeholders(style, len(DELIVERY_COLUMNS))}){_inbox_conflict(with_job)}"
    )


@functools.cache
def hot_sql(dialect: str) -> HotSql:
    jobs_cols = ", ".join((*RESULT_COLUMNS, *_GROUP_COLUMNS))
    if dialect == "postgresql":
        # The JSON columns arrive as JSON text (``job_row``): text in the record, cast back.
        types = {name: _pg_type(JOBS.c[name]) for name in RESULT_COLUMNS}
        record = ", ".join(
            f"{name} {'text' if name in _LISTS else types[name]}" for name in RESULT_COLUMNS
        )
        values = ", ".join(
            f"u.{name}::{types[name]}" if name in _LISTS else f"u.{name}" for name in RESULT_COLUMNS
        )
        bump = _BUMP_COUNTER.replace("?", "%s")
        return HotSql(
            insert_jobs=(
                f"INSERT INTO scoring_job ({jobs_cols})"  # noqa: S608 - names from our table
                f" SELECT {values}, %s, %s, %s, %s FROM json_to_recordset(%s::json) AS u({record})"
                " WHERE NOT EXISTS (SELECT 1 FROM erased_application AS e"
                " WHERE e.application_id = u.application_id)"
                " ON CONFLICT (scoring_job_id) DO NOTHING RETURNING scoring_job_id"
            ),
            upsert_deliveries=_delivery_upsert_sql("%s", with_job=True),
            upsert_deliveries_without_job=_delivery_upsert_sql("%s", with_job=False),
            bump_counter=bump,
            prior_parts=(
                "SELECT 0, application_id, NULL FROM erased_application"
                " WHERE application_id = ANY(%s)",
                "SELECT 1, webhook_id, body_sha256 FROM delivery WHERE webhook_id = ANY(%s)",
                "",
            ),
            log_changes=(
                f"WITH top AS ({bump})"  # noqa: S608 - our names
                f" INSERT INTO result_change ({_CHANGE_COLUMNS})"
                " SELECT top.seq - %s::bigint + u.ord, u.sid, u.kind, j.status,"
                " j.job_id, j.batch_id, %s"
                " FROM top, unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(sid, kind, ord)"
                " LEFT JOIN scoring_job AS j ON j.scoring_job_id = u.sid"
            ),
            time=_pg_time,
            returns_inserted=True,
        )
    n_jobs = len(RESULT_COLUMNS) + len(_GROUP_COLUMNS)
    return HotSql(
        insert_jobs=(
            f"INSERT INTO scoring_job ({jobs_cols}) VALUES ({_placeholders('?', n_jobs)})"  # noqa: S608
            " ON CONFLICT (scoring_job_id) DO NOTHING"
        ),
        upsert_deliveries=_delivery_upsert_sql("?", with_job=True),
        upsert_deliveries_without_job=_delivery_upsert_sql("?", with_job=False),
        bump_counter=_BUMP_COUNTER,
        log_changes=(
            f"INSERT INTO result_change ({_CHANGE_COLUMNS})"  # noqa: S608
            " SELECT json_extract(u.value, '$[0]'), json_extract(u.value, '$[1]'),"
            " json_extract(u.value, '$[2]'), j.status, j.job_id, j.batch_id, ?"
            " FROM json_each(?) AS u"
            " LEFT JOIN scoring_job AS j ON j.scoring_job_id = json_extract(u.value, '$[1]')"
        ),
        prior_parts=(
            "SELECT 0, application_id, NULL FROM erased_application"
            " WHERE application_id IN (SELECT value FROM json_each(?))",
            "SELECT 1, webhook_id, body_sha256 FROM delivery"
            " WHERE webhook_id IN (SELECT value FROM json_each(?))",
            "SELECT 2, scoring_job_id, NULL FROM scoring_job"
            " WHERE scoring_job_id IN (SELECT value FROM json_each(?))",
        ),
        time=sqlite_time,
        returns_inserted=False,
    )
