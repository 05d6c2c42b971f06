"""fake Nova: intake validation, deterministic scoring, API faults and signed webhook delivery."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from receiver.fake_nova import FakeNovaConfig, create_fake_nova
from receiver.signatures import Verified, verify
from tests.fake_nova_helpers import (
    API_KEY,
    RECEIVER_URL,
    SECRET,
    TENANT,
    ManualClock,
    Received,
    Recorder,
    asgi_client,
    batch_body,
    make_fake,
)

pytestmark = pytest.mark.anyio

HEADERS = {"Authorization": f"Bearer {API_KEY}", "X-Tenant-Id": TENANT}
TOLERANCE = timedelta(minutes=5)


async def post_batch(
    fake: Any, body: Any, *, job_id: str = "job-1", headers: dict[str, str] | None = None
) -> httpx.Response:
    async with asgi_client(fake.app) as http:
        return await http.post(
            f"/v1/jobs/{job_id}/scoring-batches",
            json=body,
            headers=HEADERS if headers is None else headers,
        )


async def get(fake: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with asgi_client(fake.app) as http:
        return await http.get(path, headers=HEADERS if headers is None else headers)


def assert_nova_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "message", "retryable", "traceId"} <= body.keys()
    return body


# ---- intake -------------------------------------------------------------------------------


async def test_accepts_a_valid_batch_with_202() -> None:
    """A valid submission answers 202 with the batch, its scoring job ids and no rejections."""
    fake = make_fake()
    response = await post_batch(fake, batch_body(3))
    assert response.status_code == 202
    body = response.json()
    assert body["batch"]["totalJobs"] == 3
    assert len(body["scoringJobIds"]) == 3
    assert body["rejectedApplications"] == []
    assert response.headers["x-trace-id"]


@pytest.mark.parametrize("count", [0, 26])
async def test_rejects_batches_outside_one_to_twenty_five(count: int) -> None:
    """Fewer than 1 or more than 25 applications is a 400 VALIDATION_ERROR."""
    response = await post_batch(make_fake(), batch_body(count))
    body = assert_nova_error(response, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "applications"


async def test_accepts_twenty_five_applications() -> None:
    """25 is the documented maximum, and allowed."""
    assert (await post_batch(make_fake(), batch_body(25))).status_code == 202


@pytest.mark.parametrize("description", [None, "", "x" * 50_001])
async def test_rejects_missing_or_oversized_job_description(description: str | None) -> None:
    """jobDescription is required, 1 to 50,000 characters."""
    body = batch_body(1)
    body["jobDescription"] = description
    assert_nova_error(await post_batch(make_fake(), body), 400, "VALIDATION_ERROR")


async def test_accepts_a_job_description_of_exactly_fifty_thousand() -> None:
    """The upper bound itself is valid."""
    response = await post_batch(make_fake(), batch_body(1, description="x" * 50_000))
    assert response.status_code == 202


async def test_rejects_duplicate_application_ids_and_bad_json() -> None:
    """Structural problems are 400s, not rejections."""
    body = batch_body(2)
    body["applications"][1]["applicationId"] = "app-000"
    assert_nova_error(await post_batch(make_fake(), body), 400, "VALIDATION_ERROR")
    async with asgi_client(make_fake().app) as http:
        response = await http.post("/v1/jobs/j/scoring-batches", content=b"{", headers=HEADERS)
    assert_nova_error(response, 400, "VALIDATION_ERROR")


async def test_resubmitting_the_same_applications_returns_the_existing_batch() -> None:
    """Same jobId and set of applicationIds (any order) is the same batch, no new jobs."""
    fake = make_fake()
    first = (await post_batch(fake, batch_body(3))).json()
    reordered = batch_body(3)
    reordered["applications"].reverse()
    second = (await post_batch(fake, reordered)).json()
    other_job = (await post_batch(fake, batch_body(3), job_id="job-2")).json()
    assert second["batch"]["id"] == first["batch"]["id"]
    assert second["scoringJobIds"] == first["scoringJobIds"]
    assert other_job["batch"]["id"] != first["batch"]["id"]
    assert len(fake.state.jobs) == 6


async def test_invalid_resumes_are_rejected_in_application_id_order() -> None:
    """Bad resumes become rejectedApplications (sorted), the rest are scored."""
    body = batch_body(1)
    body["applications"] += [
        {"applicationId": "z-empty", "resume": {"type": "text", "content": "  "}},
        {"applicationId": "m-corrupt", "resume": {"type": "url", "url": "https://x/corrupt.pdf"}},
        {"applicationId": "a-odd", "resume": {"type": "docx", "data": "..."}},
    ]
    fake = make_fake()
    response = await post_batch(fake, body)
    assert response.status_code == 202
    rejected = response.json()["rejectedApplications"]
    assert [(r["applicationId"], r["error"]["code"]) for r in rejected] == [
        ("a-odd", "RESUME_PARSE_FAILED"),
        ("m-corrupt", "RESUME_CORRUPTED"),
        ("z-empty", "RESUME_EMPTY"),
    ]
    assert response.json()["batch"]["totalJobs"] == 1
    batch_id = response.json()["batch"]["id"]
    served = (await get(fake, f"/v1/jobs/job-1/scoring-batches/{batch_id}")).json()
    assert served["rejectedApplications"] == rejected


async def test_all_rejected_is_422_and_creates_no_batch() -> None:
    """When every application is rejected: 422 VALIDATION_ERROR with details, no batch."""
    body = batch_body(1)
    body["applications"][0]["resume"] = {"type": "url", "url": "https://x/corrupt.pdf"}
    fake = make_fake()
    error = assert_nova_error(await post_batch(fake, body), 422, "VALIDATION_ERROR")
    assert error["details"][0]["code"] == "RESUME_CORRUPTED"
    assert fake.state.batches == {}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer pk_test_abc", "Basic sk_test_abc", "Bearer sk_test_"],
)
async def test_bad_authorization_is_401(authorization: str | None) -> None:
    """Missing or malformed keys are 401 UNAUTHORIZED."""
    headers = {"X-Tenant-Id": TENANT}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await post_batch(make_fake(), batch_body(1), headers=headers)
    assert_nova_error(response, 401, "UNAUTHORIZED")


async def test_configured_api_key_must_match_exactly() -> None:
    """With config.api_key set, another well-formed key is still 401."""
    fake = make_fake(api_key="sk_live_only_this")
    assert_nova_error(await post_batch(fake, batch_body(1)), 401, "UNAUTHORIZED")
    headers = {**HEADERS, "Authorization": "Bearer sk_live_only_this"}
    assert (await post_batch(fake, batch_body(1), headers=headers)).status_code == 202


async def test_missing_tenant_is_400() -> None:
    """X-Tenant-Id is required on tenant-scoped calls."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = await post_batch(make_fake(), batch_body(1), headers=headers)
    assert_nova_error(response, 400, "VALIDATION_ERROR")


