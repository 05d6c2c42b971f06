"""A client-side async token bucket, so that a normal reconcile run never provokes a 429.

Hand-written on purpose: none of the chosen libraries (httpx, stamina) limits request rates,
and a dozen lines with an injected clock and sleep are easier to test than another
dependency. The clock and sleep are parameters so tests verify the bound without wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, with bursts of at most ``burst``.

    The default burst of one spaces requests evenly (``1/rate`` apart): a full bucket plus a
    second's refill could otherwise exceed a per-second limit on the server's side. Callers
    are served in arrival order (``asyncio.Lock`` is FIFO); the lock is held while waiting.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (use no limiter at all to disable it)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = burst
        self._last: float | None = None
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; return the seconds waited."""
        async with self._lock:
            self._refill(self._monotonic())
            waited = 0.0
            if self._tokens < 1.0:
                waited = (1.0 - self._tokens) / self.rate
                await self._sleep(waited)
                self._refill(self._monotonic())
            # A sleep that wakes a hair early leaves the bucket slightly negative, which the
            # next caller pays back: the long-run rate stays bounded either way.
            self._tokens -= 1.0
            return waited
