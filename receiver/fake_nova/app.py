"""The fake Nova ASGI app: the Embed API endpoints of NOVA.md, with auth, validation and faults.

Routes (all ``/v1/*`` need ``Authorization: Bearer sk_test_…|sk_live_…`` and ``X-Tenant-Id``):

- ``POST /v1/jobs/{jobId}/scoring-batches``                       create (seeds 002/003)
- ``GET  /v1/jobs/{jobId}/scoring-batches/{id}``                  batch status (seed 001)
- ``GET  /v1/jobs/{jobId}/applications/{appId}/scoring-jobs/{id}`` one scoring job
- ``GET  /v1/score/batch/{batchId}``                              legacy batch (seed 000)
- ``GET  /v1/score/{scoringJobId}``                               legacy scoring job
- ``GET  /_fake/truth``, ``GET /_fake/stats``                     for tests and the demo

Both shapes are served for every batch and job: the legacy endpoints are views of the same
state (a batch created with ``api="legacy"`` just gets old-style ids, no ``batch.completed``
and the oldest webhook payload). Errors use the flat RFC 7807 body of the newest docs.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.fake_nova import shapes
from receiver.fake_nova.faults import ApiFaults
from receiver.fake_nova.state import FakeNovaState

Handler = Callable[[Request, str], Awaitable[Response]]

MAX_APPLICATIONS = 25
MAX_JOB_DESCRIPTION = 50_000
MAX_ROLE_KNOWLEDGE = 15_000
_MAX_REQUEST_BYTES = 5 * 1024 * 1024


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status, headers=headers, media_type="application/json")


def error(
    status: int,
    code: str,
    message: str,
    *,
    retryable: bool = False,
    details: list[dict[str, str]] | None = None,
    trace_id: str = "",
) -> Response:
    """Nova's newest error body: ``{type, code, status, message, retryable, traceId}``."""
    body: dict[str, Any] = {
        "type": "https://docs.nova.dweet.com/embed-api/errors#" + code.lower().replace("_", "-"),
        "code": code,
        "status": status,
        "message": message,
        "retryable": retryable,
        "traceId": trace_id,
    }
    if details:
        body["details"] = details
    return _json(body, status)


