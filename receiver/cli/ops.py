"""Operations: ``send-test-webhook``, ``purge``, ``erase``, ``token create``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, assert_never

import typer

from receiver.cli.common import (
    EXIT_FAILURE,
    JSON_OPTION,
    confirm,
    fail,
    parse_age,
    settings,
    store_for,
    usage_error,
    utcnow,
)
from receiver.cli.output import echo_plain, neutralise, print_json
from receiver.vocabulary import EventName, known_event

EVENTS = tuple(EventName)


def register(app: typer.Typer) -> None:
    app.command("send-test-webhook")(send_test_webhook)
    app.command()(purge)
    app.command()(erase)
    token_app = typer.Typer(help="Read-API tokens.", no_args_is_help=True, rich_markup_mode=None)
    token_app.command("create")(token_create)
    app.add_typer(token_app, name="token")


def sample_event(
    event: EventName, *, now: datetime, scoring_job_id: str | None = None
) -> dict[str, Any]:
    """A realistic body for ``event`` (NOVA.md §1), stamped ``now``."""
    from storage.store.batches import TEST_TENANT

    stamp = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    sj = scoring_job_id or f"sj_test_{int(now.timestamp())}"
    # Marked as test data by its tenant: reconcile never asks Nova about it.
    ids = {"tenantId": TEST_TENANT, "scoringJobId": sj, "jobId": "job-test"}
    match event:
        case EventName.SCORE_COMPLETED:
            return _sample_completed(ids, stamp)
        case EventName.SCORE_FAILED:
            error = {"code": "RESUME_FETCH_FAILED", "message": "Test failure"}
            return {
                **ids,
                "event": event.value,
                "applicationId": "app-test",
                "error": error,
                "failedAt": stamp,
            }
        case EventName.BATCH_COMPLETED:
            return {
                "event": event.value,
                "tenantId": TEST_TENANT,
                "batchId": f"batch_test_{int(now.timestamp())}",
                "jobId": "job-test",
                "totalJobs": 1,
                "completedJobs": 1,
                "failedJobs": 0,
                "status": "completed",
                "completedAt": stamp,
            }
        case EventName.TEST:
            return {"event": "test", "message": "Test webhook from nova-sink", "timestamp": stamp}
        case unhandled:
            assert_never(unhandled)


def _sample_completed(ids: dict[str, Any], stamp: str) -> dict[str, Any]:
    assessment = {
        "verdict": "Test assessment from nova-sink send-test-webhook.",
        "strengths": ["Sent by a human"],
        "concerns": [],
        "interviewFocus": ["Does the endpoint answer 200?"],
    }
    return {
        "event": EventName.SCORE_COMPLETED.value,
        **ids,
        "applicationId": "app-test",
        "result": {"score": 7, "assessment": assessment},
        "completedAt": stamp,
    }


def _event_header(event: str) -> str:
    """The ``X-Webhook-Event`` value for ``event`` (an unknown one spelled Nova's way)."""
    known = known_event(event)
    return known.header if known is not None else event.upper().replace(".", "_")


def send_test_webhook(
    url: str = typer.Argument(help="Endpoint, e.g. http://127.0.0.1:8000/webhooks/nova"),
    event: str = typer.Option("test", "--event", help="One of: " + ", ".join(EVENTS)),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Send this file's bytes as the body instead of a sample event (any JSON, or not).",
        show_default=False,
    ),
    secret: str | None = typer.Option(
        None,
        "--secret",
        envvar="NOVA_SINK_TEST_SECRET",
        help="whsec_… to sign with (default: the first of NOVA_WEBHOOK_SECRETS).",
        show_default=False,
    ),
    scoring_job_id: str | None = typer.Option(
        None, "--scoring-job-id", help="scoringJobId of the sample score event."
    ),
    webhook_id: str | None = typer.Option(
        None, "--webhook-id", help="X-Webhook-Id to send (default: a new wh_test_… id)."
    ),
    repeat: int = typer.Option(
        1, "--repeat", min=1, max=100, help="Send N times with one X-Webhook-Id (see duplicate)."
    ),
    legacy_header: bool = typer.Option(False, "--legacy-header", help="Use X-Nova-Signature."),
    construction: str = typer.Option(
        "body", "--construction", help="Signed message: body, timestamp.body, id.timestamp.body."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign an event like Nova does and POST it to URL; exit 0 when every answer is 2xx.

    Sample events are marked as test data (tenant nova-sink-test): the receiver stores them,
    and reconcile never asks Nova about them. Prints, per send, the status, the receiver's
    answer and the ids sent (--json: one JSON line per send).

    \b
    Examples:
      nova-sink send-test-webhook http://127.0.0.1:8000/webhooks/nova
      nova-sink send-test-webhook URL --event score.completed --repeat 2
      nova-sink send-test-webhook URL --data examples/score-completed.json
    """
    import uuid

    import httpx

    from receiver.signatures import CONSTRUCTIONS, sign

    chosen = known_event(event)
    if chosen is None:
        usage_error(f"--event must be one of {', '.join(EVENTS)}")
    if construction not in CONSTRUCTIONS:
        usage_error(f"--construction must be one of {', '.join(CONSTRUCTIONS)}")
    key = secret or settings().webhook_secrets()[0]
    now = utcnow()
    if data is not None:
        try:
            body = data.read_bytes()
        except OSError as exc:
            usage_error(f"--data: cannot read {data}: {exc.strerror or exc}")
        payload = _loads(body)
        event = str(payload.get("event") or event)
    else:
        payload = sample_event(chosen, now=now, scoring_job_id=scoring_job_id)
        body = json.dumps(payload).encode()
    sent_id = webhook_id or f"wh_test_{uuid.uuid4().hex}"
    ids = {k: payload[k] for k in ("scoringJobId", "batchId") if isinstance(payload.get(k), str)}
    failed = False
    for _ in range(repeat):
        headers = sign(
            key,
            body,
            construction=construction,
            legacy_header=legacy_header,
            webhook_id=sent_id,
            timestamp=utcnow(),
            event_header=_event_header(event),
        )
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            fail(f"could not reach {url}: {exc}")
        failed = failed or not response.is_success
        answer = response.text[:2000]
        if as_json:
            record = {"status_code": response.status_code, "body": answer, "event": event}
            print_json({**record, "webhook_id": sent_id, **ids}, compact=True)
        else:
            sent = " ".join([event, *ids.values(), f"X-Webhook-Id {sent_id}"])
            echo_plain(f"{response.status_code} {answer}  ({sent})")
    if failed:
        raise typer.Exit(1)


def _loads(body: bytes) -> dict[str, Any]:
    """The JSON object of a ``--data`` body, or {} for anything else (sent as it is)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def purge(
    older_than: str = typer.Option(..., "--older-than", help="Age such as 90d, 12h."),
    include_unparsed: bool = typer.Option(
        False,
        "--include-unparsed",
        help="Also drop bodies stored unparsed (their only copy: no replay afterwards).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Drop raw delivery bodies older than the given age (the rows and results stay).

    Bodies of deliveries stored unparsed are kept unless --include-unparsed: they are the
    only copy of what Nova sent, for `deliveries replay` after an upgrade.

    \b
    Examples:
      nova-sink purge --older-than 90d --dry-run
      nova-sink purge --older-than 90d --yes
    """
    age = parse_age(older_than, option="--older-than")
    if not (yes or dry_run) and not confirm(f"Drop raw delivery bodies older than {older_than}?"):
        fail("nothing purged", EXIT_FAILURE)
    now = utcnow()
    with store_for(settings(), write=True, commit=not dry_run) as store:
        purged = store.purge_bodies(
            older_than=now - age, now=now, include_unparsed=include_unparsed
        )
    if as_json:
        print_json({"purged": purged, "dry_run": dry_run})
    elif dry_run:
        typer.echo(f"dry run: would purge {purged} raw bodies older than {older_than}")
    else:
        typer.echo(f"purged {purged} raw bodies older than {older_than}")


def erase(
    application_id: str = typer.Option(..., "--application-id", help="Nova applicationId."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove every trace of one candidate (results, deliveries, rejections).

    A tombstone keeps the application id (nothing else), so that reconcile never imports
    the candidate again from Nova.

    \b
    Examples:
      nova-sink erase --application-id app-042 --dry-run
      nova-sink erase --application-id app-042 --yes
    """
    if not (yes or dry_run) and not confirm(
        f"Erase every record of application {neutralise(application_id)}?"
    ):
        fail("nothing erased", EXIT_FAILURE)
    with store_for(settings(), write=True, commit=not dry_run) as store:
        removed = store.erase_application(application_id, now=utcnow())
    if as_json:
        print_json({**removed, "dry_run": dry_run})
        return
    parts = ", ".join(f"{table}: {count}" for table, count in removed.items())
    verb = "dry run: would erase" if dry_run else "erased"
    echo_plain(f"{verb} application {application_id} ({parts})")


def token_create(
    scope: str = typer.Option("read", "--scope", help="What the token may do: read."),
    ttl: str = typer.Option("1h", "--ttl", help="Lifetime such as 1h, 30d (at most 366d)."),
    ui: bool = typer.Option(
        False, "--ui", help="Print a one-time dashboard sign-in link; the session lasts --ttl."
    ),
    url: str = typer.Option(
        "http://127.0.0.1:8000", "--url", help="With --ui: where the receiver is served."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a bearer token for the read API (GET /api/...), or with --ui a dashboard
    sign-in link.

    \b
    Examples:
      nova-sink token create --ttl 30d
      nova-sink token create --ui --ttl 8h --url https://sink.example.com
    """
    from receiver.tokens import create_token

    if ui:
        _ui_link(parse_age(ttl, option="--ttl"), url, as_json=as_json)
        return
    key = settings().read_token_key()
    lifetime = parse_age(ttl, option="--ttl")
    try:
        token = create_token(key, scope=scope, ttl=lifetime)
    except ValueError as exc:
        usage_error(str(exc))
    expires = (utcnow() + lifetime).isoformat(timespec="seconds").replace("+00:00", "Z")
    if as_json:
        print_json({"token": token, "scope": scope, "expires_at": expires})
    else:
        typer.echo(token)
        typer.echo(f"scope {scope}, expires {expires}", err=True)


def _ui_link(session_ttl: timedelta, url: str, *, as_json: bool) -> None:
    from receiver.ui.auth import LINK_TTL, create_login_token, login_url, ui_keys

    if not url.startswith(("http://", "https://")):
        fail("--url must start with http:// or https://", code=2)
    cfg = settings()
    cfg.read_token_key()  # a one-line configuration error when SINK_SECRET_KEY is unusable
    keys = ui_keys(cfg)
    assert keys is not None
    now = utcnow()
    try:
        token = create_login_token(keys, session_ttl=session_ttl, now=now)
    except ValueError as exc:
        fail(f"--ttl: {exc}", code=2)
    link = login_url(url, token)
    expires = (now + LINK_TTL).isoformat(timespec="seconds").replace("+00:00", "Z")
    if as_json:
        print_json({"url": link, "link_expires_at": expires, "session_ttl": str(session_ttl)})
    else:
        typer.echo(link)
        typer.echo(
            f"one-time link, open it before {expires}; the session lasts {session_ttl}", err=True
        )
