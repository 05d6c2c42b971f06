"""Read-API bearer tokens: signed and expiring, with itsdangerous. The clock is a parameter.

Keys come newest first (``SINK_SECRET_KEY=new,old``): tokens are signed with the newest
and verified with every one, so a key can be rotated without cutting off issued tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

SCOPES = frozenset({"read"})
MAX_TTL = timedelta(days=366)
_SALT = "nova-sink.read-api.v1"


class TokenError(Exception):
    """A token is malformed, forged, expired, or lacks the scope; ``reason`` says which
    (for the log only: the client gets one generic answer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Token:
    scope: str
    expires_at: datetime


def _serializer(keys: str | Sequence[str]) -> URLSafeTimedSerializer:
    newest_first = [keys] if isinstance(keys, str) else list(keys)
    if not newest_first:
        raise ValueError("no token key")
    # itsdangerous signs with the *last* key of its list and verifies with all of them.
    return URLSafeTimedSerializer(newest_first[::-1], salt=_SALT)


def create_token(key: str | Sequence[str], *, scope: str, ttl: timedelta) -> str:
    """A token for ``scope`` valid for ``ttl`` from now (itsdangerous stamps the time)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(sorted(SCOPES))}")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError("ttl must be positive and at most 366 days")
    return _serializer(key).dumps({"scope": scope, "ttl": int(ttl.total_seconds())})


def check_token(key: str | Sequence[str], token: str, *, scope: str, now: datetime) -> Token:
    """Verify ``token`` against every key (newest first); raises ``TokenError`` unless it is
    genuine, unexpired and scoped."""
    try:
        payload, signed_at = _serializer(key).loads(token, return_timestamp=True)
    except BadSignature:
        raise TokenError("bad signature") from None
    if not isinstance(payload, dict) or type(payload.get("ttl")) is not int:
        raise TokenError("malformed payload")
    expires_at = signed_at + timedelta(seconds=payload["ttl"])
    if now >= expires_at:
        raise TokenError("token expired")
    if payload.get("scope") != scope:
        raise TokenError("token lacks the scope")
    return Token(scope=scope, expires_at=expires_at)
