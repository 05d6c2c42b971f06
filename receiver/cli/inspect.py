"""Looking at what was stored: ``results``, ``batches``, ``stats``.

The ``deliveries`` commands live in ``receiver.cli.deliveries``, the ``secrets`` commands
in ``receiver.cli.secrets_cmd`` and ``results changes`` in ``receiver.cli.changes``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from receiver.cli.common import (
    JSON_OPTION,
    database_settings,
    fail,
    parse_since,
    results_reader,
    settings,
    shown,
    store_for,
    usage_error,
)
from receiver.cli.output import (
    echo_plain,
    print_json,
    print_listing,
    print_record,
    print_table,
    write_csv,
    write_jsonl,
)
from receiver.cli.secrets_cmd import secrets_app
from receiver.rows import json_row

if TYPE_CHECKING:
    from storage.store import ResultFilter

results_app = typer.Typer(
    help="Scoring results stored locally.", no_args_is_help=True, rich_markup_mode=None
)
batches_app = typer.Typer(
    help="Tracked scoring batches.", no_args_is_help=True, rich_markup_mode=None
)

RESULT_COLUMNS = (
    "scoring_job_id",
    "status",
    "score",
    "job_id",
    "application_id",
    "batch_id",
    "error_code",
    "source",
    "updated_at",
)
BATCH_COLUMNS = (
    "batch_id",
    "job_id",
    "tenant_id",
    "api",
    "status",
    "total_jobs",
    "completed_jobs",
    "failed_jobs",
    "due",
    "last_reconciled_at",
)
JOB = typer.Option(None, "--job", help="Only this Nova jobId.")
BATCH = typer.Option(None, "--batch", help="Only this scoring batch id.")
APPLICATION = typer.Option(None, "--application", help="Only this applicationId.")
STATUS = typer.Option(None, "--status", help="pending, completed or failed.")
SINCE = typer.Option(
    None, "--since", help="From this time on: ISO 8601, unix seconds, or an age like 24h, 7d."
)
UNTIL = typer.Option(
    None, "--until", help="Before this time: ISO 8601, unix seconds, or an age like 1h."
)
LIMIT = typer.Option(50, "--limit", min=1, help="How many rows, newest first.")
ALL = typer.Option(False, "--all", help="Every row (ignores --limit).")


def register(app: typer.Typer) -> None:
    app.add_typer(results_app, name="results")
    app.add_typer(batches_app, name="batches")
    app.add_typer(secrets_app, name="secrets")
    app.command()(stats)


def _filter(
    job: str | None,
    batch: str | None,
    application: str | None,
    status: str | None,
    since: str | None,
    until: str | None = None,
) -> ResultFilter:
    from storage.records import STATUSES
    from storage.store import ResultFilter

    if status is not None and status not in STATUSES:
        usage_error(f"--status must be pending, completed or failed, not {status!r}")
    return ResultFilter(
        job_id=job,
        batch_id=batch,
        application_id=application,
        status=status,
        since=parse_since(since) if since else None,
        until=parse_since(until, option="--until") if until else None,
    )


@results_app.command("list")
def results_list(
    job: str | None = JOB,
    batch: str | None = BATCH,
    application: str | None = APPLICATION,
    status: str | None = STATUS,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    limit: int = LIMIT,
    every: bool = ALL,
    as_json: bool = JSON_OPTION,
) -> None:
    """List results, newest first (50 unless --limit or --all).

    \b
    Examples:
      nova-sink results list --since 24h
      nova-sink results list --job job-42 --status failed --json
    """
    flt = _filter(job, batch, application, status, since, until)
    with results_reader(database_settings()) as reader:
        rows = reader.list_results(flt, limit=None if every else limit)
    print_listing(rows, RESULT_COLUMNS, "results", as_json=as_json)


@results_app.command("show")
def results_show(
    scoring_job_id: str = typer.Argument(help="The scoringJobId."), as_json: bool = JSON_OPTION
) -> None:
    """Show one result with every stored field.

    \b
    Example:
      nova-sink results show sj_4f2a9c
    """
    with results_reader(database_settings()) as reader:
        row = reader.get_result(scoring_job_id)
    if row is None:
        fail(f"no result for scoring job {shown(scoring_job_id)}")
    print_record(json_row(row), as_json)


@results_app.command("export")
def results_export(
    fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
    output: str = typer.Option("-", "--output", "-o", help="File to write; - for stdout."),
    job: str | None = JOB,
    batch: str | None = BATCH,
    application: str | None = APPLICATION,
    status: str | None = STATUS,
    since: str | None = SINCE,
) -> None:
    """Stream every matching result as CSV or JSON Lines.

    \b
    Examples:
      nova-sink results export --format csv -o results.csv
      nova-sink results export --format jsonl --since 7d | jq .score
    """
    if fmt not in {"csv", "jsonl"}:
        fail(f"--format must be csv or jsonl, not {shown(fmt)}")
    flt = _filter(job, batch, application, status, since)
    writer = write_csv if fmt == "csv" else write_jsonl
    with results_reader(database_settings()) as reader:
        if output == "-":
            count = writer(reader.iter_results(flt), sys.stdout)
        else:
            with open(output, "w", newline="", encoding="utf-8") as out:
                count = writer(reader.iter_results(flt), out)
    typer.echo(f"exported {count} results", err=True)


@batches_app.command("list")
def batches_list(
    status: str | None = STATUS, limit: int = LIMIT, every: bool = ALL, as_json: bool = JSON_OPTION
) -> None:
    """List tracked batches, newest first (status unreachable: Nova kept answering 404).

    \b
    Example:
      nova-sink batches list --status pending
    """
    with store_for(settings()) as store:
        rows = store.list_batches(status=status, limit=None if every else limit)
    print_listing(rows, BATCH_COLUMNS, "batches", as_json=as_json)


@batches_app.command("show")
def batches_show(
    batch_id: str = typer.Argument(help="Scoring batch id."), as_json: bool = JSON_OPTION
) -> None:
    """Show a batch with its results and rejected applications.

    \b
    Example:
      nova-sink batches show cm3x9k2v80000abcd1234efgh --json
    """
    with store_for(settings()) as store:
        row = store.get_batch(batch_id)
        if row is None:
            fail(f"batch {shown(batch_id)} is not tracked")
        results = store.results_for_batch(batch_id)
        rejected = store.rejected_for_batch(batch_id)
    record = json_row(row)
    if as_json:
        record["results"] = [json_row(r) for r in results]
        record["rejected_applications"] = [json_row(r) for r in rejected]
        print_json(record)
        return
    print_record(record, False)
    print_table(results, RESULT_COLUMNS, "results")
    if rejected:
        print_table(rejected, ("application_id", "code", "message", "reason"), "rejected")


@batches_app.command("untrack")
def batches_untrack(
    batch_id: str = typer.Argument(help="Scoring batch id, as `batches list` shows it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stop tracking a batch: reconcile no longer asks Nova about it (its results stay).

    For a batch created by mistake, or one Nova no longer knows (404).

    \b
    Example:
      nova-sink batches untrack batch_test_1764400000
    """
    with store_for(settings(), write=True) as store:
        untracked = store.untrack_batch(batch_id)
    if as_json:
        print_json({"batch_id": batch_id, "untracked": untracked})
    elif untracked:
        echo_plain(f"no longer tracking batch {batch_id}")
    if not untracked:
        fail(f"batch {shown(batch_id)} is not tracked")


def stats(as_json: bool = JSON_OPTION) -> None:
    """Counts by status, outcome and event.

    \b
    Example:
      nova-sink stats --json
    """
    with store_for(settings()) as store:
        data = store.stats()
    if as_json:
        print_json(data)
        return
    for section, value in data.items():
        if isinstance(value, dict):
            parts = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
            echo_plain(f"{section}: {parts}")
        else:
            echo_plain(f"{section}: {value}")
