"""Dashboard sign-in: one-time login links (itsdangerous) and the sessions they open.

A link carries a random nonce, its own expiry (``LINK_TTL``, short: it travels through
terminals and chat) and the lifetime of the session it opens (``--ttl``). One-time use is
enforced by ``UsedNonces``, an in-memory set of spent nonces kept until their link expires:
cheap and exact for one process. With several workers or instances each process has its own
memory, so a link stays usable once per process until it expires (minutes); the session
cookie itself is what carries the sign-in afterwards. Pure functions with a ``now`` seam,
plus that one small stateful class.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from receiver.settings import Settings

LINK_TTL = timedelta(minutes=15)
MAX_SESSION_TTL = timedelta(days=30)
_SALT = "nova-sink.ui-login.v1"
_SESSION_VERSION = 1


class LoginError(Exception):
    """A login link is forged, malformed, expired or already used; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Login:
    """A genuine, unexpired login link."""

    nonce: str
    link_expires_at: datetime
    session_expires_at: datetime


def ui_keys(settings: Settings) -> list[str] | None:
    """The dashboard's signing keys, newest first, or None when ``SINK_SECRET_KEY`` is unset
    (dashboard off). The one place that reads the key for the dashboard."""
    if settings.sink_secret_key is None:
        return None
    return settings.read_token_keys()


def _serializer(keys: Sequence[str]) -> URLSafeSerializer:
    # itsdangerous signs with the *last* key and accepts any: ours are newest first.
    return URLSafeSerializer(list(reversed(keys)), salt=_SALT)


def create_login_token(
    keys: Sequence[str], *, session_ttl: timedelta, now: datetime, link_ttl: timedelta = LINK_TTL
) -> str:
    """A signed login token whose session lasts ``session_ttl`` from sign-in."""
    if not timedelta(0) < session_ttl <= MAX_SESSION_TTL:
        raise ValueError("the session ttl must be positive and at most 30 days")
    payload = {
        "n": secrets.token_urlsafe(16),
        "x": int((now + link_ttl).timestamp()),
        "s": int(session_ttl.total_seconds()),
    }
    return _serializer(keys).dumps(payload)


def login_url(base_url: str, token: str) -> str:
    """The link to print: ``<base>/ui/login?token=…`` (the token is URL-safe already)."""
    return f"{base_url.rstrip('/')}/ui/login?token={token}"


def check_login_token(keys: Sequence[str], token: str, *, now: datetime) -> Login:
    """Verify a token's signature, shape and expiry; raises ``LoginError``."""
    try:
        payload = _serializer(keys).loads(token)
    except BadSignature:
        raise LoginError("this sign-in link is not valid") from None
    if not isinstance(payload, dict) or not _shape_ok(payload):
        raise LoginError("this sign-in link is not valid")
    link_expires_at = datetime.fromtimestamp(payload["x"], UTC)
    if now >= link_expires_at:
        raise LoginError("this sign-in link has expired")
    return Login(
        nonce=payload["n"],
        link_expires_at=link_expires_at,
        session_expires_at=now + timedelta(seconds=payload["s"]),
    )


def _shape_ok(payload: Mapping[str, Any]) -> bool:
    return (
        isinstance(payload.get("n"), str)
        and isinstance(payload.get("x"), int)
        and isinstance(payload.get("s"), int)
        and 0 < payload["s"] <= MAX_SESSION_TTL.total_seconds()
    )


class UsedNonces:
    """Nonces of links already used, each forgotten once its link has expired anyway."""

    def __init__(self) -> None:
        self._spent: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def claim(self, login: Login, *, now: datetime) -> bool:
        """True the first time a link's nonce is claimed, False every time after."""
        with self._lock:
            self._spent = {n: until for n, until in self._spent.items() if until > now}
            if login.nonce in self._spent:
                return False
            self._spent[login.nonce] = login.link_expires_at
            return True


def new_session(login: Login) -> dict[str, Any]:
    """What the signed session cookie holds: a version and the session's expiry."""
    return {"v": _SESSION_VERSION, "exp": int(login.session_expires_at.timestamp())}


def session_active(session: Mapping[str, Any], *, now: datetime) -> bool:
    """Whether the cookie's session is ours and not yet expired."""
    expires = session.get("exp")
    return (
        session.get("v") == _SESSION_VERSION
        and isinstance(expires, int)
        and now.timestamp() < expires
    )
