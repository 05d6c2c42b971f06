"""Commands that talk to Nova: ``track``, ``submit``, ``reconcile``."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from receiver.cli.common import (
    EXIT_FAILURE,
    JSON_OPTION,
    fail,
    lease_held_message,
    open_engine,
    plain_id,
    settings,
    shown,
    store_for,
    utcnow,
)
from receiver.cli.output import echo_plain, print_json, print_table

if TYPE_CHECKING:
    from receiver.nova import NovaClient
    from receiver.reconcile import Summary
    from receiver.settings import Settings


def register(app: typer.Typer) -> None:
    app.command()(track)
    app.command()(submit)
    app.command()(reconcile)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file (header line) or JSON Lines / a JSON array."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    if path.suffix.lower() == ".csv":
        return [dict(row) for row in csv.DictReader(text.splitlines())]
    stripped = text.strip()
    try:
        if stripped.startswith("["):
            rows = json.loads(stripped)
        else:
            rows = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        fail(f"{path}: not JSON Lines or a JSON array ({exc.msg} at line {exc.lineno})")
    if not all(isinstance(row, dict) for row in rows):
        fail(f"{path}: every entry must be an object")
    return list(rows)


def track(
    job_id: str | None = typer.Argument(None, help="Nova jobId the batch belongs to."),
    batch_id: str | None = typer.Argument(None, help="Scoring batch id (scoringBatchId)."),
    tenant: str | None = typer.Option(
        None, "--tenant", help="X-Tenant-Id (default NOVA_TENANT_ID)."
    ),
    api: str = typer.Option("v1", "--api", help="v1 or legacy (GET /v1/score/batch/{id})."),
    from_file: Path | None = typer.Option(
        None, "--from-file", help="CSV or JSON Lines with job_id, batch_id, tenant, api."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Track batches created elsewhere, so that reconcile keeps them complete.

    \b
    Examples:
      nova-sink track job-42 cm3x9k2v80000abcd1234efgh
      nova-sink track --from-file batches.csv
    """
    from storage.records import BatchState

    cfg = settings()
    if from_file is not None:
        if job_id or batch_id:
            fail("give JOB_ID BATCH_ID or --from-file, not both")
        rows = _read_rows(from_file)
    elif job_id is not None and batch_id is not None:
        # Checked here to name the argument; every entry is checked again below.
        plain_id(job_id.strip(), "JOB_ID")
        plain_id(batch_id.strip(), "BATCH_ID")
        _tenant(tenant, "--tenant")
        rows = [{"job_id": job_id, "batch_id": batch_id, "tenant": tenant, "api": api}]
    else:
        fail("give JOB_ID BATCH_ID, or --from-file FILE")
    states = []
    for number, row in enumerate(rows, start=1):
        row_api = (row.get("api") or api).strip().lower()
        if row_api not in {"v1", "legacy"}:
            fail(f"entry {number}: api must be v1 or legacy, not {shown(row_api)}")
        if not row.get("job_id") or not row.get("batch_id"):
            fail(f"entry {number}: job_id and batch_id are required")
        states.append(
            BatchState(
                # Reconcile builds request paths from these: plain segments only.
                batch_id=plain_id(str(row["batch_id"]).strip(), f"entry {number}: batch_id"),
                job_id=plain_id(str(row["job_id"]).strip(), f"entry {number}: job_id"),
                tenant_id=_tenant(
                    row.get("tenant") or row.get("tenant_id") or tenant, f"entry {number}: tenant"
                )
                or cfg.nova_tenant_id,
                api=row_api,  # type: ignore[arg-type]
            )
        )
    now = utcnow()
    with store_for(cfg, write=True) as store:
        results = [{"batch_id": s.batch_id, "new": store.track_batch(s, now=now)} for s in states]
    if as_json:
        print_json(results)
        return
    for result in results:
        verb = "now tracking" if result["new"] else "already tracked"
        typer.echo(f"{verb} batch {result['batch_id']}")


