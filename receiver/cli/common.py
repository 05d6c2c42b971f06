"""Shared CLI plumbing: settings and database opening, argument parsing, logging set-up, and
the mapping of errors to one line and an exit code (output helpers: ``receiver.cli.output``)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

import typer

from receiver.cli.output import neutralise
from receiver.errors import ConfigError, NovaSinkError, leaf_error
from receiver.values import is_ascii_digits, is_plain_segment
from storage.errors import LeaseHeld, StorageError

if TYPE_CHECKING:
    from receiver.database_settings import DatabaseConfig, DatabaseSettings
    from receiver.settings import Settings
    from storage.db import Engine
    from storage.store import ResultReader, Store

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_TEMPFAIL = 0, 1, 2, 75
EXIT_USAGE = EXIT_CONFIG  # click's code for a usage error; configuration errors share it

JSON_OPTION = typer.Option(False, "--json", help="Print JSON to stdout instead of a table.")


class CliError(Exception):
    """A one-line failure to report on stderr with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    raise CliError(message, code)


def shown(value: str, limit: int = 80) -> str:
    """``value`` quoted for a one-line error message, cut to ``limit`` characters: an
    argument can be any length, and the message must stay one readable line."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"… ({len(value):,} characters)"


def usage_error(message: str) -> NoReturn:
    """A malformed option value: one line, exit 2 (like click's own usage errors)."""
    raise CliError(message, EXIT_USAGE)


def plain_id(value: str, name: str) -> str:
    """``value`` when it can be one segment of a request path to Nova (``/v1/jobs/{jobId}/…``),
    else a usage error naming ``name``: the client would refuse to build that request later
    (``receiver.values.is_plain_segment``), so it is never stored or sent."""
    if not is_plain_segment(value):
        usage_error(
            f"{name}: {value[:40]!r} cannot be a Nova id (empty, '.', '..', or with '/', "
            "'\\' or a control character)"
        )
    return value


def confirm(question: str) -> bool:
    """Ask ``question`` on stderr; True for ``y``/``yes`` on stdin, False for ``n``/``no``, an
    empty answer or the end of input (asks again after anything else).

    Not ``typer.confirm``: the click Typer vendors writes the prompt's last character (a
    space) to stdout, whatever ``err=`` says, and stdout is for the command's data alone.
    """
    while True:
        print(f"{question} [y/N]: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer in {"y", "yes"}:
            return True
        if answer in {"", "n", "no"}:
            return False
        print("Error: invalid input", file=sys.stderr)


# Commands that only read or write the local database: nothing on their path logs through
# structlog, so they skip importing it (a tenth of a second of start-up for cron and
# scripts). Every other command, and any command added later, configures it first thing.
QUIET_COMMANDS = frozenset({"results", "batches", "deliveries", "stats", "db", "secrets", "token"})


# The cyclic garbage collector at start-up. Importing typer, pydantic and SQLAlchemy creates
# a few hundred thousand objects that live until exit, and the collector rescans them again
# and again while it happens: about 40 ms of a 0.3 s `results list`. The console script
# (``main``) pauses it. It resumes, after freezing what start-up made (the collector never
# scans that again; reference counting still frees it), first thing in every command
# outside QUIET_COMMANDS, any of which may run for long, and in the quiet ones once their
# database is open: their imports are done by then, and `deliveries tail` and
# `results changes --follow` keep running after it. A quiet command that stops before
# (a usage error) exits with the collector still paused, which costs nothing.
_START_UP = {"gc_paused": False}


def pause_gc() -> None:
    """Pause the cyclic GC for the start-up of a CLI process (``main`` only, never ``run``)."""
    if gc.isenabled():
        gc.disable()
        _START_UP["gc_paused"] = True


def resume_gc() -> None:
    """End of start-up: freeze what exists and resume the collector ``pause_gc`` paused."""
    if _START_UP["gc_paused"]:
        _START_UP["gc_paused"] = False
        gc.freeze()
        gc.enable()


def configure_cli_logging(command: str | None = None) -> None:
    """Send every log line (stamina's retry warnings included) to stderr, never stdout.

    The format and level come from the settings when they parse; when they do not, the
    command itself reports the bad setting, so the defaults do here.
    """
    if command in QUIET_COMMANDS and "structlog" not in sys.modules:
        return
    import structlog

    from receiver.logs import configure_logging
    from receiver.settings import load_settings

    try:
        cfg = load_settings()
        fmt, level = cfg.resolved_log_format(), cfg.log_level
    except ConfigError:
        fmt, level = ("console" if sys.stderr.isatty() else "json"), "info"
    configure_logging(fmt, level)
    # A logger cached by an earlier invocation in the same process (main(argv) in tests)
    # would keep writing to that invocation's stream; a command logs a few lines at most.
    structlog.configure(cache_logger_on_first_use=False)


def run_guarded(app: typer.Typer, argv: Sequence[str] | None = None) -> int:
    """Run the Typer app; expected errors become one stderr line and an exit code.

    Click runs in standalone mode, so usage errors print click's usage message and exit 2
    as in every click tool; nova-sink's own errors pass through click to here.
    """
    try:
        app(args=None if argv is None else list(argv), prog_name="nova-sink")
    except SystemExit as exc:
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except BaseException as exc:  # noqa: BLE001 - mapped below, anything unforeseen too
        return _report(leaf_error(exc))
    return EXIT_OK


def lease_held_message(exc: LeaseHeld) -> str:
    return f"another reconcile is running ({exc.holder}); try again when it has finished"


def _report(exc: BaseException) -> int:  # noqa: PLR0911 - one exit code per error kind
    match exc:
        case CliError():
            _error(str(exc))
            return exc.code
        case ConfigError():
            _error(f"configuration: {exc}")
            return EXIT_CONFIG
        case LeaseHeld():
            _error(lease_held_message(exc))
            return EXIT_TEMPFAIL
        case NovaSinkError() | StorageError():
            _error(str(exc))
            return EXIT_FAILURE
        case KeyboardInterrupt():
            _error("interrupted")
            return 130
        case SystemExit():
            return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
        case _:
            _error(f"unexpected {type(exc).__name__}: {exc}")
            return EXIT_FAILURE


def _error(message: str) -> None:
    print(f"nova-sink: error: {neutralise(message)}", file=sys.stderr)


def settings() -> Settings:
    from receiver.settings import load_settings

    return load_settings()


def database_settings() -> DatabaseSettings:
    """``DATABASE_URL`` and ``SQLITE_SYNCHRONOUS`` only, for commands that need nothing else:
    read without pydantic, checked as ``settings()`` checks them (other settings are not
    read, so a malformed one does not stop these commands)."""
    from receiver.database_settings import load_database_settings

    return load_database_settings()


def open_engine(cfg: DatabaseConfig, *, create: bool = True) -> Engine:
    """An engine whose schema is current.

    A SQLite file is created and migrated on the spot (it belongs to this tool); any other
    database must be migrated on purpose with ``nova-sink db upgrade``.
    """
    from storage import schema
    from storage.db import make_engine, sqlite_path

    path = sqlite_path(cfg.database_url)
    if path is not None and not create and not path.exists():
        fail(
            f"no database at {path} (nothing received yet?); set DATABASE_URL, "
            "or start `nova-sink serve`"
        )
    engine = make_engine(cfg.database_url, synchronous=cfg.sqlite_synchronous)
    try:
        if schema.current(engine) != schema.HEAD:
            if path is None:
                schema.check(engine)
            schema.upgrade(engine)
    except BaseException:
        engine.dispose()  # a refusal (old schema, unreachable) leaves no connection open
        raise
    resume_gc()  # the command's imports are done: its start-up is over
    return engine


@contextmanager
def _engine(cfg: DatabaseConfig, *, create: bool) -> Iterator[Engine]:
    engine = open_engine(cfg, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def store_for(
    cfg: DatabaseConfig, *, write: bool = False, create: bool = False, commit: bool = True
) -> Iterator[Store]:
    """A store in one transaction; ``commit=False`` rolls it back (``--dry-run``)."""
    from storage.db import transaction

    with (
        _engine(cfg, create=create or write) as engine,
        transaction(engine, write=write, commit=commit) as store,
    ):
        yield store


@contextmanager
def results_reader(cfg: DatabaseConfig) -> Iterator[ResultReader]:
    """``store_for`` for the result reads alone, in one read-only transaction: it imports no
    table model, so that ``results list|show|export`` start fast."""
    from storage.db import connection
    from storage.store import ResultReader

    with _engine(cfg, create=False) as engine, connection(engine, write=False) as conn:
        yield ResultReader(conn)


def utcnow() -> datetime:
    return datetime.now(UTC)


_MAX_AGE = timedelta(days=36_600)  # a century: beyond it a date no longer makes sense


def parse_age(text: str, *, option: str = "duration") -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` → timedelta; anything else is exit 2."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    value, unit = text[:-1], text[-1:].lower()
    if unit not in units or not is_ascii_digits(value) or len(value) > 9:
        usage_error(
            f"{option}: cannot read {text!r}: use a number and one of s, m, h, d, w (e.g. 90d)"
        )
    age = timedelta(**{units[unit]: int(value)})
    if age > _MAX_AGE:
        usage_error(f"{option}: {text!r} is longer than a century")
    return age


def parse_since(text: str, *, option: str = "--since") -> datetime:
    """An ISO timestamp (or unix seconds), or a duration meaning "that long ago"."""
    from receiver.values import parse_timestamp

    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError):
        return utcnow() - parse_age(text, option=option)
