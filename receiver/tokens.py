"""Read-API bearer tokens: signed and expiring, with itsdangerous. The clock is a parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

SCOPES = frozenset({"read"})
MAX_TTL = timedelta(days=366)
_SALT = "nova-sink.read-api.v1"


class TokenError(Exception):
    """A token is malformed, forged, expired, or lacks the scope."""


@dataclass(frozen=True, slots=True)
class Token:
    scope: str
    expires_at: datetime


def _serializer(key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=_SALT)


def create_token(key: str, *, scope: str, ttl: timedelta) -> str:
    """A token for ``scope`` valid for ``ttl`` from now (itsdangerous stamps the time)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(sorted(SCOPES))}")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError("ttl must be positive and at most 366 days")
    return _serializer(key).dumps({"scope": scope, "ttl": int(ttl.total_seconds())})


def check_token(key: str, token: str, *, scope: str, now: datetime) -> Token:
    """Verify ``token``; raises ``TokenError`` unless it is genuine, unexpired and scoped."""
    try:
        payload, signed_at = _serializer(key).loads(token, return_timestamp=True)
    except BadSignature:
        raise TokenError("invalid token") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("ttl"), int):
        raise TokenError("invalid token")
    expires_at = signed_at + timedelta(seconds=payload["ttl"])
    if now >= expires_at:
        raise TokenError("token expired")
    if payload.get("scope") != scope:
        raise TokenError("token lacks the scope")
    return Token(scope=scope, expires_at=expires_at)
