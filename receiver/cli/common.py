"""Shared CLI plumbing: settings and database opening, output, and error-to-exit-code mapping."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from receiver.errors import ConfigError, NovaSinkError
from receiver.rows import json_row, json_value
from receiver.settings import Settings, load_settings
from storage.errors import StorageError

if TYPE_CHECKING:
    from storage.db import Engine
    from storage.store import Store

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

JSON_OPTION = typer.Option(False, "--json", help="Print JSON to stdout instead of a table.")


class CliError(Exception):
    """A one-line failure to report on stderr with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    raise CliError(message, code)


def run_guarded(app: typer.Typer) -> int:  # noqa: PLR0911 - one exit code per error kind
    """Run the Typer app; expected errors become one stderr line and an exit code."""
    try:
        # Without standalone mode click *returns* the code of a typer.Exit instead of raising.
        code = app(standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except ConfigError as exc:
        _error(f"configuration: {exc}")
        return EXIT_CONFIG
    except (NovaSinkError, StorageError) as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the click layer and anything unforeseen
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            _error("aborted")
            return EXIT_FAILURE
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        _error(f"unexpected {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    return code if isinstance(code, int) else EXIT_OK


def _error(message: str) -> None:
    print(f"nova-sink: error: {message}", file=sys.stderr)


def settings() -> Settings:
    return load_settings()


def open_engine(cfg: Settings, *, create: bool = True) -> Engine:
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
    if schema.current(engine) != schema.HEAD:
        if path is None:
            schema.check(engine)
        schema.upgrade(engine)
    return engine


@contextmanager
def store_for(cfg: Settings, *, write: bool = False, create: bool = False) -> Iterator[Store]:
    from storage.db import transaction

    engine = open_engine(cfg, create=create or write)
    try:
        with transaction(engine, write=write) as store:
            yield store
    finally:
        engine.dispose()


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` → timedelta."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    value, unit = text[:-1], text[-1:].lower()
    if unit not in units or not value.isdigit():
        fail(f"cannot read duration {text!r}: use a number and one of s, m, h, d, w (e.g. 90d)")
    return timedelta(**{units[unit]: int(value)})


def parse_since(text: str) -> datetime:
    """An ISO timestamp, or a duration meaning "that long ago"."""
    from receiver.signatures import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError:
        return utcnow() - parse_age(text)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, default=json_value, indent=2))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return str(value)


def print_table(rows: Sequence[Mapping[Any, Any]], columns: Sequence[str], title: str) -> None:
    """A rich table on a TTY, tab-separated text otherwise (easy to pipe into cut/awk)."""
    if not sys.stdout.isatty():
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(_cell(row.get(c)).replace("\t", " ") for c in columns))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} ({len(rows)})", title_justify="left", box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console = Console()
    # Never fold ids and timestamps into unreadable slivers: a table wider than the
    # terminal is printed at its natural width (like psql), and the terminal wraps it.
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        console = Console(width=natural)
    console.print(table)


def write_csv(rows: Iterable[Mapping[Any, Any]], out: Any) -> int:
    writer: Any = None
    count = 0
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row.keys()))
            writer.writeheader()
        record = {
            k: json.dumps(v) if isinstance(v, list) else json_value(v) for k, v in row.items()
        }
        writer.writerow(record)
        count += 1
    return count


def write_jsonl(rows: Iterable[Mapping[Any, Any]], out: Any) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(json_row(row), ensure_ascii=False) + "\n")
        count += 1
    return count
