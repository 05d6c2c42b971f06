"""Engines and transactions.

SQLite gets WAL, a busy timeout, foreign keys and the configured ``synchronous`` level on
*every* pooled connection (a ``connect`` event: only ``journal_mode`` persists in the file),
and write transactions open with ``BEGIN IMMEDIATE``. A deferred transaction that turns
into a write fails with SQLITE_BUSY at once, skipping the busy timeout; that is the classic
"database is locked" 500 under concurrency.

PostgreSQL gets a lock timeout, a statement timeout and the UTC time zone on every pooled
connection (a ``connect`` event): without the timeouts a row lock held by any other session
stalls the writer for as long as it is held, and a non-UTC session time zone turns extreme
timestamps into errors when they are read back. A timeout is "try again later": 503.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from storage.errors import StoreUnavailable

if TYPE_CHECKING:
    from storage.store import Store

__all__ = [
    "INDEXED_PLANS",
    "Engine",
    "Synchronous",
    "WriteLane",
    "connection",
    "is_unavailable",
    "make_engine",
    "sqlite_path",
    "take_write_lock",
    "transaction",
    "wrapped_driver_errors",
]

Synchronous = Literal["FULL", "NORMAL"]

BUSY_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 5000
STATEMENT_TIMEOUT_MS = 10000
_WRITE = "nova_sink_write"
# In a pooled connection's ``info`` while the writer's lane holds it on PostgreSQL with
# sequential scans off (``WriteLane``): psycopg may then prepare the writer's look-ups.
INDEXED_PLANS = "nova_sink_indexed_plans"
# In a pooled SQLite connection's ``info`` while the writer's lane holds it with no busy
# timeout: its transactions take the write lock by polling (``take_write_lock``).
POLLED_WRITE_LOCK = "nova_sink_polled_write_lock"
# In a pooled PostgreSQL connection's ``info`` while the writer's lane runs it in psycopg's
# pipeline mode (``WriteLane``): what leaves that mode.
_PIPELINE = "nova_sink_pipeline"
WRITE_LOCK_FIRST_WAIT = 0.0002
WRITE_LOCK_LONGEST_WAIT = 0.004


def make_engine(
    url: str,
    *,
    synchronous: Synchronous = "FULL",
    pool_size: int = 8,
    echo: bool = False,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
) -> Engine:
    """Build the engine for ``url`` (``sqlite:///file.db`` or ``postgresql+psycopg://…``).

    The timeouts apply to PostgreSQL (SQLite waits ``BUSY_TIMEOUT_MS`` for its write lock).
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, synchronous=synchronous, pool_size=pool_size, echo=echo)
    engine = sa.create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )
    timeouts = (f"{int(lock_timeout_ms)}ms", f"{int(statement_timeout_ms)}ms")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A connect event rather than libpq "options": the URL may carry options of its own
        # (a search_path), and connect_args would replace them instead of adding to them.
        cursor = dbapi_connection.cursor()
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('TimeZone', 'UTC', false)",
            timeouts,
        )
        cursor.close()
        dbapi_connection.commit()  # SET outlives the transaction it ran in

    @event.listens_for(engine, "before_cursor_execute")
    def _on_statement(conn: sa.Connection, *_statement: object) -> None:
        # SQLAlchemy reads a statement's columns as soon as it is sent; in pipeline mode
        # they arrive only when its rows are fetched. Its statements leave that mode first.
        _leave_pipeline(conn)

    return engine


