"""``demo`` and ``fake-nova``."""

from __future__ import annotations

import functools
import shutil
import sys
from typing import TYPE_CHECKING

import typer

from receiver.cli.common import EXIT_FAILURE, JSON_OPTION
from receiver.cli.output import print_json, print_table

if TYPE_CHECKING:
    from receiver.fake_nova import Attempt


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command("fake-nova")(fake_nova)


def demo(
    applications: int = typer.Option(
        60, "--applications", min=1, max=2500, help="How many candidates to submit."
    ),
    seed: int = typer.Option(7, "--seed", help="Fake Nova's random seed (scores, faults)."),
    drop: float = typer.Option(0.3, "--drop", min=0, max=1, help="Fraction of webhooks lost."),
    duplicate: float = typer.Option(
        0.2, "--duplicate", min=0, max=1, help="Fraction of webhooks sent twice."
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the demo database afterwards."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Zero-configuration tour: fake Nova + receiver + reconcile, then proof they agree.

    \b
    Examples:
      nova-sink demo
      nova-sink demo --applications 200 --drop 0.5 --keep
    """
    import asyncio

    from receiver.demo import default_workdir, run_demo
    from receiver.logs import configure_logging

    configure_logging("console", "warning")
    workdir = default_workdir()

    def say(line: str) -> None:
        if not as_json:
            typer.echo(line)

    try:
        result = asyncio.run(
            run_demo(
                workdir,
                applications=applications,
                seed=seed,
                drop=drop,
                duplicate=duplicate,
                say=say,
            )
        )
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    comparison = result.comparison
    rows = [
        {
            "batch": b.batch_id,
            "status": b.nova_status,
            "jobs": b.nova_jobs,
            "stored": b.local_jobs,
            "identical": b.matching,
            "rejected": f"{b.nova_rejected}/{b.local_rejected}",
            "equal": "yes" if b.equal else "NO",
        }
        for b in comparison.batches
    ]
    if as_json:
        print_json(
            {
                "converged": comparison.converged,
                "batches": rows,
                "mismatches": [vars(m) for m in comparison.mismatches[:50]],
                "reconcile": result.summary.as_dict(),
                "database": str(result.database) if keep else None,
            }
        )
    else:
        typer.echo(
            "4. local store compared with fake Nova's truth, field by field "
            "(jobs at Nova, results stored, identical in every field, rejected Nova/local):"
        )
        print_table(rows, list(rows[0].keys()) if rows else [], "batches")
        for mismatch in comparison.mismatches[:10]:
            typer.echo(
                f"   {mismatch.scoring_job_id} {mismatch.column}: "
                f"Nova {mismatch.nova!r} != local {mismatch.local!r}",
                err=True,
            )
        total = sum(b.nova_jobs for b in comparison.batches)
        if comparison.converged:
            typer.echo(
                f"CONVERGED: all {total} scoring jobs and {result.rejected} rejected applications "
                f"match Nova ({result.stored_by_webhooks} arrived by webhook, "
                f"{result.summary.results_added + result.summary.results_updated} by reconcile)"
            )
        else:
            typer.echo(f"NOT CONVERGED: {len(comparison.mismatches)} differences", err=True)
        if keep:
            typer.echo(f"kept {result.database}; inspect it with sqlite3, or with")
            typer.echo(f"  DATABASE_URL=sqlite:///{result.database} nova-sink results list")
    if not comparison.converged:
        raise typer.Exit(EXIT_FAILURE)


def fake_nova(
    port: int = typer.Option(8787, "--port", help="TCP port of the emulated API."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    deliver_to: str | None = typer.Option(
        None, "--deliver-to", help="Receiver webhook URL; without it no webhooks are sent."
    ),
    secret: str | None = typer.Option(
        None,
        "--secret",
        help="whsec_… that signs the webhooks (default: the first of NOVA_WEBHOOK_SECRETS, "
        "else whsec_fake_nova_secret).",
        show_default=False,
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="The only API key to accept (default: any sk_test_… or sk_live_… key).",
        show_default=False,
    ),
    drop: float = typer.Option(0.0, "--drop", min=0, max=1, help="Fraction of webhooks lost."),
    duplicate: float = typer.Option(
        0.0, "--duplicate", min=0, max=1, help="Fraction sent twice under one X-Webhook-Id."
    ),
    reorder: bool = typer.Option(False, "--reorder", help="Shuffle the delivery order."),
    delay: float = typer.Option(0.0, "--delay", min=0, help="Seconds before each delivery."),
    score_delay: float = typer.Option(
        2.0, "--score-delay", min=0, help="Seconds from submission to a result."
    ),
    failure_rate: float = typer.Option(
        0.1, "--failure-rate", min=0, max=1, help="Fraction of scoring jobs that fail."
    ),
    api_error_rate: float = typer.Option(
        0.0, "--api-error-rate", min=0, max=1, help="Fraction of API answers that are 500/503."
    ),
    rate_limit: float = typer.Option(
        0.0, "--rate-limit", min=0, help="Answer 429 above N requests/s (0: no limit)."
    ),
    slow: float = typer.Option(0.0, "--slow", min=0, help="Seconds added to every API answer."),
    malformed_rate: float = typer.Option(
        0.0, "--malformed-rate", min=0, max=1, help="Fraction of 2xx bodies truncated or wrong."
    ),
    legacy_header: bool = typer.Option(
        False, "--legacy-header", help="Sign with the oldest header, X-Nova-Signature."
    ),
    construction: str = typer.Option(
        "body", "--construction", help="Signed message: body, timestamp.body, id.timestamp.body."
    ),
    uppercase: bool = typer.Option(
        False, "--uppercase", help="Serve UPPERCASE statuses (the middle docs generation)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of scores and faults (reproducible)."),
    same_ids: bool = typer.Option(
        False, "--same-ids", help="Reuse the ids of the previous start with this seed."
    ),
) -> None:
    """Run a local Nova emulator: Nova's scoring API plus signed webhook delivery.

    Prints one line per delivery attempt (event, id, status, the receiver's outcome,
    milliseconds). Every start gives new batch and scoring job ids (unless --same-ids).

    \b
    Examples:
      nova-sink fake-nova --deliver-to http://127.0.0.1:8000/webhooks/nova
      nova-sink fake-nova --deliver-to http://127.0.0.1:8000/webhooks/nova --drop 0.3
      NOVA_API_URL=http://127.0.0.1:8787 NOVA_API_KEY=sk_test_local nova-sink reconcile
    """
    import uuid

    from receiver.cli.common import fail, settings
    from receiver.errors import ConfigError
    from receiver.fake_nova import FakeNovaConfig
    from receiver.fake_nova.emulator import run_fake_nova
    from receiver.signatures import fingerprint

    source = "--secret"
    if secret is None:
        try:
            secret, source = settings().webhook_secrets()[0], "NOVA_WEBHOOK_SECRETS"
        except ConfigError:
            secret, source = "whsec_fake_nova_secret", "the built-in test secret"
    try:
        config = FakeNovaConfig(
            api_key=api_key,
            seed=seed,
            id_salt="" if same_ids else uuid.uuid4().hex,
            status_case="upper" if uppercase else "lower",
            score_delay=score_delay,
            failure_rate=failure_rate,
            deliver_to=deliver_to,
            secret=secret,
            legacy_header=legacy_header,
            construction=construction,  # type: ignore[arg-type]
            drop=drop,
            duplicate=duplicate,
            reorder=reorder,
            delay=delay,
            api_error_rate=api_error_rate,
            rate_limit=rate_limit,
            slow=slow,
            malformed_rate=malformed_rate,
        )
    except ValueError as exc:
        fail(str(exc), code=2)
    say = functools.partial(print, file=sys.stderr, flush=True)
    say(f"fake Nova on http://{host}:{port} (truth: /_fake/truth)")
    say(f"  set NOVA_API_URL=http://{host}:{port}")
    say(
        "  API key: the one given with --api-key"
        if api_key
        else "  API key: any sk_test_… or sk_live_… key (e.g. NOVA_API_KEY=sk_test_local)"
    )
    if deliver_to:
        say(f"  webhooks → {deliver_to}, signed with {source} (fingerprint {fingerprint(secret)})")
    else:
        say("  webhooks: none (give --deliver-to URL)")
    run_fake_nova(config, host, port, log_level="warning", on_attempt=print_attempt)


def print_attempt(attempt: Attempt) -> None:
    """``→ score.completed sj_… ← 200 applied 4 ms`` on stdout, as it happens."""
    delivery = attempt.delivery
    answer = str(attempt.status) if attempt.status else "no answer"
    retry = f" (attempt {delivery.attempts})" if delivery.attempts > 1 else ""
    print(
        f"→ {delivery.event} {delivery.subject} [{delivery.webhook_id}]{retry} "
        f"← {answer} {attempt.outcome or ''} {attempt.ms:.0f} ms".replace("  ", " "),
        flush=True,
    )
