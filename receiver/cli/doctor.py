"""``doctor``: is this installation ready? One line per check, exit 0 or 1."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import typer

from receiver.cli.common import EXIT_FAILURE, JSON_OPTION
from receiver.cli.output import echo_plain, print_json
from receiver.errors import ConfigError

if TYPE_CHECKING:
    from receiver.settings import Settings

Status = Literal["ok", "warn", "fail"]
PLACEHOLDER = "replace_me"  # the secret .env.example ships: copied, never replaced
PROBE_ID = "nova-sink-doctor"  # ids nobody has: Nova answers 404 once the key is accepted


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def register(app: typer.Typer) -> None:
    app.command()(doctor)


def doctor(
    offline: bool = typer.Option(False, "--offline", help="Skip the call to Nova's API."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check settings, database and schema, secrets, the read-API key and Nova's API.

    One line per check (ok, warn or FAIL); exit 0 when nothing failed, 1 otherwise.
    Nothing is written: a missing SQLite file is reported, not created.

    \b
    Examples:
      nova-sink doctor
      nova-sink doctor --offline --json
    """
    checks = run_checks(offline=offline)
    if as_json:
        print_json([asdict(check) for check in checks])
    else:
        for check in checks:
            label = "FAIL" if check.status == "fail" else check.status
            echo_plain(f"{label:<4}  {check.name}: {check.detail}")
    if any(check.status == "fail" for check in checks):
        raise typer.Exit(EXIT_FAILURE)


def run_checks(*, offline: bool) -> list[Check]:
    from receiver.settings import load_settings

    try:
        cfg = load_settings()
    except ConfigError as exc:
        return [Check("settings", "fail", str(exc))]
    checks = [Check("settings", "ok", "parsed")]
    checks.append(_database(cfg))
    checks.append(_secrets(cfg))
    checks.append(_read_key(cfg))
    checks.append(Check("nova api", "warn", "skipped (--offline)") if offline else _nova(cfg))
    return checks


def _database(cfg: Settings) -> Check:
    from storage import schema
    from storage.db import make_engine, sqlite_path
    from storage.errors import StorageError

    path = sqlite_path(cfg.database_url)
    if path is not None and not path.exists():
        return Check("database", "fail", f"no database at {path}: run `nova-sink db upgrade`")
    engine = make_engine(cfg.database_url, synchronous=cfg.sqlite_synchronous)
    try:
        current = schema.current(engine)
    except StorageError as exc:
        return Check("database", "fail", f"unreachable: {exc}")
    finally:
        engine.dispose()
    where = str(path) if path is not None else engine.url.render_as_string(hide_password=True)
    if current != schema.HEAD:
        return Check(
            "database",
            "fail",
            f"{where}: schema at {current or 'nothing'}, this version needs {schema.HEAD}: "
            "run `nova-sink db upgrade`",
        )
    return Check("database", "ok", f"{where}, schema {current}")


def _secrets(cfg: Settings) -> Check:
    try:
        secrets = cfg.webhook_secrets()
    except ConfigError as exc:
        return Check("webhook secrets", "fail", str(exc))
    if any(PLACEHOLDER in secret for secret in secrets):
        return Check(
            "webhook secrets",
            "warn",
            "NOVA_WEBHOOK_SECRETS still holds the .env.example placeholder: copy the "
            "endpoint's secret from Nova's Embed Portal",
        )
    return Check("webhook secrets", "ok", f"{len(secrets)} configured")


def _read_key(cfg: Settings) -> Check:
    if cfg.sink_secret_key is None:
        return Check("read api", "warn", "SINK_SECRET_KEY not set: the read API is disabled")
    try:
        cfg.read_token_key()
    except ConfigError as exc:
        return Check("read api", "fail", str(exc))
    return Check("read api", "ok", "SINK_SECRET_KEY set")


def _nova(cfg: Settings) -> Check:
    import asyncio

    try:
        key = cfg.api_key()
    except ConfigError as exc:
        return Check("nova api", "fail", str(exc))
    return asyncio.run(_probe(cfg.nova_api_url, key, cfg.nova_tenant_id))


async def _probe(api_url: str, key: str, tenant: str | None) -> Check:
    """One authenticated GET of a batch nobody has, no retries: 404 means the key works."""
    from receiver.errors import NovaApiError, NovaHttpError
    from receiver.nova import NovaClient, build_http_client

    async with build_http_client(api_url, timeout=10.0) as http:
        client = NovaClient(http, api_key=key, tenant_id=tenant, max_attempts=1)
        try:
            await client.get_batch(PROBE_ID, PROBE_ID)
        except NovaHttpError as exc:
            if exc.status == 404:
                return Check("nova api", "ok", f"{api_url}: API key accepted")
            if exc.status in (401, 403):
                return Check("nova api", "fail", f"{api_url}: NOVA_API_KEY refused ({exc})")
            if exc.status == 400 and tenant is None:
                return Check("nova api", "fail", f"{api_url}: set NOVA_TENANT_ID ({exc})")
            return Check("nova api", "fail", f"{api_url}: {exc}")
        except NovaApiError as exc:
            return Check("nova api", "fail", f"{api_url}: {exc}")
    return Check("nova api", "ok", f"{api_url}: API key accepted")