class ValidationFailed(Exception):
    """A request body that Nova answers with 400 ``VALIDATION_ERROR``."""

    def __init__(self, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.details = details


def _detail(field: str, message: str, code: str = "invalid") -> dict[str, str]:
    return {"field": field, "code": code, "message": message}


def validate_batch_request(body: Any) -> list[dict[str, Any]]:
    """Check a create-batch body (seed 003); return its applications or raise."""
    if not isinstance(body, dict):
        raise ValidationFailed("Body must be a JSON object", [_detail("", "not an object")])
    problems: list[dict[str, str]] = []
    description = body.get("jobDescription")
    if not isinstance(description, str) or not 1 <= len(description) <= MAX_JOB_DESCRIPTION:
        problems.append(_detail("jobDescription", "required, 1 to 50000 characters"))
    for name in ("jobTitle", "companyName"):
        if name in body and (not isinstance(body[name], str) or not body[name]):
            problems.append(_detail(name, "must be a non-empty string"))
    knowledge = body.get("roleKnowledge")
    if "roleKnowledge" in body and (
        not isinstance(knowledge, str) or not 1 <= len(knowledge) <= MAX_ROLE_KNOWLEDGE
    ):
        problems.append(_detail("roleKnowledge", "1 to 15000 characters"))
    applications = body.get("applications")
    if not isinstance(applications, list) or not 1 <= len(applications) <= MAX_APPLICATIONS:
        problems.append(_detail("applications", "1 to 25 applications required"))
        applications = []
    problems += _application_problems(applications)
    if problems:
        raise ValidationFailed("Request validation failed", problems)
    return applications


def _application_problems(applications: list[Any]) -> list[dict[str, str]]:
    """Structural problems of the applications; a bad resume *content* is a rejection instead."""
    problems: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(applications):
        where = f"applications[{index}]"
        if not isinstance(item, dict):
            problems.append(_detail(where, "must be an object"))
            continue
        app_id = item.get("applicationId")
        if not isinstance(app_id, str) or not app_id:
            problems.append(_detail(f"{where}.applicationId", "required"))
        elif app_id in seen:
            problems.append(_detail(f"{where}.applicationId", "duplicate", "duplicate"))
        else:
            seen.add(app_id)
        if not isinstance(item.get("resume"), dict):
            problems.append(_detail(f"{where}.resume", "required object"))
        if "applicationData" in item and not isinstance(item["applicationData"], dict):
            problems.append(_detail(f"{where}.applicationData", "must be an object"))
    return problems


class FakeNovaApi:
    """The HTTP face of the state: authentication, faults, then the endpoint."""

    def __init__(self, state: FakeNovaState, faults: ApiFaults) -> None:
        self.state = state
        self.config = state.config
        self.faults = faults
        self._trace = random.Random(f"trace:{self.config.seed}")  # noqa: S311 -- seeded on purpose: reproducible fakes, not secrets

    def _authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return False
        if self.config.api_key is not None:
            return key == self.config.api_key
        return key.startswith(("sk_test_", "sk_live_")) and len(key) > len("sk_test_")

    def endpoint(self, handler: Handler, bucket: str) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with auth, tenant, 429/5xx/slow/malformed faults and ``X-Trace-Id``."""

        async def wrapped(request: Request) -> Response:
            trace = f"trace_{self._trace.getrandbits(64):016x}"
            response = await self._answer(request, handler, bucket, trace)
            response.headers["X-Trace-Id"] = trace
            return response

        return wrapped

    async def _answer(
        self, request: Request, handler: Handler, bucket: str, trace: str
    ) -> Response:
        if not self._authorized(request):
            return error(401, "UNAUTHORIZED", "Invalid or missing API key", trace_id=trace)
        tenant = request.headers.get("x-tenant-id", "").strip()
        if not tenant:
            details = [_detail("X-Tenant-Id", "header required", "required")]
            return error(
                400,
                "VALIDATION_ERROR",
                "Missing X-Tenant-Id header",
                details=details,
                trace_id=trace,
            )
        allowed, limit_headers = self.faults.rate_limit_headers(bucket)
        if not allowed:
            response = error(
                429, "RATE_LIMITED", "Rate limit exceeded", retryable=True, trace_id=trace
            )
        elif (status := self.faults.server_error()) is not None:
            code = "SERVICE_UNAVAILABLE" if status == 503 else "INTERNAL_ERROR"
            response = error(status, code, "Injected fault", retryable=True, trace_id=trace)
            if status == 503:
                response.headers["Retry-After"] = "1"
        else:
            response = await handler(request, tenant)
            if 200 <= response.status_code < 300:
                original = bytes(response.body)
                malformed = self.faults.malform(original)
                if malformed is not original:
                    response = Response(
                        malformed, response.status_code, media_type="application/json"
                    )
        response.headers.update(limit_headers)
        if self.config.slow:
            await asyncio.sleep(self.config.slow)
        return response

    # -- endpoints ------------------------------------------------------------------------

    async def create_batch(self, request: Request, tenant: str) -> Response:
        job_id = request.path_params["job_id"]
        raw = await request.body()
        try:
            if len(raw) > _MAX_REQUEST_BYTES:
                raise ValidationFailed("Body too large", [_detail("", "too large")])
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise ValidationFailed(
                    "Body is not valid JSON", [_detail("", "bad json")]
                ) from None
            applications = validate_batch_request(body)
        except ValidationFailed as exc:
            return error(400, "VALIDATION_ERROR", str(exc), details=exc.details)
        batch = self.state.create_batch(job_id, tenant, applications)
        if not batch.jobs:
            details = [
                _detail(f"applications.{r.application_id}", r.message, r.code)
                for r in batch.rejected
            ]
            return error(422, "VALIDATION_ERROR", "Every application was rejected", details=details)
        return _json(shapes.created(batch, self.state.now(), self.config.status_case), 202)

    async def get_batch(self, request: Request, tenant: str) -> Response:
        batch = self.state.find_batch(tenant, request.path_params["batch_id"])
        if batch is None or batch.job_id != request.path_params["job_id"]:
            return error(404, "BATCH_NOT_FOUND", "Scoring batch not found")
        now, case = self.state.now(), self.config.status_case
        return _json(shapes.batch_status_body(batch, now, case))

    async def get_job(self, request: Request, tenant: str) -> Response:
        job = self.state.find_job(tenant, request.path_params["scoring_job_id"])
        params = request.path_params
        if job is None or (job.job_id, job.application_id) != (
            params["job_id"],
            params["application_id"],
        ):
            return error(404, "SCORING_JOB_NOT_FOUND", "Scoring job not found")
        now, case = self.state.now(), self.config.status_case
        return _json({"scoringJob": shapes.scoring_job(job, now, case)})

    async def get_legacy_batch(self, request: Request, tenant: str) -> Response:
        batch = self.state.find_batch(tenant, request.path_params["batch_id"])
        if batch is None:
            return error(404, "BATCH_NOT_FOUND", "Batch not found")
        return _json(shapes.legacy_batch(batch, self.state.now(), self.config.status_case))

    async def get_legacy_job(self, request: Request, tenant: str) -> Response:
        job = self.state.find_job(tenant, request.path_params["scoring_job_id"])
        if job is None:
            return error(404, "SCORING_JOB_NOT_FOUND", "Scoring job not found")
        return _json(shapes.legacy_job(job, self.state.now(), self.config.status_case))

    def routes(self) -> list[Route]:
        ep = self.endpoint
        jobs = "/v1/jobs/{job_id}"
        return [
            Route(
                f"{jobs}/scoring-batches",
                ep(self.create_batch, "scoring_intake_batch"),
                methods=["POST"],
            ),
            Route(f"{jobs}/scoring-batches/{{batch_id}}", ep(self.get_batch, "read_and_ops")),
            Route(
                f"{jobs}/applications/{{application_id}}/scoring-jobs/{{scoring_job_id}}",
                ep(self.get_job, "read_and_ops"),
            ),
            Route("/v1/score/batch/{batch_id}", ep(self.get_legacy_batch, "read_and_ops")),
            Route("/v1/score/{scoring_job_id}", ep(self.get_legacy_job, "read_and_ops")),
        ]


def build_app(api: FakeNovaApi, extra: list[Route], lifespan: Any = None) -> Starlette:
    """The Starlette app: API routes plus the ``/_fake/*`` helpers."""
    return Starlette(routes=[*api.routes(), *extra], lifespan=lifespan)
