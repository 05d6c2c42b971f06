"""Reconciliation: the pure planners, then whole runs against fake Nova on a real SQLite file.

Unit-level runs talk to fake Nova in-process (``httpx.ASGITransport``) on a manual clock;
the fault tests that need wall time (429 ``Retry-After``, slow answers) use real clocks, and
the lease test runs two real ``nova-sink reconcile`` processes against fake Nova on uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stamina
from sqlalchemy.engine import Engine

from receiver.convergence import COMPARED_FIELDS, LEGACY_FIELDS, Comparison, compare
from receiver.fake_nova import FakeBatch, FakeNova, FakeNovaConfig, create_fake_nova
from receiver.nova import LegacyJobRef, NovaClient
from receiver.reconcile import LEASE_NAME, Reconciler, Summary, plan_legacy_fetches
from receiver.serving import bound_socket, port_of, serving
from receiver.submit import submit_batches
from storage.db import transaction
from storage.errors import LeaseHeld
from storage.records import BatchState, ScoringResult, Status, batch_settled
from tests.cli_helpers import NOVA_SINK, scrubbed_env
from tests.fake_nova_helpers import (
    API_KEY,
    TENANT,
    ManualClock,
    asgi_client,
    make_client,
    make_fake,
)


@pytest.fixture(name="clock")
def fixture_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="no_retry_waits")
def fixture_no_retry_waits() -> Iterator[None]:
    """stamina's test mode: retries happen at once, the client's attempt cap still applies."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


# ---- builders ---------------------------------------------------------------------------------


def corrupt(application_id: str) -> dict[str, Any]:
    """An application fake Nova rejects at intake (its resume "file" is corrupt)."""
    url = f"https://files.example.com/{application_id}-corrupt.pdf"
    return {"applicationId": application_id, "resume": {"type": "url", "url": url}}


def track(engine: Engine, batches: Sequence[FakeBatch], now: datetime) -> None:
    """Track fake Nova's batches locally, as ``nova-sink track`` would."""
    with transaction(engine) as store:
        for batch in batches:
            state = BatchState(batch.id, batch.job_id, batch.tenant_id, batch.api)
            store.track_batch(state, now=now)


def local_view(engine: Engine) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    """(stored results by scoring job id, rejected application ids by batch id)."""
    with transaction(engine, write=False) as store:
        return store.snapshot()


def compared(
    engine: Engine, fake: FakeNova, columns: Sequence[str] = COMPARED_FIELDS
) -> Comparison:
    results, rejected = local_view(engine)
    return compare(fake.truth(), results, rejected, columns=columns)


def dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in a stable order."""
    tables: dict[str, list[dict[str, Any]]] = {}
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        for name, table in sorted(metadata.tables.items()):
            query = sa.select(table).order_by(*table.primary_key.columns)
            tables[name] = [dict(row) for row in conn.execute(query).mappings()]
    return tables


async def reconcile(
    engine: Engine,
    fake: FakeNova,
    clock: ManualClock,
    *,
    client: Mapping[str, Any] | None = None,
    **options: Any,
) -> Summary:
    """One run through fake Nova in-process, on the manual clock."""
    async with asgi_client(fake.app) as http:
        nova = make_client(http, clock, **(client or {}))
        return await Reconciler(engine, nova, now=clock.now, **options).run()


def real_fake(**config: Any) -> FakeNova:
    """A fake Nova on wall-clock time (for rate limits and slow answers)."""
    return create_fake_nova(FakeNovaConfig(**config), background_delivery=False)


async def reconcile_real(engine: Engine, fake: FakeNova, **client: Any) -> Summary:
    """One run on wall-clock time: the client's rate limiter and retry waits really wait."""
    async with asgi_client(fake.app) as http:
        nova = NovaClient(http, api_key=API_KEY, tenant_id=TENANT, **client)
        return await Reconciler(engine, nova, now=lambda: datetime.now(UTC)).run()


def ref(scoring_job_id: str, status: Status) -> LegacyJobRef:
    return LegacyJobRef(scoring_job_id, f"app-{scoring_job_id}", status, status)


# ---- pure planning ----------------------------------------------------------------------------