def _sqlite_engine(url: str, *, synchronous: Synchronous, pool_size: int, echo: bool) -> Engine:
    engine = sa.create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below (SQLAlchemy's pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if not conn.get_execution_options().get(_WRITE, False):
            conn.exec_driver_sql("BEGIN")
        elif conn.info.get(POLLED_WRITE_LOCK):
            # The writer's lane, once per commit group: on the driver's connection, as
            # ``exec_driver_sql`` spends ~15 µs of Python around a statement SQLite runs
            # in a few; its errors wrapped as that would, for ``_unavailable_errors``.
            driver = _driver(conn)
            with wrapped_driver_errors(conn, "BEGIN IMMEDIATE"):
                take_write_lock(
                    lambda: driver.execute("BEGIN IMMEDIATE"), timeout=BUSY_TIMEOUT_MS / 1000
                )
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def take_write_lock(
    begin: Callable[[], object],
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``begin`` (``BEGIN IMMEDIATE`` on a SQLite connection without a busy timeout)
    until it has the write lock: again 0.2 ms after a miss, then after twice as long each
    time, at most 4 ms apart. Past ``timeout`` the miss ("database is locked") is raised:
    the caller answers 503, as after SQLite's own busy timeout.

    For the writer's lane, which writes group after group: SQLite's busy handler sleeps 1,
    2, 5, 10, … up to 100 ms between tries whatever the lock does meanwhile, so a lane that
    missed the lock once slept through the next ones too while another lane (``serve
    --workers 2``: one per worker) took it again and again. At 64 connections the p99 was
    0.25 to 0.65 s; polling, 40 to 50 ms, for 3 to 30 % fewer deliveries a second in
    alternating pairs and the same ratio in the final run (benchmarks/README.md, seventh
    pass).
    """
    deadline = clock() + timeout
    wait = WRITE_LOCK_FIRST_WAIT
    while True:
        try:
            begin()
            return
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not _is_busy(exc) or clock() >= deadline:
                raise
        sleep(wait)
        wait = min(2 * wait, WRITE_LOCK_LONGEST_WAIT)


def _is_busy(exc: Exception) -> bool:
    """SQLITE_BUSY, in any of its extended forms: the lock is taken, try again."""
    code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY


# SQLSTATE classes that no retry can fix: data exception, integrity, syntax/access, limits.
_PERMANENT_SQLSTATE_CLASSES = frozenset({"22", "23", "42", "54"})
# Waits that ran out or lost a race: lock_timeout (55P03), statement_timeout (57014),
# serialization failure and deadlock (40001, 40P01), too many connections (53300).
_RETRYABLE_SQLSTATES = frozenset({"55P03", "57014", "40001", "40P01", "53300"})


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = sa.engine.make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "try again later" rather than a value it can never store.

    PostgreSQL reports some permanent failures (an index row too large) as operational
    errors; answering those with 503 would make Nova retry a delivery that can never land.
    """
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    if isinstance(sqlstate, str) and sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES:
        return False
    return isinstance(exc, OperationalError) or exc.connection_invalidated


@contextmanager
def _unavailable_errors() -> Iterator[None]:
    """Operational database failures as ``StoreUnavailable``; anything else unchanged."""
    try:
        yield
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(str(exc.orig).splitlines()[0] if exc.orig else str(exc)) from exc
        raise
    except sa.exc.TimeoutError as exc:  # every pooled connection busy past pool_timeout
        raise StoreUnavailable("no database connection free") from exc


@contextmanager
def transaction(engine: Engine, *, write: bool = True, commit: bool = True) -> Iterator[Store]:
    """Open one transaction and yield a ``Store`` on it; commit on success, roll back on error.

    ``commit=False`` rolls back even on success: a dry run does the same work, keeps nothing.

    Write transactions take SQLite's write lock up front (``BEGIN IMMEDIATE``). Operational
    failures (database down, locked past the busy timeout, read-only, disk full) surface as
    ``StoreUnavailable``.
    """
    # Imported here, not with this module: the table models behind ``Store`` are most of a
    # read-only CLI command's start-up, and those commands read through ``connection``.
    from storage.store import Store

    with connection(engine, write=write, commit=commit) as conn:
        yield Store(conn)


@contextmanager
def connection(
    engine: Engine, *, write: bool = True, commit: bool = True
) -> Iterator[sa.Connection]:
    """``transaction`` without the ``Store``: the open connection, in its transaction."""
    with _unavailable_errors(), engine.connect() as conn:
        if write:
            # Modifies the connection in place; read by the "begin" hook.
            conn.execution_options(**{_WRITE: True})
        with conn.begin() as tx:
            yield conn
            if not commit:
                tx.rollback()


def _driver(conn: sa.Connection) -> Any:
    """The driver's own connection under ``conn``."""
    return conn.connection.driver_connection


@contextmanager
def wrapped_driver_errors(
    conn: sa.Connection, statement: str, params: Any = (), *, many: bool = False
) -> Iterator[None]:
    """The driver's errors raised inside as SQLAlchemy's (for statements run on the driver's
    own connection), so that ``is_unavailable`` maps them as any other."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, params, exc, dbapi_error, ismulti=many) from exc


def _pipeline_supported() -> bool:
    import psycopg

    return bool(psycopg.Pipeline.is_supported())


def _enter_pipeline(conn: sa.Connection) -> None:
    if _PIPELINE not in conn.info:
        stack = ExitStack()
        stack.enter_context(_driver(conn).pipeline())
        conn.info[_PIPELINE] = stack


def _leave_pipeline(conn: sa.Connection) -> None:
    """Leave pipeline mode once every statement sent is answered; raises the first error
    among their answers."""
    stack = conn.info.pop(_PIPELINE, None)
    if stack is not None:
        with wrapped_driver_errors(conn, "(pipeline sync)"):
            stack.close()


def _abandon_pipeline(conn: sa.Connection) -> None:
    """Leave pipeline mode after a failed statement, whose error is already on its way up:
    the rollback then runs as any other (in pipeline mode psycopg only queues it)."""
    with suppress(Exception):  # the failure is the one the caller raises
        _leave_pipeline(conn)


class WriteLane:
    """Write transactions on one connection kept between them: the webhook writer's.

    Under load the writer commits group after group; checking a connection out of the pool
    and back in (with its reset) for each cost as much as a statement. The connection is
    given back when the caller goes idle (``release``), so an idle lane holds nothing and
    the pool's pre-ping checks it again before the next use; and after any failed
    transaction, which may have left it unusable (a restarted server).

    On PostgreSQL the kept connection plans without sequential scans while the lane holds
    it. psycopg prepares a statement on its fifth run, and PostgreSQL may then keep a
    generic plan made while the tables were nearly empty: for the writer's look-ups by
    webhook id or candidate, a scan of the whole table on every group once it has grown
    (the inbox look-up went from 0.5 ms at 3,200 rows to 2.7 ms at 12,800). Every statement
    the writer runs has an index to use, so with sequential scans off any plan it keeps is
    an index plan, and its look-ups are prepared once instead of planned on every run
    (``INDEXED_PLANS``; ``StoreBase._driver_sql``). The setting is reset before the
    connection goes back to the pool.

    On PostgreSQL the kept connection also runs in psycopg's pipeline mode, so that a
    statement whose answer is not needed yet goes out without waiting for it: a commit
    group of new results waits for the server twice, once for BEGIN, the insert of the
    results and the prior look-up (``Store.open_group``), once for the inbox rows, the
    change feed and the ``COMMIT``, against six times when each statement waited. Each
    wait is a wake-up of the backend and of this process, on cores shared with the serving
    side. The lane sends BEGIN itself (the driver in autocommit mode), as psycopg waits for
    the answer to its own. Errors surface where an answer is read, inside the transaction:
    at a fetch, or at the ``COMMIT``, which the server runs only if everything before it
    succeeded. A SQLAlchemy statement (the rarer paths: a result stored already, a batch
    summary) leaves pipeline mode first (the engine's ``before_cursor_execute``). With a
    libpq older than 14, which has no pipeline mode, each statement waits as before.

    On SQLite the kept connection has no busy timeout while the lane holds it: its
    transactions take the write lock by polling (``take_write_lock``, ``POLLED_WRITE_LOCK``)
    instead of through SQLite's busy handler, whose long sleeps starved one worker's lane
    while another's wrote. The busy timeout is set again before the connection goes back.
    """

    def __init__(self, engine: Engine, *, pipelined: bool | None = None) -> None:
        """``pipelined``: PostgreSQL in pipeline mode; by default where the driver's libpq
        has it (14 and later: psycopg's binary wheels bundle one), else as before."""
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        if pipelined is None:
            pipelined = self._postgres and _pipeline_supported()
        self._pipelined = pipelined
        self._conn: sa.Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Like ``transaction(engine)`` (a write that commits), on the kept connection."""
        from storage.store import Store

        with _unavailable_errors():
            conn = self._conn
            if conn is None:
                conn = self._take()
            try:
                if self._pipelined:
                    _enter_pipeline(conn)
                    with wrapped_driver_errors(conn, "BEGIN"):
                        _driver(conn).execute("BEGIN")  # sent with the first statement
                with conn.begin():
                    try:
                        yield Store(conn)
                    except BaseException:
                        _abandon_pipeline(conn)
                        raise
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        """Give the connection back to the pool (the next transaction takes one again)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            _leave_pipeline(conn)
            if conn.info.pop(INDEXED_PLANS, False):
                _driver(conn).autocommit = False  # as the pool handed it out
                conn.exec_driver_sql("RESET enable_seqscan")
                conn.commit()
            if conn.info.pop(POLLED_WRITE_LOCK, False):
                _driver(conn).execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except Exception:  # noqa: BLE001 - a broken connection: the pool drops it instead
            conn.invalidate()
        conn.close()

    def _take(self) -> sa.Connection:
        conn = self._engine.connect()
        try:
            conn.execution_options(**{_WRITE: True})
            if self._postgres:
                conn.exec_driver_sql("SET enable_seqscan = off")
                conn.commit()
                conn.info[INDEXED_PLANS] = True
                # ``transaction`` sends its own BEGIN: psycopg's waits for its answer.
                _driver(conn).autocommit = self._pipelined
            else:
                # On the driver: a statement through ``conn`` would begin a transaction.
                _driver(conn).execute("PRAGMA busy_timeout = 0")
                conn.info[POLLED_WRITE_LOCK] = True
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn
