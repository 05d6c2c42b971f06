"""``demo`` and ``fake-nova``."""

from __future__ import annotations

import shutil
import sys

import typer

from receiver.cli.common import EXIT_FAILURE, JSON_OPTION, print_json, print_table


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command("fake-nova")(fake_nova)


def demo(
    applications: int = typer.Option(60, "--applications", min=1, max=2500),
    seed: int = typer.Option(7, "--seed", help="Fake Nova's random seed (scores, faults)."),
    drop: float = typer.Option(0.3, "--drop", min=0, max=1, help="Fraction of webhooks lost."),
    duplicate: float = typer.Option(0.2, "--duplicate", min=0, max=1),
    keep: bool = typer.Option(False, "--keep", help="Keep the demo database afterwards."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Zero-configuration tour: fake Nova + receiver + reconcile, then proof they agree."""
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
    port: int = typer.Option(8787, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
    deliver_to: str | None = typer.Option(None, "--deliver-to", help="Receiver webhook URL."),
    secret: str = typer.Option(
        "whsec_fake_nova_secret", "--secret", help="whsec_… used to sign the webhooks."
    ),
    drop: float = typer.Option(0.0, "--drop", min=0, max=1),
    duplicate: float = typer.Option(0.0, "--duplicate", min=0, max=1),
    reorder: bool = typer.Option(False, "--reorder"),
    delay: float = typer.Option(0.0, "--delay", min=0, help="Seconds before each delivery."),
    score_delay: float = typer.Option(2.0, "--score-delay", min=0, help="Seconds to 'score'."),
    failure_rate: float = typer.Option(0.1, "--failure-rate", min=0, max=1),
    api_error_rate: float = typer.Option(0.0, "--api-error-rate", min=0, max=1),
    rate_limit: float = typer.Option(0.0, "--rate-limit", min=0, help="429 above N req/s."),
    slow: float = typer.Option(0.0, "--slow", min=0, help="Seconds added per API answer."),
    malformed_rate: float = typer.Option(0.0, "--malformed-rate", min=0, max=1),
    legacy_header: bool = typer.Option(False, "--legacy-header", help="X-Nova-Signature."),
    construction: str = typer.Option("body", "--construction"),
    uppercase: bool = typer.Option(False, "--uppercase", help="Serve UPPERCASE statuses."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run a local Nova emulator: the API of NOVA.md plus signed webhook delivery."""
    from receiver.cli.common import fail
    from receiver.fake_nova import FakeNovaConfig
    from receiver.fake_nova.emulator import run_fake_nova

    try:
        config = FakeNovaConfig(
            seed=seed,
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
    print(f"fake Nova on http://{host}:{port} (truth: /_fake/truth)", file=sys.stderr)
    run_fake_nova(config, host, port)
