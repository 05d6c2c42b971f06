"""``nova-sink results changes``: the change feed on the command line, like ``tail -f``.

Reads the database directly (like every inspection command), with the same cursors as
``GET /api/changes``: a consumer may switch between the two without losing its place.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import typer

from receiver.cli.common import EXIT_CONFIG, fail, open_engine, settings, shown

CHANGE_COLUMNS = ("seq", "changed_at", "kind", "scoring_job_id", "status", "job_id", "batch_id")
_PAGE = 500
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Paragraphs on one line each: the help renderer re-wraps them to the terminal.
HELP = "\n\n".join(
    (
        "Print changes of stored results after a cursor, oldest first.",
        "Each change carries a cursor: store the last one you processed and pass it back "
        "with --after to resume right after it (every change once, in order). The cursor "
        "to resume from is also printed on stderr at the end. --after now starts at the "
        "newest change.",
        "Examples:",
        "nova-sink results changes --json  (everything so far, as JSON Lines)",
        'nova-sink results changes --after "$CURSOR" --follow  (keep printing, like tail -f)',
        "nova-sink results changes --after now --follow --status failed",
    )
)


def register(results_app: typer.Typer) -> None:
    results_app.command("changes", help=HELP)(results_changes)


def results_changes(
    after: str | None = typer.Option(
        None, "--after", help="Cursor to start after (from a previous run or the API), or now."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep waiting for new changes."),
    interval: float = typer.Option(
        1.0, "--interval", min=0.05, max=60, help="Seconds between polls with --follow."
    ),
    job: str | None = typer.Option(None, "--job", help="Only this Nova jobId."),
    batch: str | None = typer.Option(None, "--batch", help="Only this scoring batch id."),
    status: str | None = typer.Option(None, "--status", help="pending, completed or failed."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one per change."),
) -> None:
    from receiver import cursors
    from receiver.logs import configure_logging
    from storage.db import transaction
    from storage.records import STATUSES
    from storage.store import ChangeFilter

    cfg = settings()
    # Before anything can log: structlog's default printer writes to stdout.
    configure_logging(cfg.resolved_log_format(), cfg.log_level)
    if status is not None and status not in STATUSES:
        fail(f"--status must be one of {', '.join(STATUSES)}, not {shown(status)}", EXIT_CONFIG)
    flt = ChangeFilter(job_id=job, batch_id=batch, status=status)
    engine = open_engine(cfg, create=False)
    position = 0
    try:
        if after == "now":
            with transaction(engine, write=False) as store:
                position = store.change_head()
        elif after is not None:
            try:
                position = cursors.decode_position("changes", after)
            except cursors.CursorError as exc:
                fail(
                    f"--after: {exc}; pass a cursor printed by this command or the API", EXIT_CONFIG
                )
        if not as_json:
            typer.echo("\t".join((*CHANGE_COLUMNS, "cursor")))
        # Ctrl-C (or SIGTERM from a supervisor) stops between pages, never between printing
        # a change and moving past it: the resume cursor printed last is always exact.
        stop = threading.Event()
        handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
        try:
            while not stop.is_set():
                with transaction(engine, write=False) as store:
                    page = store.list_changes(after=position, flt=flt, limit=_PAGE)
                for row in page.rows:
                    _emit(dict(row), cursors.encode("changes", row["seq"]), as_json)
                position = page.next_seq
                if len(page.rows) == _PAGE:
                    continue
                if not follow:
                    break
                stop.wait(interval)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        typer.echo(f"next cursor: {cursors.encode('changes', position)}", err=True)
    finally:
        engine.dispose()


def _emit(row: dict[str, Any], cursor: str, as_json: bool) -> None:
    from receiver.rows import json_row

    record = {**json_row(row), "cursor": cursor}
    if as_json:
        line = json.dumps(record, ensure_ascii=False)
    else:
        line = "\t".join(_plain(record[c]) for c in (*CHANGE_COLUMNS, "cursor"))
    typer.echo(line)
    sys.stdout.flush()  # a consumer reading a pipe gets each change as it comes


def _plain(value: Any) -> str:
    """Stored text as inert text: no control characters, tabs or newlines to fake columns."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