async def test_other_tenants_batches_and_jobs_are_not_found() -> None:
    """Tenants are isolated: another tenant gets 404 for every read."""
    fake = make_fake()
    batch = fake.state.create_batch("job-1", "someone-else", ["app-1"])
    job = batch.jobs[0]
    paths = {
        f"/v1/jobs/job-1/scoring-batches/{batch.id}": "BATCH_NOT_FOUND",
        f"/v1/score/batch/{batch.id}": "BATCH_NOT_FOUND",
        f"/v1/jobs/job-1/applications/app-1/scoring-jobs/{job.id}": "SCORING_JOB_NOT_FOUND",
        f"/v1/score/{job.id}": "SCORING_JOB_NOT_FOUND",
    }
    for path, code in paths.items():
        assert_nova_error(await get(fake, path), 404, code)


# ---- scoring ------------------------------------------------------------------------------


async def test_scoring_is_deterministic_for_a_seed() -> None:
    """Same seed and same submissions give the same ids, scores and failures."""

    def run(seed: int) -> dict[str, Any]:
        fake = make_fake(seed=seed, failure_rate=0.3)
        fake.state.create_batches(3, 10, tenant_id=TENANT)
        return fake.truth()

    assert run(42) == run(42)
    assert run(42) != run(43)


async def test_scores_and_failures_follow_the_documented_shape() -> None:
    """Completed jobs score 1-10 with an assessment; failed ones carry an error code."""
    fake = make_fake(seed=1, failure_rate=0.3)
    fake.state.create_batches(4, 25, tenant_id=TENANT)
    jobs = [j for b in fake.truth()["batches"] for j in b["scoringJobs"]]
    done = [j for j in jobs if j["status"] == "completed"]
    failed = [j for j in jobs if j["status"] == "failed"]
    assert done
    assert failed
    assert all(1 <= j["score"] <= 10 and j["assessment"]["verdict"] for j in done)
    assert all(j["errorCode"] and j["failedAt"] and j["score"] is None for j in failed)


