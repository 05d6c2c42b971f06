"""Reconcile's side of hostile input: no request path from an unsafe id, no implausible value
from Nova's answers ever stored (issue 8, items 3 and 4)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stamina

from receiver.errors import NovaResponseError
from receiver.nova import UnsafeIdError
from tests.fake_nova_helpers import make_client

pytestmark = pytest.mark.anyio

BATCH = {
    "batch": {
        "id": "batch_1",
        "jobId": "job-123",
        "status": "completed",
        "totalJobs": 1,
        "completedJobs": 1,
        "failedJobs": 0,
        "createdAt": "2026-01-15T11:00:00Z",
        "completedAt": "2026-01-15T11:58:00Z",
    },
    "scoringJobs": [
        {
            "id": "sj_1",
            "jobId": "job-123",
            "applicationId": "app-1",
            "status": "completed",
            "isRescore": False,
            "score": 7,
            "assessment": {"verdict": "ok", "strengths": [], "concerns": [], "interviewFocus": []},
            "completedAt": "2026-01-15T11:58:00Z",
        }
    ],
    "rejectedApplications": [],
}


@pytest.fixture(autouse=True)
def _no_retry_sleeps() -> Iterator[None]:
    with stamina.set_testing(True, attempts=1, cap=True):
        yield


class Recorder:
    """A transport that answers ``body`` to every request and remembers each URL asked for."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.paths: list[str] = []

    def client(self) -> httpx.AsyncClient:
        def handler(request: httpx.Request) -> httpx.Response:
            self.paths.append(request.url.raw_path.decode())
            return httpx.Response(200, json=self.body)

        transport = httpx.MockTransport(handler)
        return httpx.AsyncClient(transport=transport, base_url="https://embed.nova.dweet.com")


@pytest.mark.parametrize(
    ("job_id", "batch_id"),
    [("..", "x"), (".", "batch_1"), ("job-123", ".."), ("a/b", "batch_1"), ("job", "x\r\ny")],
)
async def test_no_request_is_built_from_an_id_that_is_not_a_plain_segment(
    job_id: str, batch_id: str
) -> None:
    """`/v1/jobs/../scoring-batches/x` would address /v1/scoring-batches/x: nothing is sent."""
    recorder = Recorder(BATCH)
    async with recorder.client() as http:
        with pytest.raises(UnsafeIdError) as caught:
            await make_client(http).get_batch(job_id, batch_id)
    assert recorder.paths == []
    assert caught.value.kind == "unsafe_id"


async def test_every_path_builder_refuses_unsafe_ids() -> None:
    """Scoring-job, legacy and create calls refuse '..' too, before any request."""
    recorder = Recorder({})
    async with recorder.client() as http:
        client = make_client(http)
        with pytest.raises(UnsafeIdError):
            await client.get_scoring_job("job", "..", "sj_1")
        with pytest.raises(UnsafeIdError):
            await client.get_legacy_scoring_job("..")
        with pytest.raises(UnsafeIdError):
            await client.get_legacy_batch(".")
        with pytest.raises(UnsafeIdError):
            await client.create_scoring_batch("../x", {})
    assert recorder.paths == []


async def test_plain_ids_are_percent_quoted_into_one_segment() -> None:
    """Ids with spaces, '?' or '#' stay inside their segment."""
    body = copy.deepcopy(BATCH)
    body["batch"]["id"] = "b ?#%"
    recorder = Recorder(body)
    async with recorder.client() as http:
        await make_client(http).get_batch("job 1", "b ?#%")
    assert recorder.paths == ["/v1/jobs/job%201/scoring-batches/b%20%3F%23%25"]


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BATCH)
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("scoringJobs", 0, "score"), 11),
        (("scoringJobs", 0, "score"), -1),
        (("scoringJobs", 0, "score"), 2147483647),
        (("scoringJobs", 0, "completedAt"), "0001-01-01T00:00:00Z"),
        (("scoringJobs", 0, "completedAt"), "\u0661\u0667\u0663\u0666\u0669\u0663\u0667\u0660"),
        (("batch", "createdAt"), "2100-01-01T00:00:00Z"),
        (("batch", "totalJobs"), 2**40),
        (("scoringJobs", 0, "id"), ".."),
        (("scoringJobs", 0, "jobId"), "a/b"),
        (("scoringJobs", 0, "applicationId"), "."),
        (("rejectedApplications",), [{"applicationId": "..", "error": None}]),
    ],
    ids=lambda value: str(value)[:24],
)
async def test_answers_with_values_no_scorer_produces_are_malformed(
    path: tuple[Any, ...], value: Any
) -> None:
    """Scores outside 0..10, implausible times and unsafe ids are reported, never returned."""
    recorder = Recorder(_with(path, value))
    async with recorder.client() as http:
        with pytest.raises(NovaResponseError):
            await make_client(http).get_batch("job-123", "batch_1")


async def test_legacy_answer_with_an_out_of_range_score_is_malformed() -> None:
    """The legacy single-job shape gets the same score rule."""
    legacy = {
        "scoringJobId": "sj_1",
        "status": "completed",
        "result": {"score": 42},
        "completedAt": "2026-01-15T11:58:00Z",
    }
    recorder = Recorder(legacy)
    async with recorder.client() as http:
        with pytest.raises(NovaResponseError):
            await make_client(http).get_legacy_scoring_job("sj_1")


async def test_a_plausible_answer_still_parses() -> None:
    """The same answer, unchanged, is a snapshot (the cases above break one thing each)."""
    recorder = Recorder(BATCH)
    async with recorder.client() as http:
        snapshot = await make_client(http).get_batch("job-123", "batch_1")
    assert [job.score for job in snapshot.jobs] == [7]


# ---- numbers in Nova's headers are ASCII --------------------------------------------------------


@pytest.mark.parametrize("value", ["\u0661\u0662", "\uff13", "\u00b2"])
def test_retry_after_with_non_ascii_digits_is_garbage(value: str) -> None:
    """float() reads "١٢" as 12; a Retry-After of Unicode digits falls back to normal backoff."""
    from datetime import UTC, datetime

    from receiver.nova import parse_retry_after

    assert parse_retry_after(value, now=datetime(2026, 1, 15, tzinfo=UTC)) is None


async def test_content_length_of_unicode_digits_does_not_crash_the_client() -> None:
    """`Content-Length: ²` (isdigit() but not int()) is ignored, the body read capped."""

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        # Bytes on the wire, as a server would send them; httpx reads them back as latin-1.
        headers = [(b"content-length", "\u00b2".encode("latin-1"))]
        return httpx.Response(200, headers=headers, content=json.dumps(BATCH).encode())

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="https://embed.nova.dweet.com"
    ) as http:
        snapshot = await make_client(http).get_batch("job-123", "batch_1")
    assert snapshot.batch.batch_id == "batch_1"
