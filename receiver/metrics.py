"""Prometheus metrics, on a registry of their own per app (no global state between apps).

Under ``serve --workers N`` every worker is its own process: ``serve`` then points
``PROMETHEUS_MULTIPROC_DIR`` at a directory of its own (emptied at start) before the workers
start, prometheus-client keeps every value in files there, and ``render`` sums all the
workers' files, so whichever worker answers a scrape shows the whole server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The receiver's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "nova_sink_deliveries",
            "Verified webhook deliveries by event and outcome.",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.verification_failures = Counter(
            "nova_sink_verification_failures",
            "Webhook requests rejected with 401, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "nova_sink_rejected_requests",
            "Requests refused with an error status, by status (431, request head too large:"
            " any path; the others: the webhook endpoint).",
            ["status"],
            registry=self.registry,
        )
        self.abandoned = Counter(
            "nova_sink_abandoned_requests",
            "Webhook requests whose client disconnected before the body was read (no answer).",
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "nova_sink_ingest_seconds",
            "Time from request start to response for verified deliveries.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        # Read from the database at each scrape: every worker sees the same totals, and the
        # latest reading is the truth (not a sum over workers).
        self.reconcile_runs = Gauge(
            "nova_sink_reconcile_runs",
            "Reconcile runs recorded in the database.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.reconcile_fixes = Gauge(
            "nova_sink_reconcile_fixes",
            "Results added or updated by reconcile runs recorded in the database.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )

    def render(self) -> bytes:
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


_TEMP_PREFIX = "nova-sink-metrics-"


def prepare_multiprocess_dir(configured: str | None) -> tuple[Path, bool]:
    """The directory the workers share, emptied; ``(path, created)``.

    A configured directory is emptied of the files of an earlier run (their counts would
    be added to this run's); otherwise a new temporary one is made (``created``: remove it
    at exit), named after this process. A ``serve`` killed with -9 cannot remove its own:
    those of this user whose ``serve`` is gone are removed here (``remove_orphaned_dirs``).
    """
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    remove_orphaned_dirs(Path(tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-")), True


def remove_orphaned_dirs(parent: Path) -> list[Path]:
    """Remove the temporary metrics directories in ``parent`` that belong to this user and
    to a ``serve`` no longer running (the process id in the name); returns them."""
    removed = []
    for path in parent.glob(f"{_TEMP_PREFIX}*-*"):
        pid = path.name.removeprefix(_TEMP_PREFIX).split("-", 1)[0]
        try:
            owned = path.is_dir() and path.stat().st_uid == os.getuid()
        except OSError:
            continue
        if owned and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: it may be ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_multiprocess_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
