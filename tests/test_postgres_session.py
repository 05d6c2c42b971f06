"""PostgreSQL answers "try again later" instead of stalling, and reads times in UTC.

Every pooled connection gets a lock timeout, a statement timeout and ``TimeZone=UTC``; a
lock held by another session turns into a 503 while that session still holds it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.ingest import Accepted, Committed, Received, accept, ingest_group
from receiver.writer import ThreadLane, Writer
from storage import schema
from storage.db import WriteLane, make_engine, transaction
from storage.errors import StoreUnavailable
from storage.store import ResultChange, Store
from tests.factories import NOW, completed, inbound, received, score_completed, signed

pytestmark = pytest.mark.postgres

URL = "/webhooks/nova"
LATER = "2026-01-15T11:59:00Z"


def same_database(engine: Engine, **kwargs: Any) -> Engine:
    """A second engine on ``engine``'s database and schema, with other timeouts."""
    return make_engine(engine.url.render_as_string(hide_password=False), **kwargs)


@pytest.fixture(name="short_lock_engine")
def fixture_short_lock_engine(postgres_engine: Engine) -> Iterator[Engine]:
    """The test's schema, with a lock timeout short enough for a test."""
    engine = same_database(postgres_engine, lock_timeout_ms=300)
    yield engine
    engine.dispose()


def lock_row(conn: sa.Connection, scoring_job_id: str) -> None:
    query = "SELECT 1 FROM scoring_job WHERE scoring_job_id = :id FOR UPDATE"
    conn.execute(sa.text(query), {"id": scoring_job_id})


def test_timeouts_and_utc_hold_on_every_pooled_connection(postgres_engine: Engine) -> None:
    """Three connections open at once each report the lock/statement timeouts and UTC."""
    with ExitStack() as stack:
        conns = [stack.enter_context(postgres_engine.connect()) for _ in range(3)]
        settings = [
            tuple(
                conn.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("lock_timeout", "statement_timeout", "TimeZone")
            )
            for conn in conns
        ]
    assert settings == [("5s", "10s", "UTC")] * 3


def test_writer_lookups_keep_their_index_whatever_the_table_was_when_planned(
    postgres_engine: Engine,
) -> None:
    """The writer's look-ups whose best plan depends on the table's size (the inbox by
    webhook id, the results a change copies) are prepared once, and the plan PostgreSQL
    keeps for them uses the index even though it was made while the tables were nearly
    empty: such a plan scanned the whole inbox per commit group once it had grown."""
    lane = WriteLane(postgres_engine)
    try:
        for group in range(20):
            deliveries = [(inbound(f"m_{group}_{n}"), "applied") for n in range(32)]
            results = [completed(f"sj_{group}_{n}") for n in range(32)]
            with lane.transaction() as store:
                store.insert_new_results(results, source="webhook", now=NOW, delivered=True)
                store.record_deliveries(deliveries, now=NOW)
                store.log_changes(
                    [ResultChange(r.scoring_job_id, "created") for r in results], now=NOW
                )
        with lane.transaction() as store:
            conn = store.conn
            prepared = conn.exec_driver_sql(
                "SELECT name, statement, cardinality(parameter_types) FROM pg_prepared_statements"
            ).all()
            lookups = [
                (name, count)
                for name, text, count in prepared
                if "webhook_id = ANY" in text or "JOIN scoring_job" in text
            ]
            # The plan the writer runs once PostgreSQL settles on a generic one.
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            plans = [
                "\n".join(
                    conn.exec_driver_sql(
                        f"EXPLAIN EXECUTE {name}({', '.join(['NULL'] * count)})"
                    ).scalars()
                )
                for name, count in lookups
            ]
    finally:
        lane.release()
    assert len(lookups) == 2, prepared  # prepared: not planned again for every group
    assert not [plan for plan in plans if "Seq Scan" in plan], plans


def test_a_connection_the_writer_gives_back_plans_as_usual(postgres_engine: Engine) -> None:
    """Sequential scans are off only while the writer's lane holds the connection: a
    reader that gets it from the pool next (the read API, the CLI) plans as usual."""
    lane = WriteLane(postgres_engine)
    with lane.transaction() as store:
        held = store.conn.exec_driver_sql("SHOW enable_seqscan").scalar()
        raw = store.conn.connection.driver_connection
    lane.release()
    with postgres_engine.connect() as conn:
        assert conn.connection.driver_connection is raw  # the same pooled connection
        after = conn.exec_driver_sql("SHOW enable_seqscan").scalar()
    assert (held, after) == ("off", "on")


def test_statement_past_the_statement_timeout_is_unavailable(postgres_engine: Engine) -> None:
    """A statement cancelled by statement_timeout (57014) is StoreUnavailable, not a crash."""
    engine = same_database(postgres_engine, statement_timeout_ms=100)
    try:
        with pytest.raises(StoreUnavailable), transaction(engine) as store:
            store.conn.exec_driver_sql("SELECT pg_sleep(5)")
    finally:
        engine.dispose()


