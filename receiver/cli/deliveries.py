"""The webhook inbox: ``deliveries list|tail|show|replay``."""

from __future__ import annotations

from collections.abc import Iterable

import typer

from receiver.cli.common import (
    JSON_OPTION,
    fail,
    open_engine,
    parse_since,
    settings,
    shown,
    store_for,
    utcnow,
)
from receiver.cli.inspect import ALL, LIMIT, SINCE, UNTIL
from receiver.cli.output import cell, print_json, print_listing, print_record
from receiver.rows import json_row

deliveries_app = typer.Typer(help="The webhook inbox.", no_args_is_help=True, rich_markup_mode=None)

DELIVERY_COLUMNS = (
    "id",
    "received_at",
    "event",
    "scoring_job_id",
    "outcome",
    "attempts",
    "webhook_id",
    "signature_scheme",
)


def register(app: typer.Typer) -> None:
    app.add_typer(deliveries_app, name="deliveries")


EVENT = typer.Option(None, "--event", help="Only this event name.")
OUTCOME = typer.Option(None, "--outcome", help="e.g. applied, duplicate, stored-unparsed.")


@deliveries_app.command("list")
def deliveries_list(
    event: str | None = EVENT,
    outcome: str | None = OUTCOME,
    scoring_job: str | None = typer.Option(None, "--scoring-job", help="Only this scoringJobId."),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    limit: int = LIMIT,
    every: bool = ALL,
    as_json: bool = JSON_OPTION,
) -> None:
    """List received deliveries, newest first.

    \b
    Examples:
      nova-sink deliveries list --outcome stored-unparsed
      nova-sink deliveries list --since 1h --json
    """
    with store_for(settings()) as store:
        rows = store.list_deliveries(
            event=event,
            outcome=outcome,
            scoring_job_id=scoring_job,
            since=parse_since(since) if since else None,
            until=parse_since(until, option="--until") if until else None,
            limit=None if every else limit,
        )
    print_listing(rows, DELIVERY_COLUMNS, "deliveries", as_json=as_json)


@deliveries_app.command("tail")
def deliveries_tail(
    lines: int = typer.Option(10, "--lines", "-n", min=0, help="Show the last N first."),
    event: str | None = EVENT,
    outcome: str | None = OUTCOME,
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between polls."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0, help="Stop after this many seconds (default: Ctrl-C)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Follow the inbox: print deliveries as they arrive (like tail -f).

    One tab-separated line per delivery (--json: one JSON line), oldest first.

    \b
    Examples:
      nova-sink deliveries tail
      nova-sink deliveries tail --outcome stored-unparsed --json
    """
    import time

    from storage.db import transaction

    engine = open_engine(settings(), create=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    last: int | None = None
    first = True
    try:
        while True:
            with transaction(engine, write=False) as store:
                rows = store.list_deliveries(
                    event=event,
                    outcome=outcome,
                    after_id=last,
                    limit=lines if first else None,
                )
            if first and not as_json:
                typer.echo("\t".join(DELIVERY_COLUMNS))
            first = False
            for row in reversed(rows):
                last = max(last or 0, int(row["id"]))
                if as_json:
                    print_json(json_row(row), compact=True)
                else:
                    typer.echo("\t".join(cell(row.get(c)) for c in DELIVERY_COLUMNS))
            if last is None:
                last = 0
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a tail ends
    finally:
        engine.dispose()


@deliveries_app.command("show")
def deliveries_show(
    delivery: str = typer.Argument(help="Row id, X-Webhook-Id, or delivery key."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one delivery, with its raw body.

    \b
    Example:
      nova-sink deliveries show msg_2b7f0c1d
    """
    with store_for(settings()) as store:
        row = store.get_delivery(delivery)
    if row is None:
        fail(f"no delivery {shown(delivery)}")
    print_record(json_row(row), as_json)


@deliveries_app.command("replay")
def deliveries_replay(
    delivery: str | None = typer.Argument(None, help="Row id or X-Webhook-Id."),
    all_unparsed: bool = typer.Option(
        False, "--all-unparsed", help="Every delivery stored unparsed."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Apply stored deliveries again with this version's parser (after an upgrade).

    A replay is not a delivery: the original outcome stays, the replay's own is recorded
    beside it (replay_outcome), and the result's delivery count does not change.

    \b
    Examples:
      nova-sink deliveries replay --all-unparsed
      nova-sink deliveries replay msg_2b7f0c1d --json
    """
    from receiver.ingest import replay

    if (delivery is None) == (not all_unparsed):
        fail("name one delivery, or pass --all-unparsed")
    outcomes: dict[str, str] = {}
    with store_for(settings(), write=True) as store:
        bodies: Iterable[tuple[int, bytes | None]]
        if delivery is not None:
            row = store.get_delivery(delivery)
            if row is None:
                fail(f"no delivery {shown(delivery)}")
            # The row just found: a second look-up by key could match another row's id.
            bodies = [(int(row["id"]), row["raw_body"])]
        else:
            bodies = ((i, store.delivery_body(i)) for i in store.unparsed_delivery_ids())
        now = utcnow()
        for delivery_id, body in bodies:
            if body is None:
                outcomes[str(delivery_id)] = "body-purged"
                continue
            outcomes[str(delivery_id)] = replay(store, delivery_id, bytes(body), now=now)
    if as_json:
        print_json(outcomes)
    else:
        for name, outcome in outcomes.items():
            typer.echo(f"{name}\t{outcome}")
        typer.echo(f"replayed {len(outcomes)} deliveries", err=True)
