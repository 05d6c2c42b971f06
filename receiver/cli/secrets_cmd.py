"""``secrets status|unpin``: the configured webhook secrets and their signature pins."""

from __future__ import annotations

import typer

from receiver.cli.common import JSON_OPTION, fail, settings, shown, store_for
from receiver.cli.output import print_json, print_listing

secrets_app = typer.Typer(
    help="Configured webhook secrets and their signature pins.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SECRET_COLUMNS = (
    "position",
    "fingerprint",
    "construction",
    "pinned",
    "pinned_at",
    "last_verified",
)


@secrets_app.command("status")
def secrets_status(as_json: bool = JSON_OPTION) -> None:
    """Each configured secret (by fingerprint): its construction, and the last delivery it verified.

    pinned: configured (NOVA_SIGNATURE_CONSTRUCTION), learned (first verified delivery), unpinned.

    Example: nova-sink secrets status --json
    """
    from receiver.pinning import describe
    from receiver.signatures import fingerprint, setting_name

    cfg = settings()
    fingerprints = [fingerprint(secret) for secret in cfg.webhook_secrets()]
    with store_for(cfg) as store:
        last = store.last_delivery_by_fingerprint()
        learned = store.signature_pins()
    pins = describe(
        fingerprints,
        cfg.nova_signature_construction,
        {name: pin.construction for name, pin in learned.items()},
    )
    rows = []
    for position, pin in enumerate(pins, start=1):
        stored = learned.get(pin.fingerprint) if pin.source == "learned" else None
        rows.append(
            {
                "position": position,
                "fingerprint": pin.fingerprint,
                "construction": setting_name(pin.construction) if pin.construction else None,
                "pinned": pin.source,
                "pinned_at": stored.pinned_at if stored else None,
                "last_verified": last.get(pin.fingerprint),
            }
        )
    print_listing(rows, SECRET_COLUMNS, "secrets", as_json=as_json)


@secrets_app.command("unpin")
def secrets_unpin(
    fingerprint: str | None = typer.Argument(
        None, help="The secret's fingerprint (fp_…), as `secrets status` shows it."
    ),
    every: bool = typer.Option(False, "--all", help="Clear every learned pin."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget a secret's learned construction: the next delivery it verifies pins it again.

    Use it after Nova changed how it signs, or to undo a wrong first pin.

    Running `serve` processes keep the pins they hold: restart them after unpinning.

    Examples: nova-sink secrets unpin fp_0123456789 / nova-sink secrets unpin --all
    """
    if (fingerprint is None) == (not every):
        fail("name one fingerprint, or pass --all", 2)
    with store_for(settings(), write=True) as store:
        removed = store.remove_pins(None if every else [fingerprint or ""])
    if fingerprint is not None and not removed:
        fail(f"no learned pin for {shown(fingerprint)} (see `nova-sink secrets status`)")
    if as_json:
        print_json({"unpinned": removed})
        return
    for name in removed:
        typer.echo(f"unpinned {name}")
    typer.echo(
        f"cleared {len(removed)} pin(s); restart `nova-sink serve` so running workers forget them",
        err=True,
    )