def test_row_locked_elsewhere_is_unavailable_after_the_lock_timeout(
    short_lock_engine: Engine,
) -> None:
    """A result row locked by another session (55P03) is StoreUnavailable while still locked."""
    with transaction(short_lock_engine) as store:
        store.apply_result(completed("sj_1"), source="webhook", now=NOW)
    with short_lock_engine.connect() as other:
        lock_row(other, "sj_1")
        with pytest.raises(StoreUnavailable), transaction(short_lock_engine) as store:
            store.apply_result(completed("sj_1"), source="webhook", now=NOW)
        assert other.in_transaction()  # the lock was never released meanwhile


def test_webhook_answers_503_while_another_session_holds_the_row_lock(
    short_lock_engine: Engine, make_app: Callable[..., Starlette]
) -> None:
    """A row lock held in another session: 503 + Retry-After before it is released; then 200."""
    with transaction(short_lock_engine) as store:
        store.apply_result(completed("sj_1"), source="webhook", now=NOW)
    body = score_completed("sj_1", completed_at=LATER)
    headers = signed(body, webhook_id="msg_locked")
    with TestClient(make_app(engine=short_lock_engine)) as client:
        with short_lock_engine.connect() as other:
            lock_row(other, "sj_1")
            response = client.post(URL, content=body, headers=headers)
            still_locked = other.in_transaction()
        assert still_locked
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        again = client.post(URL, content=body, headers=headers)
    assert (again.status_code, again.json()) == (200, {"status": "applied"})


def delivery(scoring_job_id: str, key: str) -> Received:
    return received(key, score_completed(scoring_job_id, completed_at=LATER))


def accepted(scoring_job_id: str, key: str) -> Accepted:
    item, _ = accept(delivery(scoring_job_id, key))
    return item


def run_behind_a_locked_row(engine: Engine, writer: Writer) -> list[Any]:
    """Submit a delivery for a locked row, then an unrelated one; answers while still locked."""
    with transaction(engine) as store:
        store.apply_result(completed("sj_block"), source="webhook", now=NOW)

    async def both() -> list[Any]:
        await writer.start()
        try:
            with engine.connect() as other:
                lock_row(other, "sj_block")
                stuck = asyncio.ensure_future(writer.submit(delivery("sj_block", "m_block")))
                await asyncio.sleep(0.1)  # the writer is now waiting on the lock
                behind = asyncio.ensure_future(writer.submit(delivery("sj_free", "m_free")))
                # A hang guard only: without a lock timeout nothing is answered until rollback.
                answers = await asyncio.wait_for(
                    asyncio.gather(stuck, behind, return_exceptions=True), 60
                )
                assert other.in_transaction()
                return [a.status if isinstance(a, Committed) else a for a in answers]
        finally:
            await writer.stop()

    return asyncio.run(both())


def test_delivery_behind_a_stuck_group_is_committed_before_the_lock_is_released(
    short_lock_engine: Engine,
) -> None:
    """The stuck group gets StoreUnavailable at the lock timeout; the next one proceeds."""
    writer = Writer(ThreadLane(short_lock_engine), now=lambda: NOW)
    stuck, behind = run_behind_a_locked_row(short_lock_engine, writer)
    assert isinstance(stuck, StoreUnavailable)
    assert behind == "applied"


def test_delivery_queued_past_the_wait_bound_is_503_without_touching_the_database(
    short_lock_engine: Engine,
) -> None:
    """Queued longer than ``max_wait`` behind a stuck group: StoreUnavailable, nothing stored."""
    writer = Writer(ThreadLane(short_lock_engine, max_wait=0.05), now=lambda: NOW)
    stuck, behind = run_behind_a_locked_row(short_lock_engine, writer)
    assert isinstance(stuck, StoreUnavailable)
    assert isinstance(behind, StoreUnavailable)
    with transaction(short_lock_engine, write=False) as store:
        assert store.get_result("sj_free") is None


def requests_for_answers(trace: str) -> int:
    """How often the client asked the server to answer everything sent so far (libpq's
    trace of the protocol: a Sync or Flush in pipeline mode, a simple Query outside)."""
    kinds = [line.split("\t")[2] for line in trace.splitlines() if line.startswith("F\t")]
    return sum(kind in {"Sync", "Flush", "Query"} for kind in kinds)


