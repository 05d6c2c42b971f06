"""Prometheus metrics, on a registry of their own per app (no global state between apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
            "Webhook requests answered with an error status, by status.",
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
        self.reconcile_runs = Gauge(
            "nova_sink_reconcile_runs",
            "Reconcile runs recorded in the database.",
            registry=self.registry,
        )
        self.reconcile_fixes = Gauge(
            "nova_sink_reconcile_fixes",
            "Results added or updated by reconcile runs recorded in the database.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