def test_legacy_plan_fetches_only_jobs_finished_at_nova_and_not_held_in_that_state() -> None:
    """A legacy batch lists statuses only: details are fetched for news, nothing else."""
    refs = [
        ref("sj_pending_at_nova", "pending"),
        ref("sj_new", "completed"),
        ref("sj_held_pending", "failed"),
        ref("sj_held_same", "completed"),
        ref("sj_held_failed", "completed"),
    ]
    local = {
        "sj_pending_at_nova": "pending",
        "sj_held_pending": "pending",
        "sj_held_same": "completed",
        "sj_held_failed": "failed",
    }

    wanted = plan_legacy_fetches(refs, local)

    assert [r.scoring_job_id for r in wanted] == ["sj_new", "sj_held_pending", "sj_held_failed"]


def test_legacy_plan_fetches_nothing_for_a_batch_still_pending_at_nova() -> None:
    """Jobs Nova has not finished have no details to fetch yet, known locally or not."""
    assert plan_legacy_fetches([ref("sj_1", "pending"), ref("sj_2", "pending")], {}) == []


@pytest.mark.parametrize(
    ("status", "completed", "failed", "local_terminal", "settled"),
    [
        ("pending", 3, 0, 3, False),
        ("completed", 3, 1, 4, True),
        ("failed", 3, 1, 3, False),
        ("completed", 3, 0, 5, True),
        ("completed", None, None, 0, True),
    ],
)
def test_batch_is_settled_only_when_terminal_and_every_finished_job_is_held(
    status: Status, completed: int | None, failed: int | None, local_terminal: int, settled: bool
) -> None:
    """A batch needs no more reconciling once Nova finished it and we hold each result."""
    assert batch_settled(status, completed, failed, local_terminal) is settled


# ---- a v1 batch whose webhooks never arrived --------------------------------------------------


@pytest.mark.anyio
async def test_one_run_adds_every_result_and_rejection_and_a_second_run_fixes_nothing(
    engine: Engine, clock: ManualClock
) -> None:
    """No webhook ever arrived: one run fills the batch, the next finds nothing to do."""
    fake = make_fake(clock, failure_rate=0.3)
    apps: list[Any] = [f"app-{n}" for n in range(8)] + [corrupt("app-bad-1"), corrupt("app-bad-2")]
    batch = fake.state.create_batch("job-1", TENANT, apps)
    track(engine, [batch], clock.now())

    first = await reconcile(engine, fake, clock)

    assert (first.batches_checked, first.results_added, first.rejected_recorded) == (1, 8, 2)
    assert first.results_updated == 0
    assert first.converged, first.as_dict()
    assert compared(engine, fake).converged
    with transaction(engine, write=False) as store:
        stored = store.get_batch(batch.id)
        assert stored is not None
        assert stored["due"] is False
        assert stored["status"] != "pending"
        assert {r["code"] for r in store.rejected_for_batch(batch.id)} == {"RESUME_CORRUPTED"}

    clock.advance(60)
    second = await reconcile(engine, fake, clock)

    assert (second.results_added, second.results_updated, second.rejected_recorded) == (0, 0, 0)
    assert second.converged
    assert second.requests == 0  # a settled batch is not even fetched again


@pytest.mark.anyio
async def test_each_run_is_recorded_and_releases_the_lease(
    engine: Engine, clock: ManualClock
) -> None:
    """A finished run leaves a reconcile_run row with its counts and no lease behind."""
    fake = make_fake(clock)
    track(engine, [fake.state.create_batch("job-1", TENANT, ["a", "b", "c"])], clock.now())

    summary = await reconcile(engine, fake, clock)

    tables = dump(engine)
    assert tables["lease"] == []
    [run] = tables["reconcile_run"]
    assert run["id"] == summary.run_id
    assert run["finished_at"] is not None
    assert run["results_added"] == 3


