"""``serve`` and ``db upgrade|current``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from receiver.cli.common import JSON_OPTION, open_engine, settings
from receiver.cli.output import print_json

if TYPE_CHECKING:  # pydantic is not for --help to import
    from receiver.settings import Settings

db_app = typer.Typer(
    help="Database schema: migrate and inspect.", no_args_is_help=True, rich_markup_mode=None
)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(db_app, name="db")


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    graceful_timeout: int = typer.Option(
        25, help="Seconds to drain in-flight requests on SIGTERM (stays under Nova's 30 s)."
    ),
    max_header_bytes: int = typer.Option(
        32 * 1024,
        min=1024,
        help="Largest request line + headers accepted; larger ones get 431 and are closed.",
    ),
) -> None:
    """Run the webhook receiver (POST /webhooks/nova, /healthz, /readyz, /metrics, /api).

    Request heads are bounded by --max-header-bytes, bodies by WEBHOOK_MAX_BODY_BYTES.
    Behind a reverse proxy, set its limits too (README, "Deploying").

    Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT, in-flight requests drained);
    2 on a configuration error or a PostgreSQL schema that is not current; 3 when a worker
    cannot start (uvicorn's code, e.g. the port is taken).

    \b
    Examples:
      nova-sink serve
      nova-sink serve --host 0.0.0.0 --port 8000 --workers 2
    """
    import os

    import uvicorn

    from receiver.logs import uvicorn_log_config
    from receiver.metrics import MULTIPROC_ENV, prepare_multiprocess_dir, remove_multiprocess_dir
    from receiver.supervision import SUPERVISOR_ENV

    cfg = settings()
    cfg.webhook_secrets()  # fail fast, with exit code 2, before binding a port
    # A SQLite file is migrated here; PostgreSQL must be at the current schema already.
    open_engine(cfg, create=True).dispose()
    metrics_dir, created = None, False
    if workers > 1 or os.environ.get(MULTIPROC_ENV):
        # Several processes: metrics live in files the workers share (set before they start).
        metrics_dir, created = prepare_multiprocess_dir(os.environ.get(MULTIPROC_ENV))
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    if workers > 1:  # each worker stops if serve is killed (receiver.supervision)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    try:
        with _shared_commit_process(cfg, workers):
            uvicorn.run(
                "receiver.app:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                http=_http_protocol(),
                # One limit for both parsers: h11 enforces it itself, httptools through our guard.
                h11_max_incomplete_event_size=max_header_bytes,
                timeout_graceful_shutdown=graceful_timeout,
                # Idle keep-alive connections count against concurrency; Nova opens a new one.
                timeout_keep_alive=5,
                access_log=False,
                server_header=False,
                # uvicorn's own lines (the supervisor's too) in the same format as ours.
                log_config=uvicorn_log_config(cfg.resolved_log_format(), cfg.log_level),
                log_level=cfg.log_level,
            )
    finally:
        os.environ.pop(SUPERVISOR_ENV, None)
        if metrics_dir is not None and created:
            remove_multiprocess_dir(metrics_dir)


@contextmanager
def _shared_commit_process(cfg: Settings, workers: int) -> Iterator[None]:
    """With several workers on SQLite, one commit process for all of them: the file has one
    writer, and a commit process per worker took turns on its lock (receiver.commit_hub)."""
    import os

    from receiver.commit_hub import SHARED_COMMIT_ENV, SharedCommitProcess
    from receiver.commit_process import LaneConfig
    from storage.db import sqlite_path

    if workers == 1 or cfg.ingest_writer != "process" or sqlite_path(cfg.database_url) is None:
        yield
        return
    config = LaneConfig(
        cfg.database_url, cfg.sqlite_synchronous, cfg.resolved_log_format(), cfg.log_level
    )
    with SharedCommitProcess(config) as shared:
        os.environ[SHARED_COMMIT_ENV] = shared.path  # the workers inherit it
        try:
            yield
        finally:
            del os.environ[SHARED_COMMIT_ENV]


def _http_protocol() -> str:
    """httptools with the header-size guard when installed (uvicorn[standard]), else h11."""
    try:
        import httptools  # noqa: F401 - only probing that it is installed
    except ImportError:
        return "h11"
    from receiver.http_guard import PROTOCOL

    return PROTOCOL


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the version this release needs.

    \b
    Example:
      DATABASE_URL=postgresql://nova@db/nova nova-sink db upgrade
    """
    from storage import schema
    from storage.db import make_engine

    cfg = settings()
    engine = make_engine(cfg.database_url, synchronous=cfg.sqlite_synchronous)
    try:
        before = schema.current(engine)
        after = schema.upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"schema already at {after}")
    else:
        typer.echo(f"schema upgraded from {before or 'nothing'} to {after}")


@db_app.command("current")
def db_current(as_json: bool = JSON_OPTION) -> None:
    """Show the schema revision of the database and the one this release needs.

    Read-only: exit 0 when current, 1 otherwise (a missing SQLite file is not created).

    \b
    Example:
      nova-sink db current --json
    """
    from storage import schema
    from storage.db import make_engine, sqlite_path

    cfg = settings()
    path = sqlite_path(cfg.database_url)
    current = None
    # Read-only: a SQLite file that does not exist is reported, never created.
    if path is None or path.exists():
        engine = make_engine(cfg.database_url, synchronous=cfg.sqlite_synchronous)
        try:
            current = schema.current(engine)
        finally:
            engine.dispose()
    state = {"current": current, "head": schema.HEAD, "up_to_date": current == schema.HEAD}
    if as_json:
        print_json(state)
    else:
        typer.echo(f"{current or 'no schema'} (head {schema.HEAD})")
    if current != schema.HEAD:
        raise typer.Exit(1)