async def test_jobs_stay_pending_until_the_score_delay_passes() -> None:
    """With score_delay, jobs are pending (PENDING/IN_PROGRESS upper-case) until then."""
    clock = ManualClock()
    fake = make_fake(clock, score_delay=10.0, status_case="upper", failure_rate=0.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a", "b", "c"])
    path = f"/v1/jobs/job-1/scoring-batches/{batch.id}"
    before = (await get(fake, path)).json()
    assert before["batch"]["status"] == "PENDING"
    assert before["batch"]["completedAt"] is None
    clock.advance(min(j.finished_at for j in batch.jobs).timestamp() - clock.now().timestamp())
    middle = (await get(fake, path)).json()
    assert middle["batch"]["status"] == "IN_PROGRESS"
    clock.advance(10)
    after = (await get(fake, path)).json()
    assert after["batch"]["status"] == "COMPLETED"
    assert {j["status"] for j in after["scoringJobs"]} == {"COMPLETED"}


async def test_create_batches_builds_benchmark_sized_state() -> None:
    """400 batches of 25 give 10,000 scoring jobs."""
    fake = make_fake()
    batches = fake.state.create_batches(400, 25)
    assert len(batches) == 400
    assert len(fake.state.jobs) == 10_000


# ---- API faults ---------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_and_headers() -> None:
    """Above rate_limit per second: 429 RATE_LIMITED, Retry-After: 1, X-RateLimit-* headers."""
    fake = make_fake(rate_limit=2)
    batch = fake.state.create_batch("job-1", TENANT, ["a"])
    path = f"/v1/score/batch/{batch.id}"
    responses = [await get(fake, path) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    limited = responses[2]
    body = assert_nova_error(limited, 429, "RATE_LIMITED")
    assert body["retryable"] is True
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-bucket"] == "read_and_ops"
    assert responses[0].headers["x-ratelimit-limit"] == "2"


async def test_api_errors_are_retryable_5xx() -> None:
    """api_error_rate=1 makes every answer a retryable 500 or 503."""
    fake = make_fake(api_error_rate=1.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a"])
    for _ in range(5):
        response = await get(fake, f"/v1/score/batch/{batch.id}")
        assert response.status_code in (500, 503)
        assert response.json()["retryable"] is True


async def test_malformed_rate_breaks_successful_bodies_only() -> None:
    """malformed_rate=1 garbles 2xx bodies; errors stay well-formed."""
    fake = make_fake(malformed_rate=1.0)
    batch = fake.state.create_batch("job-1", TENANT, ["a"])
    error = await get(fake, "/v1/score/batch/x")
    assert_nova_error(error, 404, "BATCH_NOT_FOUND")  # the same fake: errors stay intact
    garbled = await get(fake, f"/v1/score/batch/{batch.id}")
    assert garbled.status_code == 200
    try:
        body = garbled.json()
    except ValueError:
        body = None
    assert body is None or "batchId" not in body


async def test_truth_route_serves_the_truth() -> None:
    """GET /_fake/truth equals truth(), without auth."""
    fake = make_fake()
    fake.state.create_batch("job-1", TENANT, ["a", "b"])
    response = await get(fake, "/_fake/truth", headers={})
    assert response.json() == fake.truth()


# ---- webhooks -----------------------------------------------------------------------------


def verified(received: Received) -> Verified:
    """Verify a recorded delivery the way the receiver does, at fake Nova's start time."""
    now = ManualClock().now()
    return verify([SECRET.encode()], received.headers, received.body, now=now, tolerance=TOLERANCE)


async def test_delivers_signed_webhooks_for_every_job_and_batch() -> None:
    """One signed score.* per job and one batch.completed per batch, all verifying."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver, failure_rate=0.3, seed=2)
    fake.state.create_batch("job-1", TENANT, [f"app-{i}" for i in range(10)])
    stats = await fake.run_until_idle()
    assert stats.events == 11
    assert stats.delivered == 11
    events = Counter(p["event"] for p in receiver.payloads)
    assert events["batch.completed"] == 1
    assert events["score.completed"] + events["score.failed"] == 10
    for received in receiver.requests:
        result = verified(received)
        assert result.construction == "body"
        assert received.headers["x-webhook-signature"].startswith("sha256=")
        event = received.payload["event"]
        assert received.headers["x-webhook-event"] == event.upper().replace(".", "_")
    assert len({r.headers["x-webhook-id"] for r in receiver.requests}) == 11


async def test_score_webhooks_are_flat_and_carry_no_batch_id() -> None:
    """score.* bodies follow NOVA.md §1: flat, tenantId included, no batchId."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver, failure_rate=0.5, seed=4)
    fake.state.create_batch("job-1", TENANT, [f"app-{i}" for i in range(6)])
    await fake.run_until_idle()
    for payload in receiver.payloads:
        if payload["event"] == "score.completed":
            assert set(payload) == {
                "event", "tenantId", "scoringJobId", "criteriaVersionId", "jobId",
                "applicationId", "result", "completedAt",
            }  # fmt: skip
        elif payload["event"] == "score.failed":
            assert {"error", "failedAt"} <= payload.keys()
            assert "batchId" not in payload
        else:
            assert payload["batchId"] in fake.state.batches


async def test_webhook_timestamps_equal_the_api_timestamps() -> None:
    """completedAt/failedAt in a webhook is the exact string the API serves."""
    receiver = Recorder()
    clock = ManualClock()
    fake = make_fake(clock, receiver=receiver, score_delay=3.0, failure_rate=0.3, seed=9)
    batch = fake.state.create_batch("job-1", TENANT, [f"app-{i}" for i in range(8)])
    clock.advance(10)
    await fake.run_until_idle()
    served = (await get(fake, f"/v1/jobs/job-1/scoring-batches/{batch.id}")).json()
    by_id = {j["id"]: j for j in served["scoringJobs"]}
    for payload in receiver.payloads:
        if payload["event"] == "score.completed":
            assert payload["completedAt"] == by_id[payload["scoringJobId"]]["completedAt"]
            assert payload["completedAt"].endswith("Z")
        elif payload["event"] == "score.failed":
            assert payload["failedAt"] == by_id[payload["scoringJobId"]]["failedAt"]
        else:
            assert payload["completedAt"] == served["batch"]["completedAt"]


async def test_dropped_deliveries_never_arrive() -> None:
    """drop=0.3 sends the rest exactly once; the dropped subjects never reach the receiver."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver, drop=0.3, seed=5)
    fake.state.create_batches(4, 25, tenant_id=TENANT)
    stats = await fake.run_until_idle()
    assert 0 < stats.dropped < stats.events
    assert len(receiver.requests) == stats.events - stats.dropped
    received = {r.payload.get("scoringJobId") or r.payload["batchId"] for r in receiver.requests}
    assert received.isdisjoint({d.subject for d in fake.deliverer.dropped})


async def test_duplicates_keep_their_webhook_id_and_resends_get_a_new_one() -> None:
    """duplicate repeats a delivery under its id; resend repeats the body under a new id."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver, duplicate=0.3, resend=0.2, seed=6)
    fake.state.create_batches(2, 25, tenant_id=TENANT)
    stats = await fake.run_until_idle()
    assert stats.duplicated > 0
    assert stats.resent > 0
    ids = Counter(r.headers["x-webhook-id"] for r in receiver.requests)
    bodies = Counter(r.body for r in receiver.requests)
    assert sum(n - 1 for n in ids.values()) == stats.duplicated
    assert sum(n - 1 for n in bodies.values()) == stats.duplicated + stats.resent
    assert len(receiver.requests) == stats.events + stats.duplicated + stats.resent


async def test_reorder_shuffles_delivery_order_reproducibly() -> None:
    """reorder changes the order of the same deliveries, identically for the same seed."""

    async def order(**config: Any) -> list[bytes]:
        receiver = Recorder()
        fake = make_fake(receiver=receiver, seed=8, **config)
        fake.state.create_batches(2, 20, tenant_id=TENANT)
        await fake.run_until_idle()
        return [r.body for r in receiver.requests]

    plain, shuffled, again = await order(), await order(reorder=True), await order(reorder=True)
    assert sorted(plain) == sorted(shuffled)
    assert plain != shuffled
    assert shuffled == again


async def test_failed_deliveries_are_retried_under_the_same_id() -> None:
    """A 500 then a 200: delivered on the second attempt with the same X-Webhook-Id."""
    receiver = Recorder(statuses=[500, 503])
    fake = make_fake(receiver=receiver, batch_events=False)
    fake.state.create_batch("job-1", TENANT, ["app-1"])
    stats = await fake.run_until_idle()
    assert (stats.delivered, stats.retried, stats.attempts) == (1, 2, 3)
    assert len({r.headers["x-webhook-id"] for r in receiver.requests}) == 1


async def test_deliveries_give_up_after_their_attempts() -> None:
    """An endpoint that always fails gets delivery_attempts tries, then the delivery fails."""
    receiver = Recorder(statuses=[500] * 10)
    fake = make_fake(receiver=receiver, batch_events=False, delivery_attempts=3)
    fake.state.create_batch("job-1", TENANT, ["app-1"])
    stats = await fake.run_until_idle()
    assert (stats.attempts, stats.failed, stats.delivered) == (3, 1, 0)


async def test_legacy_header_mode_sends_only_the_old_signature() -> None:
    """legacy_header: X-Nova-Signature (bare hex), no id/timestamp headers, still verifies."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver, legacy_header=True)
    fake.state.create_batch("job-1", TENANT, ["app-1"])
    await fake.run_until_idle()
    for received in receiver.requests:
        assert "x-webhook-signature" not in received.headers
        assert "x-webhook-id" not in received.headers
        assert len(received.headers["x-nova-signature"]) == 64
        assert verified(received).header == "x-nova-signature"


@pytest.mark.parametrize("construction", ["timestamp.body", "id.timestamp.body"])
async def test_timestamp_covering_constructions_verify(construction: str) -> None:
    """The timestamp-covering signatures verify within the tolerance."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver, construction=construction)
    fake.state.create_batch("job-1", TENANT, ["app-1"])
    await fake.run_until_idle()
    assert receiver.requests
    for received in receiver.requests:
        result = verified(received)
        assert result.construction == construction
        assert result.timestamp == ManualClock().now()


async def test_legacy_batches_send_the_oldest_payloads() -> None:
    """A legacy batch emits per-job events without tenantId, and no batch.completed."""
    receiver = Recorder()
    fake = make_fake(receiver=receiver)
    fake.state.create_batch("job-1", TENANT, ["app-1", "app-2"], api="legacy")
    await fake.run_until_idle()
    assert len(receiver.payloads) == 2
    assert all("tenantId" not in p and p["event"].startswith("score.") for p in receiver.payloads)


async def test_delay_holds_deliveries_until_due() -> None:
    """With delay, nothing is sent before the delay has passed on the clock."""
    receiver = Recorder()
    clock = ManualClock()
    fake = make_fake(clock, receiver=receiver, delay=5.0, batch_events=False)
    fake.state.create_batch("job-1", TENANT, ["app-1"])
    assert await fake.deliver_pending() == 0
    clock.advance(5)
    assert await fake.deliver_pending() == 1
    assert len(receiver.requests) == 1


async def test_background_delivery_runs_in_server_mode() -> None:
    """The app's lifespan starts a delivery loop that sends webhooks as jobs finish."""
    receiver = Recorder()
    config = FakeNovaConfig(deliver_to=RECEIVER_URL, secret=SECRET, batch_events=False)
    async with asgi_client(receiver, "http://receiver") as http:
        fake = create_fake_nova(config, http=http)
        async with fake.app.router.lifespan_context(fake.app):
            fake.state.create_batch("job-1", TENANT, ["app-1"])
            for _ in range(500):
                if receiver.requests:
                    break
                await asyncio.sleep(0.01)
    assert len(receiver.requests) == 1


def test_config_rejects_impossible_values() -> None:
    """Fractions outside [0, 1] and secrets without whsec_ are configuration errors."""
    with pytest.raises(ValueError, match="drop"):
        FakeNovaConfig(drop=1.5)
    with pytest.raises(ValueError, match="whsec_"):
        FakeNovaConfig(secret="plain")


# ---- the local development loop -----------------------------------------------------------------


async def _answer_applied(scope: Any, receive: Any, send: Any) -> None:
    """A receiver that answers like nova-sink: 200 ``{"status": "applied"}``."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    await Request(scope, receive).body()
    await JSONResponse({"status": "applied"})(scope, receive, send)


async def test_every_delivery_attempt_is_reported_with_status_and_outcome() -> None:
    """on_attempt hears each HTTP attempt: the failed one (500) and the retry (200 applied)."""
    from receiver.fake_nova import Attempt

    fake = make_fake(receiver=Recorder(statuses=[500]), batch_events=False)
    attempts: list[Attempt] = []
    fake.deliverer.on_attempt = attempts.append
    (job,) = fake.state.create_batch("job-1", TENANT, ["app-1"]).jobs
    await fake.run_until_idle()

    assert [(a.status, a.delivery.subject) for a in attempts] == [(500, job.id), (200, job.id)]

    applied = make_fake(receiver=Recorder(), batch_events=False)
    applied.deliverer._http = asgi_client(_answer_applied, "http://receiver")
    lines: list[Attempt] = []
    applied.deliverer.on_attempt = lines.append
    applied.state.create_batch("job-1", TENANT, ["app-1"])
    await applied.run_until_idle()

    assert [a.outcome for a in lines] == ["applied"]


def test_an_attempt_prints_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``→ score.completed <id> [<webhook id>] ← 200 applied 4 ms``."""
    from receiver.cli.demo_cmd import print_attempt
    from receiver.fake_nova import Attempt, Delivery

    delivery = Delivery("msg_1", "score.completed", b"{}", "sj_1", attempts=2)
    print_attempt(Attempt(delivery, 200, "applied", 4.2))
    print_attempt(Attempt(delivery, 0, None, 5000))

    assert capsys.readouterr().out.splitlines() == [
        "→ score.completed sj_1 [msg_1] (attempt 2) ← 200 applied 4 ms",
        "→ score.completed sj_1 [msg_1] (attempt 2) ← no answer 5000 ms",
    ]


async def test_a_new_id_salt_gives_new_ids_and_the_same_scores() -> None:
    """Two starts with different salts share no ids; scores still follow the seed."""
    first = make_fake(seed=5, id_salt="start-1")
    second = make_fake(seed=5, id_salt="start-2")
    again = make_fake(seed=5, id_salt="start-1")
    a, b, c = (
        f.state.create_batch("job-1", TENANT, ["app-1", "app-2"]) for f in (first, second, again)
    )

    assert a.id != b.id
    assert {j.id for j in a.jobs}.isdisjoint({j.id for j in b.jobs})
    assert (a.id, [j.id for j in a.jobs]) == (c.id, [j.id for j in c.jobs])
    assert [j.score for j in a.jobs] == [j.score for j in b.jobs]