# ---- precedence through reconcile -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_pending_api_view_does_not_downgrade_a_completed_result(
    engine: Engine, clock: ManualClock
) -> None:
    """Nova's API still says pending (a lagging view): the webhook's result stays."""
    fake = make_fake(clock, score_delay=3600, failure_rate=0.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a", "b"])
    track(engine, [batch], clock.now())
    known = batch.jobs[0]
    webhook = ScoringResult(
        scoring_job_id=known.id,
        status="completed",
        job_id="job-1",
        application_id="a",
        score=9,
        verdict="from the webhook",
        completed_at=clock.now(),
    )
    with transaction(engine) as store:
        store.apply_result(webhook, source="webhook", now=clock.now(), delivered=True)

    summary = await reconcile(engine, fake, clock)

    results, _ = local_view(engine)
    assert results[known.id]["status"] == "completed"
    assert (results[known.id]["score"], results[known.id]["verdict"]) == (9, "from the webhook")
    assert results[known.id]["source"] == "webhook"
    assert results[batch.jobs[1].id]["status"] == "pending"
    assert (summary.results_added, summary.results_updated) == (1, 0)
    assert not summary.converged  # the batch is still pending at Nova: a gap remains
    assert summary.gaps_remaining == 1


@pytest.mark.anyio
async def test_a_failed_api_view_does_not_erase_a_completed_result(
    engine: Engine, clock: ManualClock
) -> None:
    """Completed outranks failed: Nova's contradicting failure is not applied."""
    fake = make_fake(clock, failure_rate=1.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a"])
    track(engine, [batch], clock.now())
    job = batch.jobs[0]
    webhook = ScoringResult(
        scoring_job_id=job.id, status="completed", score=8, completed_at=clock.now()
    )
    with transaction(engine) as store:
        store.apply_result(webhook, source="webhook", now=clock.now(), delivered=True)

    summary = await reconcile(engine, fake, clock)

    results, _ = local_view(engine)
    assert (results[job.id]["status"], results[job.id]["score"]) == ("completed", 8)
    assert results[job.id]["error_code"] is None
    assert summary.results_updated == 0


@pytest.mark.anyio
async def test_pending_rows_recorded_by_submit_are_updated_with_nova_results(
    engine: Engine, clock: ManualClock
) -> None:
    """``submit`` leaves pending rows; reconcile turns every one into Nova's result."""
    fake = make_fake(clock)
    applications = [
        {"applicationId": f"app-{n}", "resume": {"type": "text", "content": "# CV"}}
        for n in range(30)
    ]
    async with asgi_client(fake.app) as http:
        created = await submit_batches(
            make_client(http, clock),
            engine,
            job_id="job-1",
            tenant_id=TENANT,
            fields={"jobDescription": "Backend engineer"},
            applications=[*applications, corrupt("app-bad")],
            now=clock.now,
        )
    assert len(created) == 2
    results, _ = local_view(engine)
    assert {r["status"] for r in results.values()} == {"pending"}

    summary = await reconcile(engine, fake, clock)

    assert (summary.results_added, summary.results_updated) == (0, 30)
    assert summary.rejected_recorded == 0  # submit recorded the rejection already
    assert summary.converged
    comparison = compared(engine, fake)
    assert comparison.converged, comparison.mismatches[:5]


# ---- legacy API and UPPERCASE statuses --------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status_case", ["lower", "upper"])
async def test_legacy_batches_converge_through_per_job_calls(
    engine: Engine, clock: ManualClock, status_case: str
) -> None:
    """A legacy batch: one status call, then one detail call per finished job."""
    fake = make_fake(clock, status_case=status_case, failure_rate=0.3)
    batches = fake.state.create_batches(3, 4, tenant_id=TENANT, api="legacy")
    track(engine, batches, clock.now())

    summary = await reconcile(engine, fake, clock)

    assert summary.converged, summary.as_dict()
    assert summary.results_added == 12
    assert summary.requests == 3 + 12
    comparison = compared(engine, fake, LEGACY_FIELDS)
    assert comparison.converged, comparison.mismatches[:5]
    second = await reconcile(engine, fake, clock)
    assert (second.results_added, second.results_updated, second.requests) == (0, 0, 0)


@pytest.mark.anyio
async def test_uppercase_status_generation_converges(engine: Engine, clock: ManualClock) -> None:
    """The middle docs generation (``COMPLETED``, ``PARTIAL_FAILURE``) is normalised."""
    fake = make_fake(clock, status_case="upper", failure_rate=0.3)
    batches = fake.state.create_batches(4, 5, tenant_id=TENANT)
    track(engine, batches, clock.now())

    summary = await reconcile(engine, fake, clock)

    assert summary.converged, summary.as_dict()
    comparison = compared(engine, fake)
    assert comparison.converged, comparison.mismatches[:5]
    results, _ = local_view(engine)
    assert {r["status"] for r in results.values()} == {"completed", "failed"}
    assert {r["nova_status"] for r in results.values()} == {"COMPLETED", "FAILED"}


# ---- dry run ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_dry_run_writes_nothing_but_reports_what_it_would_fix(
    engine: Engine, clock: ManualClock
) -> None:
    """--dry-run fetches and compares; every table is byte-for-byte what it was."""
    fake = make_fake(clock)
    batch = fake.state.create_batch("job-1", TENANT, ["a", "b", "c", corrupt("bad")])
    track(engine, [batch], clock.now())
    before = dump(engine)

    summary = await reconcile(engine, fake, clock, dry_run=True)

    assert dump(engine) == before
    assert summary.dry_run
    assert (summary.results_added, summary.rejected_recorded) == (3, 1)
    assert summary.gaps_remaining == 1
    assert not summary.converged
    assert summary.run_id is None

    real = await reconcile(engine, fake, clock)

    assert (real.results_added, real.rejected_recorded) == (3, 1)


# ---- API faults -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("no_retry_waits")
async def test_server_errors_are_retried_and_counted_and_the_run_converges(
    engine: Engine, clock: ManualClock
) -> None:
    """10 % of answers are 500/503: retries absorb them; the summary counts the requests."""
    fake = make_fake(clock, api_error_rate=0.1, seed=3)
    track(engine, fake.state.create_batches(40, 3, tenant_id=TENANT), clock.now())

    async with asgi_client(fake.app) as http:
        nova = make_client(http, clock)
        summary = await Reconciler(engine, nova, now=clock.now).run()
        retries = sum(nova.stats.retries.values())

    assert fake.faults.stats.server_errors > 0
    assert retries == fake.faults.stats.server_errors
    assert summary.requests == 40 + retries
    assert summary.converged, summary.as_dict()
    assert compared(engine, fake).converged


# slow: the rate limiter really waits: seconds of wall time, kept out of the inner loop.
@pytest.mark.slow
@pytest.mark.anyio
async def test_rate_limited_bursts_are_waited_out_and_the_run_converges(engine: Engine) -> None:
    """Nova allows fewer requests than the client sends: 429s honour Retry-After.

    The client sends its 8 requests 1 ms apart into Nova's 3 per one-second window: some
    are refused unless sending them takes over a second. (At 50/s against 4/s, a slow run
    spread them over two windows, 4 and 4, and none was refused.)"""
    fake = real_fake(rate_limit=3)
    now = datetime.now(UTC)
    track(engine, fake.state.create_batches(8, 2, tenant_id=TENANT), now)

    summary = await reconcile_real(engine, fake, rate_limit=1000)

    assert fake.faults.stats.rate_limited > 0
    assert summary.requests == 8 + fake.faults.stats.rate_limited
    assert summary.converged, summary.as_dict()
    assert compared(engine, fake).converged


@pytest.mark.anyio
async def test_slow_answers_still_converge(engine: Engine) -> None:
    """Every answer takes 50 ms: the run waits for them, bounded by its concurrency."""
    fake = real_fake(slow=0.05)
    track(engine, fake.state.create_batches(16, 2, tenant_id=TENANT), datetime.now(UTC))

    summary = await reconcile_real(engine, fake, rate_limit=0)

    assert summary.converged, summary.as_dict()
    assert summary.duration_s >= 2 * 0.05  # 16 batches, 8 in flight at a time
    assert compared(engine, fake).converged


@pytest.mark.anyio
@pytest.mark.usefixtures("no_retry_waits")
async def test_malformed_answers_are_reported_never_stored_and_closed_by_later_runs(
    engine: Engine, clock: ManualClock
) -> None:
    """A garbled 2xx is an error for its batch; nothing of it lands; a later run fixes it."""
    fake = make_fake(clock, malformed_rate=0.1, seed=5)
    track(engine, fake.state.create_batches(30, 3, tenant_id=TENANT), clock.now())

    first = await reconcile(engine, fake, clock)

    malformed = fake.faults.stats.malformed
    assert malformed > 0
    assert first.errors == {"malformed_response": malformed}
    assert first.gaps_remaining == malformed
    assert not first.converged
    comparison = compared(engine, fake)
    wrong = [m for m in comparison.mismatches if m.column != "*"]
    assert wrong == []  # absent results only: no field holds anything but Nova's truth
    assert len({m.batch_id for m in comparison.mismatches}) == malformed

    summaries = []
    for _ in range(5):
        clock.advance(60)
        summaries.append(await reconcile(engine, fake, clock))
        if summaries[-1].converged:
            break

    assert summaries[-1].converged, [s.as_dict() for s in summaries]
    assert compared(engine, fake).converged


# ---- 401 / 404 per batch ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_wrong_api_key_is_reported_per_batch_without_aborting(
    engine: Engine, clock: ManualClock
) -> None:
    """401 for every batch: each is an error of kind http_401; nothing stored; exit says gaps."""
    fake = make_fake(clock, api_key="sk_test_the_right_key")
    track(engine, fake.state.create_batches(3, 2, tenant_id=TENANT), clock.now())

    summary = await reconcile(engine, fake, clock, client={"api_key": "sk_test_a_wrong_key"})

    assert summary.errors == {"http_401": 3}
    assert summary.batches_checked == 3
    assert summary.results_added == 0
    assert summary.gaps_remaining == 3
    assert not summary.converged
    assert "sk_test_a_wrong_key" not in repr(summary.as_dict())
    assert local_view(engine)[0] == {}