def _tenant(value: str | None, name: str) -> str | None:
    """A tenant id as given, or None; sent as the X-Tenant-Id header, so a plain id only."""
    return plain_id(value.strip(), name) if value else None


def _client(cfg: Settings, http: Any) -> NovaClient:
    from receiver.nova import NovaClient

    return NovaClient(
        http,
        api_key=cfg.api_key(),
        tenant_id=cfg.nova_tenant_id,
        rate_limit=cfg.nova_rate_limit,
    )


def _applications(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(applications, batch-level fields) from a Nova request body, a list, or a CSV."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            fail(f"cannot read {path}: {exc}")
        if isinstance(data, dict):
            applications = data.get("applications")
            if not isinstance(applications, list):
                fail(f"{path}: expected an object with an applications array")
            return applications, {k: v for k, v in data.items() if k != "applications"}
        if isinstance(data, list):
            return data, {}
        fail(f"{path}: expected a JSON object or array")
    applications = []
    for number, row in enumerate(_read_rows(path), start=1):
        app_id = (row.get("application_id") or row.get("applicationId") or "").strip()
        url, text = row.get("resume_url"), row.get("resume_text")
        if not app_id or not (url or text):
            fail(f"row {number}: application_id and resume_url or resume_text are required")
        resume = {"type": "url", "url": url} if url else {"type": "text", "content": text}
        applications.append({"applicationId": app_id, "resume": resume})
    return applications, {}


def submit(
    file: Path = typer.Argument(
        help="Nova request JSON ({jobDescription, applications}), a JSON array, or CSV "
        "(application_id, resume_url | resume_text)."
    ),
    job: str = typer.Option(..., "--job", help="Nova jobId (your external job id)."),
    job_description: Path | None = typer.Option(
        None, "--job-description", help="Text file with the job description."
    ),
    tenant: str | None = typer.Option(
        None, "--tenant", help="X-Tenant-Id (default NOVA_TENANT_ID)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create scoring batches in Nova (25 applications per batch) and track them.

    Each application needs an applicationId and a resume (url or text); the job
    description comes from the JSON or --job-description. See examples/ in the repository.

    \b
    Examples:
      nova-sink submit examples/applications.json --job job-42
      nova-sink submit examples/applications.csv --job job-42 \\
        --job-description examples/job-description.txt
    """
    plain_id(job, "--job")
    tenant = _tenant(tenant, "--tenant")
    cfg = settings()
    cfg.api_key()
    applications, fields = _applications(file)
    if job_description is not None:
        fields["jobDescription"] = job_description.read_text(encoding="utf-8")
    if not fields.get("jobDescription"):
        fail("a job description is required: jobDescription in the JSON, or --job-description")
    if not applications:
        fail(f"{file}: no applications")
    import asyncio

    engine = open_engine(cfg)
    try:
        created = asyncio.run(_submit(cfg, engine, job, tenant, fields, applications))
    finally:
        engine.dispose()
    if as_json:
        print_json(created)
        return
    for batch in created:
        typer.echo(
            f"batch {batch['batch_id']}: {len(batch['scoring_job_ids'])} scoring jobs queued, "
            f"{len(batch['rejected'])} applications rejected"
        )
        if batch["rejected"]:
            print_table(
                batch["rejected"], ("application_id", "code", "message", "reason"), "rejected"
            )


async def _submit(
    cfg: Settings,
    engine: Any,
    job_id: str,
    tenant: str | None,
    fields: dict[str, Any],
    applications: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    from receiver.nova import build_http_client
    from receiver.submit import submit_batches

    async with build_http_client(cfg.nova_api_url) as http:
        created = await submit_batches(
            _client(cfg, http),
            engine,
            job_id=job_id,
            tenant_id=tenant or cfg.nova_tenant_id,
            fields=fields,
            applications=applications,
            now=utcnow,
        )
    return [
        {
            "batch_id": answer.batch.batch_id,
            "scoring_job_ids": list(answer.scoring_job_ids),
            "rejected": [
                {
                    "application_id": r.application_id,
                    "code": r.code,
                    "message": r.message,
                    "reason": r.reason,
                }
                for r in answer.rejected
            ],
        }
        for answer in created
    ]


def reconcile(
    batch: str | None = typer.Option(None, "--batch", help="Only this batch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fetch and compare; write nothing."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=64, help="Batches in flight."),
    grace_minutes: float = typer.Option(
        5.0, "--grace-minutes", min=0, help="Age after which a pending job counts as a gap."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fetch from Nova whatever webhooks missed.

    Exit 0: converged; 1: gaps remain; 2: configuration error; 75: another reconcile is
    running (try later). --json prints one compact line, fit for a .jsonl log.

    \b
    Examples:
      nova-sink reconcile
      nova-sink reconcile --dry-run --json
      nova-sink reconcile --json >> /var/log/nova-sink/reconcile.jsonl
    """
    if batch is not None:
        plain_id(batch, "--batch")
    cfg = settings()
    cfg.api_key()
    import asyncio

    from receiver.reconcile import BatchNotTracked
    from storage.errors import LeaseHeld

    engine = open_engine(cfg)
    try:
        summary = asyncio.run(_reconcile(cfg, engine, batch, dry_run, concurrency, grace_minutes))
    except LeaseHeld as exc:
        if as_json:  # the stderr line and exit 75 come from the CLI's one error report
            print_json({"error": "lease_held", "message": lease_held_message(exc)}, compact=True)
        raise
    except BatchNotTracked as exc:
        fail(f"{exc}; add it with `nova-sink track JOB_ID {exc.batch_id}`")
    finally:
        engine.dispose()
    data = summary.as_dict()
    if as_json:
        # One line: `reconcile --json >> runs.jsonl` from cron makes a JSON Lines file.
        print_json(data, compact=True)
    else:
        _print_summary(data)
    if not summary.converged:
        raise typer.Exit(EXIT_FAILURE)


async def _reconcile(
    cfg: Settings,
    engine: Any,
    batch: str | None,
    dry_run: bool,
    concurrency: int,
    grace_minutes: float,
) -> Summary:
    from datetime import timedelta

    from receiver.nova import build_http_client
    from receiver.reconcile import Reconciler

    async with build_http_client(cfg.nova_api_url) as http:
        with _progress() as on_progress:
            reconciler = Reconciler(
                engine,
                _client(cfg, http),
                now=utcnow,
                concurrency=concurrency,
                grace=timedelta(minutes=grace_minutes),
                dry_run=dry_run,
                on_progress=on_progress,
            )
            return await reconciler.run(batch_id=batch)


class _progress:
    """A rich progress bar on a TTY; a no-op otherwise (cron mails stay clean)."""

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            self._bar = None
            return None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.start()
        task = self._bar.add_task("reconciling", total=None)

        def update(done: int, total: int) -> None:
            assert self._bar is not None
            self._bar.update(task, completed=done, total=total or None)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_summary(data: dict[str, Any]) -> None:
    state = "CONVERGED" if data["converged"] else "GAPS REMAIN"
    prefix = "dry run: " if data["dry_run"] else ""
    typer.echo(
        f"{prefix}{state}: {data['batches_checked']} batches and {data['jobs_checked']} jobs "
        f"checked, {data['results_added']} results added, {data['results_updated']} updated, "
        f"{data['results_enriched']} enriched, "
        f"{data['rejected_recorded']} rejected applications recorded, "
        f"{data['gaps_remaining']} gaps remaining ({data['requests']} requests, "
        f"{data['duration_s']} s)"
    )
    if data["batches_unreachable"]:
        ids = ", ".join(data["batches_unreachable"])
        echo_plain(f"  no longer reconciled (Nova answered 404 run after run): {ids}")
    if data["erased_skipped"]:
        typer.echo(f"  {data['erased_skipped']} records of erased applications not imported")
    for kind, count in sorted(data["errors"].items()):
        typer.echo(f"  errors {kind}: {count}", err=True)
    for detail in data["error_details"][:10]:
        typer.echo(f"  {detail['kind']} ({detail['where']}): {detail['error']}", err=True)
