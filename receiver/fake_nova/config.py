"""``FakeNovaConfig``: every knob of the emulator, with defaults that behave like a healthy Nova."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from receiver.signatures import Construction

StatusCase = Literal["lower", "upper"]


@dataclass(frozen=True, slots=True)
class FakeNovaConfig:
    """What fake Nova scores, how it delivers webhooks, and which faults it injects.

    Fractions are probabilities in ``[0, 1]``, drawn from RNGs seeded with ``seed``, so a
    run is reproducible. ``status_case="upper"`` serves the middle docs generation
    (``COMPLETED``, ``PARTIAL_FAILURE``…), ``"lower"`` the newest (``completed``, ``failed``…).
    """

    # -- API --------------------------------------------------------------------------------
    api_key: str | None = None  # None: any ``sk_test_…`` / ``sk_live_…`` key is accepted
    seed: int = 0
    # Mixed into the id generator only: a fresh salt per server start gives new batch and
    # scoring job ids (a restart must not reuse ids a receiver's database already holds),
    # while scores and faults stay those of ``seed``.
    id_salt: str = ""
    status_case: StatusCase = "lower"
    score_delay: float = 0.0  # seconds from queueing to a terminal status (0: at once)
    failure_rate: float = 0.1  # fraction of accepted applications whose scoring fails

    # -- webhooks ---------------------------------------------------------------------------
    deliver_to: str | None = None  # the receiver's URL; None: no webhooks are sent
    secret: str = "whsec_fake_nova_secret"  # noqa: S105 -- a well-known test secret
    legacy_header: bool = False  # ``X-Nova-Signature: <hex>`` and no id/timestamp headers
    construction: Construction = "body"  # or a timestamp-covering construction
    batch_events: bool = True  # ``batch.completed`` for v1 batches (legacy batches never)
    drop: float = 0.0  # fraction of deliveries never sent
    duplicate: float = 0.0  # fraction sent twice with the same ``X-Webhook-Id``
    resend: float = 0.0  # fraction re-sent later under a new id ("portal re-send")
    reorder: bool = False  # shuffle the delivery order within ``reorder_window``
    reorder_window: int = 0  # 0: shuffle everything that is ready at once
    delay: float = 0.0  # seconds between an event and its first delivery attempt
    delivery_attempts: int = 5  # per delivery, like Nova; a non-2xx answer is a failure
    delivery_backoff: float = 0.5  # seconds before the first retry, doubling after
    delivery_timeout: float = 10.0  # per attempt (when fake Nova builds its own client)

    # -- API faults -------------------------------------------------------------------------
    api_error_rate: float = 0.0  # fraction of API answers replaced by a retryable 500/503
    rate_limit: float = 0.0  # requests per second before 429 (0: unlimited)
    slow: float = 0.0  # seconds added to every API answer
    malformed_rate: float = 0.0  # fraction of 2xx answers truncated or of the wrong shape

    def __post_init__(self) -> None:
        for name in ("failure_rate", "drop", "duplicate", "resend", "api_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.malformed_rate < 0 or self.malformed_rate > 1:
            raise ValueError(f"malformed_rate must be between 0 and 1, not {self.malformed_rate}")
        for name in ("score_delay", "delay", "delivery_backoff", "slow", "rate_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.delivery_attempts < 1:
            raise ValueError("delivery_attempts must be at least 1")
        if not self.secret.startswith("whsec_"):
            raise ValueError("secret must start with whsec_")