@pytest.mark.anyio
async def test_a_batch_unknown_at_nova_is_reported_and_the_others_converge(
    engine: Engine, clock: ManualClock
) -> None:
    """404 for one tracked batch: an error of kind http_404; every other batch converges."""
    fake = make_fake(clock)
    batches = fake.state.create_batches(3, 3, tenant_id=TENANT)
    track(engine, batches, clock.now())
    with transaction(engine) as store:
        store.track_batch(BatchState("cnotatnova", "job-x", TENANT, "v1"), now=clock.now())

    summary = await reconcile(engine, fake, clock)

    assert summary.errors == {"http_404": 1}
    assert summary.results_added == 9
    assert summary.gaps_remaining == 1
    assert not summary.converged
    assert compared(engine, fake).converged  # every batch Nova knows is complete
    with transaction(engine, write=False) as store:
        unknown = store.get_batch("cnotatnova")
        assert unknown is not None
        assert unknown["due"] is True


@pytest.mark.anyio
async def test_a_per_batch_error_names_the_batch_it_belongs_to(
    engine: Engine, clock: ManualClock
) -> None:
    """The operator can tell which batch failed from the summary's error details."""
    fake = make_fake(clock)
    track(engine, fake.state.create_batches(2, 2, tenant_id=TENANT), clock.now())
    with transaction(engine) as store:
        store.track_batch(BatchState("cnotatnova", "job-x", TENANT, "v1"), now=clock.now())

    summary = await reconcile(engine, fake, clock)

    [detail] = summary.as_dict()["error_details"]
    assert detail["kind"] == "http_404"
    assert "cnotatnova" in repr(detail)


