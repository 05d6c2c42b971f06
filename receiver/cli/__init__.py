"""The ``nova-sink`` command line. Composition root of every command.

Exit codes: 0 success; 1 failure or gaps remaining (reconcile); 2 usage or configuration
error; 75 another reconcile is running (``EX_TEMPFAIL``: try again later).
Data goes to stdout, diagnostics (logs, retries, progress) to stderr; every listing takes
``--json``. Heavy modules (starlette, uvicorn, httpx, alembic) are imported inside the
commands that need them, so that cron-driven commands start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from receiver.cli import changes, deliveries, demo_cmd, doctor, inspect, nova_cmds, ops, serve

app = typer.Typer(
    name="nova-sink",
    help="Webhook receiver and result sink for the Nova Embed API.",
    epilog="\b\nExamples:\n  nova-sink demo\n  nova-sink serve --workers 2\n"
    "  nova-sink reconcile --json >> reconcile.jsonl\n  nova-sink results list --since 24h\n"
    "  nova-sink doctor",
    pretty_exceptions_enable=False,
    # Plain click help and usage errors: typer's rich formatting imports markdown-it and
    # more, a quarter of a second of start-up on every invocation.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"nova-sink {version('nova-sink')}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    show_version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Webhook receiver and result sink for the Nova Embed API."""
    if ctx.invoked_subcommand is None:
        # Bare `nova-sink` asks for help: show it and succeed (git and Stripe CLI do too).
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from receiver.cli.common import QUIET_COMMANDS, configure_cli_logging, resume_gc

    if ctx.invoked_subcommand not in QUIET_COMMANDS:
        resume_gc()  # a command that may run for long: start-up is over (see pause_gc)
    # First thing in every command: until structlog is configured, every library that logs
    # through it (stamina's retry warnings) prints to stdout and corrupts --json output.
    configure_cli_logging(ctx.invoked_subcommand)


serve.register(app)
inspect.register(app)
changes.register(inspect.results_app)
deliveries.register(app)
ops.register(app)
nova_cmds.register(app)
demo_cmd.register(app)
doctor.register(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from receiver.cli.common import run_guarded

    return run_guarded(app, argv)


def main() -> None:
    """Console-script entry point: turns expected errors into one line and an exit code."""
    from receiver.cli.common import pause_gc

    pause_gc()  # until the command's start-up is over (receiver.cli.common explains)
    sys.exit(run())
