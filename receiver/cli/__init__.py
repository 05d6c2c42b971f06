"""The ``nova-sink`` command line. Composition root of every command.

Exit codes: 0 success; 1 failure or gaps remaining (reconcile); 2 configuration error.
Data goes to stdout, diagnostics to stderr; every listing takes ``--json``.
Heavy modules (starlette, uvicorn, httpx, alembic) are imported inside the commands
that need them, so that cron-driven commands start fast.
"""

from __future__ import annotations

import sys

import typer

from receiver.cli import changes, demo_cmd, inspect, nova_cmds, ops, serve

app = typer.Typer(
    name="nova-sink",
    help="Webhook receiver and result sink for the Nova Embed API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
serve.register(app)
inspect.register(app)
changes.register(inspect.results_app)
ops.register(app)
nova_cmds.register(app)
demo_cmd.register(app)


def main() -> None:
    """Console-script entry point: turns expected errors into one line and an exit code."""
    from receiver.cli.common import run_guarded

    sys.exit(run_guarded(app))