# ---- scoring jobs without a tracked batch -----------------------------------------------------


@pytest.mark.anyio
async def test_stale_pending_jobs_without_a_tracked_batch_are_fetched_one_by_one(
    engine: Engine, clock: ManualClock
) -> None:
    """Past the grace period, a pending job no tracked batch covers gets its own call."""
    fake = make_fake(clock, failure_rate=0.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a", "b", "c"])  # never tracked locally
    with_app, without_app, recent = batch.jobs
    start = clock.now()
    with transaction(engine) as store:
        store.apply_result(  # knows its application: the v1 scoring-job endpoint
            ScoringResult(
                with_app.id, "pending", job_id="job-1", application_id="a", tenant_id=TENANT
            ),
            source="submit",
            now=start,
        )
        store.track_pending_jobs(  # no application id: the legacy per-job endpoint
            scoring_job_ids=[without_app.id],
            batch_id=None,
            job_id="job-1",
            tenant_id=TENANT,
            now=start,
        )
    clock.advance(6 * 60)
    with transaction(engine) as store:
        store.track_pending_jobs(
            scoring_job_ids=[recent.id],
            batch_id=None,
            job_id="job-1",
            tenant_id=TENANT,
            now=clock.now(),
        )

    summary = await reconcile(engine, fake, clock)

    assert (summary.batches_checked, summary.jobs_checked, summary.requests) == (0, 2, 2)
    assert summary.results_updated == 2
    assert summary.converged, summary.as_dict()
    results, _ = local_view(engine)
    assert results[with_app.id]["status"] == "completed"
    assert results[with_app.id]["score"] == with_app.score
    assert results[without_app.id]["status"] == "completed"
    assert results[without_app.id]["score"] == without_app.score
    assert results[recent.id]["status"] == "pending"  # still inside the grace period


# ---- the lease --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_reconcilers_at_once_one_runs_and_the_other_gets_lease_held(
    engine: Engine,
) -> None:
    """Overlapping runs on one database: exactly one proceeds."""
    fake = real_fake(slow=0.1)
    track(engine, fake.state.create_batches(4, 2, tenant_id=TENANT), datetime.now(UTC))

    outcomes = await asyncio.gather(
        reconcile_real(engine, fake, rate_limit=0),
        reconcile_real(engine, fake, rate_limit=0),
        return_exceptions=True,
    )

    held = [o for o in outcomes if isinstance(o, LeaseHeld)]
    ran = [o for o in outcomes if isinstance(o, Summary)]
    assert (len(held), len(ran)) == (1, 1), outcomes
    assert held[0].name == LEASE_NAME
    assert ran[0].converged
    assert compared(engine, fake).converged


