"""CLI output: JSON, tables that fit the terminal, CSV and JSON Lines; stored text as plain text.

Stored values come from webhooks: they are never read as rich markup, and control
characters are shown escaped, on a terminal and in pipes alike.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import typer

from receiver.rows import json_row, json_value


def print_json(data: Any, *, compact: bool = False) -> None:
    """JSON to stdout: indented for people, or one compact line for logs and cron."""
    if compact:
        typer.echo(json.dumps(data, ensure_ascii=False, default=json_value, separators=(",", ":")))
    else:
        typer.echo(json.dumps(data, ensure_ascii=False, default=json_value, indent=2))


# C0 and C1 controls, DEL, line separators and bidi overrides: ESC sequences could clear
# the screen or plant links, CR/LF would fake extra rows, bidi overrides reorder text.
# Shown escaped, so the value stays recognisable.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def neutralise(text: str) -> str:
    """Stored text made safe for a terminal or a tab-separated line: controls escaped."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def cell(value: Any) -> str:
    """A stored value as one plain line of text (timestamps to the second)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return neutralise("; ".join(str(item) for item in value))
    return neutralise(str(value))


def echo_plain(text: str) -> None:
    """One line of stored text on stdout, control characters neutralised."""
    typer.echo(neutralise(text))


def print_table(
    rows: Sequence[Mapping[Any, Any]],
    columns: Sequence[str],
    title: str,
    *,
    keep_whole: Sequence[str] = (),
) -> None:
    """A rich table on a TTY, tab-separated text otherwise (easy to pipe into cut/awk).

    Cells are plain text either way: stored values are never read as rich markup. On a
    TTY the table fits the terminal: long free-text columns are truncated with an
    ellipsis, while ids, timestamps and ``keep_whole`` columns are never cut.
    """
    if not sys.stdout.isatty():
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(cell(row.get(c)) for c in columns))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    texts = [[Text(cell(row.get(c))) for c in columns] for row in rows]
    whole = [c in keep_whole or c.endswith(("_id", "_at", "id")) for c in columns]
    widths = [
        max([len(column)] + [t[i].cell_len for t in texts]) for i, column in enumerate(columns)
    ]
    console = Console()
    fixed = sum(width + 2 for width, keep in zip(widths, whole, strict=True) if keep)
    limits = _free_widths(widths, whole, console.width - fixed - 2)  # 2: the table edges
    table = Table(title=Text(f"{title} ({len(rows)})"), title_justify="left", box=box.SIMPLE_HEAD)
    for column, keep, width, limit in zip(columns, whole, widths, limits, strict=True):
        # Ids and timestamps never shrink; free text is cut with an ellipsis to fit.
        table.add_column(
            Text(column),
            no_wrap=True,
            overflow="fold" if keep else "ellipsis",
            min_width=width if keep else None,
            max_width=None if keep else limit,
        )
    for row_texts in texts:
        table.add_row(*row_texts)
    if fixed > console.width:
        # Even the ids do not fit: print at natural width (like psql), the terminal wraps.
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=natural)
    console.print(table)


def print_listing(
    rows: Sequence[Mapping[Any, Any]], columns: Sequence[str], title: str, *, as_json: bool
) -> None:
    """A listing command's rows: a JSON array with ``--json``, else ``print_table``'s table."""
    if as_json:
        print_json([json_row(row) for row in rows])
    else:
        print_table(rows, columns, title)


_MIN_FREE = 8  # a free-text column is never cut below this many characters


def _free_widths(widths: Sequence[int], whole: Sequence[bool], room: int) -> list[int]:
    """Widths for the free-text columns that fit in ``room`` (their padding included);
    the narrow ones keep their width and the wide ones share what is left."""
    limits = list(widths)
    free = sorted((w, i) for i, (w, keep) in enumerate(zip(widths, whole, strict=True)) if not keep)
    left = room
    for position, (width, index) in enumerate(free):
        share = left // (len(free) - position) - 2
        limits[index] = max(_MIN_FREE, min(width, share))
        left -= limits[index] + 2
    return limits


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


def print_record(record: dict[str, Any], as_json: bool) -> None:
    """One stored record: JSON, or one ``key  value`` line per field."""
    if as_json:
        print_json(record)
        return
    width = max(len(key) for key in record)
    for key, value in record.items():
        echo_plain(f"{key.ljust(width)}  {'' if value is None else value}")
