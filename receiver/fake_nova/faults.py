"""API fault injection for fake Nova: 5xx, 429 with rate-limit headers, slowness, bad bodies.

Every decision is drawn from one RNG seeded from the config, so a run with the same
requests in the same order fails the same way.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from receiver.fake_nova.config import FakeNovaConfig


@dataclass
class ApiFaultStats:
    """How many answers each fault replaced."""

    requests: int = 0
    server_errors: int = 0
    rate_limited: int = 0
    malformed: int = 0


class ApiFaults:
    """Decides, per API request, whether and how to misbehave."""

    def __init__(
        self,
        config: FakeNovaConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._rng = random.Random(f"api-faults:{config.seed}")  # noqa: S311 -- seeded on purpose: reproducible fakes, not secrets
        self._monotonic = monotonic
        self._wall = wall
        self._window = -1
        self._count = 0
        self.stats = ApiFaultStats()

    def rate_limit_headers(self, bucket: str) -> tuple[bool, dict[str, str]]:
        """Count this request in the current one-second window: ``(allowed, headers)``.

        Nova's mid/new limits are per-second buckets; a fixed window is close enough for a
        client that must simply never exceed its rate.
        """
        self.stats.requests += 1
        limit = self.config.rate_limit
        if limit <= 0:
            return True, {}
        window = int(self._monotonic())
        if window != self._window:
            self._window, self._count = window, 0
        self._count += 1
        allowed = self._count <= limit
        headers = {
            "X-RateLimit-Limit": str(int(limit)),
            "X-RateLimit-Remaining": str(max(0, int(limit) - self._count)),
            "X-RateLimit-Reset": str(int(self._wall()) + 1),
            "X-RateLimit-Bucket": bucket,
        }
        if not allowed:
            self.stats.rate_limited += 1
            headers["Retry-After"] = "1"
        return allowed, headers

    def server_error(self) -> int | None:
        """500 or 503 for a fraction ``api_error_rate`` of requests, else None."""
        if self.config.api_error_rate and self._rng.random() < self.config.api_error_rate:
            self.stats.server_errors += 1
            return self._rng.choice((500, 503))
        return None

    def malform(self, body: bytes) -> bytes:
        """For a fraction ``malformed_rate`` of 2xx bodies: truncated JSON or a wrong shape."""
        if not self.config.malformed_rate or self._rng.random() >= self.config.malformed_rate:
            return body
        self.stats.malformed += 1
        if self._rng.random() < 0.5:
            return body[: max(1, len(body) // 2)]
        return json.dumps({"batch": "unexpected", "scoringJobs": 42}).encode()