@pytest.mark.anyio
async def test_a_live_lease_of_another_process_stops_the_run(
    engine: Engine, clock: ManualClock
) -> None:
    """A lease held and not expired: LeaseHeld, nothing fetched, the lease untouched."""
    fake = make_fake(clock)
    track(engine, [fake.state.create_batch("job-1", TENANT, ["a"])], clock.now())
    with transaction(engine) as store:
        store.acquire_lease(
            LEASE_NAME, holder="cron-host:4242", now=clock.now(), ttl=timedelta(minutes=10)
        )

    with pytest.raises(LeaseHeld) as raised:
        await reconcile(engine, fake, clock)

    assert raised.value.holder == "cron-host:4242"
    tables = dump(engine)
    assert [row["holder"] for row in tables["lease"]] == ["cron-host:4242"]
    assert tables["scoring_job"] == []


@pytest.mark.anyio
async def test_an_expired_lease_is_taken_over(engine: Engine, clock: ManualClock) -> None:
    """A crashed run's lease expires: the next run takes it, finishes, and releases it."""
    fake = make_fake(clock)
    track(engine, [fake.state.create_batch("job-1", TENANT, ["a", "b"])], clock.now())
    with transaction(engine) as store:
        store.acquire_lease(
            LEASE_NAME, holder="crashed:1", now=clock.now(), ttl=timedelta(minutes=10)
        )
    clock.advance(11 * 60)

    summary = await reconcile(engine, fake, clock)

    assert summary.converged
    assert summary.results_added == 2
    assert dump(engine)["lease"] == []


def cli_env(database_url: str, api_url: str) -> dict[str, str]:
    return scrubbed_env(
        DATABASE_URL=database_url, NOVA_API_KEY="sk_test_x", NOVA_API_URL=api_url, LOG_FORMAT="json"
    )


@pytest.mark.anyio
@pytest.mark.slow
async def test_two_reconcile_processes_started_together_one_exits_75_saying_another_runs(
    engine: Engine, tmp_path: Path
) -> None:
    """Overlapping cron runs: one converges (0), the other exits 75 (EX_TEMPFAIL) in one line."""
    fake = real_fake(slow=0.2)
    batches = fake.state.create_batches(8, 3, tenant_id=TENANT)
    track(engine, batches, datetime.now(UTC))
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    env = cli_env(engine.url.render_as_string(hide_password=False), f"http://127.0.0.1:{port}")
    args = [str(NOVA_SINK), "reconcile", "--concurrency", "1"]

    async def run() -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async with serving(fake.app, sock):
        outcomes = sorted(await asyncio.gather(run(), run()))

    (ok_code, ok_out, _), (held_code, held_out, held_err) = outcomes
    assert (ok_code, held_code) == (0, 75), outcomes
    assert "CONVERGED" in ok_out
    assert held_out == ""
    [line] = held_err.strip().splitlines()
    assert "another reconcile is running" in line
    assert "Traceback" not in held_err
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT scoring_job_id FROM scoring_job")).scalars().all()
    assert len(ids) == len(set(ids)) == 24
    assert compared(engine, fake).converged


# ---- erasure tombstones, batches Nova does not know, test data ----------------------------------