def test_a_commit_group_of_new_results_waits_for_the_server_twice(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    """On the writer's lane: once for the insert and the look-up, once for the inbox, the
    change feed and the COMMIT; each statement waiting for its answer made it six."""
    lane = WriteLane(postgres_engine)
    group = [accepted(f"sj_{n}", f"m_{n}") for n in range(4)]
    trace = tmp_path / "protocol.trace"
    try:
        with lane.transaction() as store:  # the lane takes its connection
            ingest_group(store, [accepted("sj_first", "m_first")], now=NOW)
        with trace.open("w") as out:
            with lane.transaction() as store:
                driver = store.conn.connection.driver_connection
                assert driver is not None
                pgconn = driver.pgconn
                pgconn.trace(out.fileno())
                pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                statuses = ingest_group(store, group, now=NOW)
            pgconn.untrace()
    finally:
        lane.release()

    assert statuses == ["applied"] * 4
    assert requests_for_answers(trace.read_text()) == 2
    with transaction(postgres_engine, write=False) as store:
        assert store.change_head() == 5


def test_without_pipeline_mode_the_lane_commits_a_group_waiting_for_each_statement(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    """Where libpq has no pipeline mode (before 14), the lane commits as it did before it:
    psycopg opens the transaction and every statement waits for its answer."""
    lane = WriteLane(postgres_engine, pipelined=False)
    trace = tmp_path / "protocol.trace"
    try:
        with trace.open("w") as out:
            with lane.transaction() as store:
                driver = store.conn.connection.driver_connection
                assert driver is not None
                assert not driver.autocommit
                pgconn = driver.pgconn
                pgconn.trace(out.fileno())
                pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                statuses = ingest_group(store, [accepted("sj_a", "m_a")], now=NOW)
            pgconn.untrace()
    finally:
        lane.release()

    assert statuses == ["applied"]
    assert requests_for_answers(trace.read_text()) > 2
    with transaction(postgres_engine, write=False) as store:
        assert store.get_result("sj_a") is not None


def test_a_pipelined_insert_meeting_another_sessions_row_is_unavailable_while_it_holds_it(
    short_lock_engine: Engine,
) -> None:
    """The group's insert waits on another session's uncommitted row of the same scoring
    job; its lock timeout surfaces where the lane reads the insert's answer, as "try again
    later", before that session ends. The lane then commits the group."""
    lane = WriteLane(short_lock_engine)
    try:
        with short_lock_engine.connect() as other:
            Store(other).apply_result(completed("sj_race"), source="submit", now=NOW)
            with pytest.raises(StoreUnavailable), lane.transaction() as store:
                store.open_group([completed("sj_race")], ["m_race"], now=NOW)
            assert other.in_transaction()
        with lane.transaction() as store:
            _, created = store.open_group([completed("sj_race")], ["m_race"], now=NOW)
    finally:
        lane.release()
    assert created == {"sj_race"}


def test_a_lane_whose_connection_the_server_dropped_is_unavailable_once_then_commits(
    postgres_engine: Engine,
) -> None:
    """The server ends the lane's session (a restart, a failover): the group in hand is
    "try again later", and the next group commits on a new connection."""
    lane = WriteLane(postgres_engine)
    try:
        with lane.transaction() as store:
            ingest_group(store, [accepted("sj_first", "m_first")], now=NOW)
            backend = store.conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        with postgres_engine.connect() as admin:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(StoreUnavailable), lane.transaction() as store:
            ingest_group(store, [accepted("sj_lost", "m_lost")], now=NOW)
        with lane.transaction() as store:
            statuses = ingest_group(store, [accepted("sj_lost", "m_lost")], now=NOW)
    finally:
        lane.release()
    assert statuses == ["applied"]


@pytest.fixture(name="kiritimati_url")
def fixture_kiritimati_url(postgres_url: str) -> Iterator[str]:
    """A scratch database whose default time zone is UTC+14, dropped afterwards."""
    name = f"tz_{uuid.uuid4().hex[:12]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        admin.execute(f"ALTER DATABASE {name} SET timezone TO 'Pacific/Kiritimati'")
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_non_utc_database_stores_and_reads_back_utc(
    kiritimati_url: str, make_app: Callable[..., Starlette]
) -> None:
    """On a database whose time zone is UTC+14, a delivery's completedAt reads back exactly."""
    with psycopg.connect(kiritimati_url.replace("+psycopg", "")) as plain:
        assert plain.execute("SHOW TimeZone").fetchone() == ("Pacific/Kiritimati",)
    engine = make_engine(kiritimati_url)
    try:
        schema.upgrade(engine)
        body = score_completed("sj_tz", completed_at="2000-01-01T00:00:00Z")
        with TestClient(make_app(engine=engine)) as client:
            response = client.post(URL, content=body, headers=signed(body, webhook_id="m_tz"))
        assert response.json() == {"status": "applied"}
        with transaction(engine, write=False) as store:
            row = store.get_result("sj_tz")
            text = store.conn.execute(
                sa.text("SELECT completed_at::text FROM scoring_job WHERE scoring_job_id = 'sj_tz'")
            ).scalar_one()
        assert row is not None
        assert row["completed_at"] == datetime(2000, 1, 1, tzinfo=UTC)
        assert text == "2000-01-01 00:00:00+00"
    finally:
        engine.dispose()