@pytest.mark.anyio
async def test_an_erased_application_is_never_imported_again(
    engine: Engine, clock: ManualClock
) -> None:
    """After erase, a reconcile that sees the candidate at Nova skips it (result and rejection)."""
    fake = make_fake(clock, failure_rate=0.0)
    batch = fake.state.create_batch("job-1", TENANT, ["app-keep", "app-gone", corrupt("app-bad")])
    track(engine, [batch], clock.now())
    await reconcile(engine, fake, clock)
    with transaction(engine) as store:
        store.erase_application("app-gone", now=clock.now())
        store.erase_application("app-bad", now=clock.now())
        store.update_batch(BatchState(batch.id, "job-1", TENANT), now=clock.now(), due=True)

    clock.advance(60)
    again = await reconcile(engine, fake, clock)

    assert (again.results_added, again.rejected_recorded) == (0, 0)
    assert again.erased_skipped == 2
    results, rejected = local_view(engine)
    assert {r["application_id"] for r in results.values()} == {"app-keep"}
    assert rejected == {}


@pytest.mark.anyio
async def test_a_batch_nova_keeps_answering_404_for_becomes_unreachable_and_stops_failing(
    engine: Engine, clock: ManualClock
) -> None:
    """404 on three runs in a row: reported once as unreachable, then no longer a gap."""
    fake = make_fake(clock)
    with transaction(engine) as store:
        store.track_batch(BatchState("cnotatnova", "job-x", TENANT, "v1"), now=clock.now())

    runs = []
    for _ in range(4):
        runs.append(await reconcile(engine, fake, clock))
        clock.advance(600)

    assert [r.errors.get("http_404", 0) for r in runs] == [1, 1, 0, 0]
    assert [r.batches_unreachable for r in runs] == [[], [], ["cnotatnova"], []]
    assert [r.converged for r in runs] == [False, False, True, True]
    assert runs[3].requests == 0
    with transaction(engine, write=False) as store:
        stored = store.get_batch("cnotatnova")
    assert stored is not None
    assert (stored["status"], stored["due"]) == ("unreachable", False)


@pytest.mark.anyio
async def test_an_answer_from_nova_resets_the_404_count(engine: Engine, clock: ManualClock) -> None:
    """A 404 just after creation (eventual consistency) followed by an answer is forgotten."""
    fake = make_fake(clock)
    (batch,) = fake.state.create_batches(1, 2, tenant_id=TENANT)
    with transaction(engine) as store:
        store.track_batch(BatchState(batch.id, batch.job_id, TENANT, "v1"), now=clock.now())
        store.record_not_found(batch.id, now=clock.now())
        store.record_not_found(batch.id, now=clock.now())

    summary = await reconcile(engine, fake, clock)

    assert summary.converged
    with transaction(engine, write=False) as store:
        stored = store.get_batch(batch.id)
    assert stored is not None
    assert stored["not_found_count"] == 0


@pytest.mark.anyio
async def test_batches_of_the_test_tenant_are_never_fetched(
    engine: Engine, clock: ManualClock
) -> None:
    """A batch.completed signed by ``send-test-webhook`` is recorded, never reconciled."""
    from storage.store.batches import TEST_TENANT

    fake = make_fake(clock)
    with transaction(engine) as store:
        state = BatchState("batch_test_1", "job-test", TEST_TENANT, "v1", status="completed")
        store.update_batch(state, now=clock.now(), due=True)

    summary = await reconcile(engine, fake, clock)

    assert (summary.batches_checked, summary.requests, summary.converged) == (0, 0, True)


@pytest.mark.anyio
async def test_a_lease_lost_mid_run_raises_lease_held_not_an_exception_group(
    engine: Engine, clock: ManualClock
) -> None:
    """Another process takes the lease between two batches: the run stops with LeaseHeld."""
    fake = make_fake(clock)
    track(engine, fake.state.create_batches(3, 1, tenant_id=TENANT), clock.now())

    def steal(done: int, _total: int) -> None:
        if done == 1:
            with transaction(engine) as store:
                store.conn.execute(sa.text("UPDATE lease SET holder = 'thief:1'"))

    async with asgi_client(fake.app) as http:
        reconciler = Reconciler(
            engine, make_client(http, clock), now=clock.now, concurrency=1, on_progress=steal
        )
        with pytest.raises(LeaseHeld) as raised:
            await reconciler.run()

    assert raised.value.holder == "thief:1"
