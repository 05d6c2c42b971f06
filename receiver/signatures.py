"""Verify and sign Nova webhooks over their raw bytes. Pure: no I/O, the clock is a parameter.

Nova's docs show two header generations and never the exact signed string (NOVA.md,
"Decisions for nova-sink"), so a signature is accepted when it is an HMAC-SHA256, keyed
with the whole ``whsec_…`` secret as UTF-8, over one of these messages:

- ``body``               the raw body (the documented old scheme, and fake Nova's default);
- ``timestamp.body``     ``<X-Webhook-Timestamp>.<body>``;
- ``id.timestamp.body``  ``<X-Webhook-Id>.<X-Webhook-Timestamp>.<body>``.

Accepting all three side by side is *not* free: ``HMAC(k, ts + "." + body)`` is also a valid
body-only MAC for the body ``ts.body``, so a captured timestamp-signed delivery could be
re-framed (timestamp header dropped, ``<ts>.<body>`` sent as the body) and replayed past the
tolerance forever. So each secret is pinned to one construction (NOVA.md, Decision 1):
``verify`` takes, per key, the one construction it may match (or None: any, until learned).
The pins themselves (configured or learned, stored per ``fingerprint``) are the caller's.

Cost is bounded: the signed prefixes are built once per request, each key computes at most
one HMAC per construction it may match (one, once pinned), and the first match returns.

The timestamp is checked against the tolerance only when the matched message covers it: an
unsigned timestamp proves nothing, and Nova retries up to ~40 minutes after the first attempt.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from receiver.errors import SignatureError
from receiver.values import parse_timestamp

__all__ = [
    "CONSTRUCTIONS",
    "CONSTRUCTION_SETTINGS",
    "Construction",
    "Verified",
    "fingerprint",
    "parse_timestamp",  # re-exported from receiver.values (callers predate that module)
    "setting_name",
    "sign",
    "verify",
]

Construction = Literal["body", "timestamp.body", "id.timestamp.body"]
CONSTRUCTIONS: tuple[Construction, ...] = ("body", "timestamp.body", "id.timestamp.body")
# The constructions whose signed message covers ``X-Webhook-Id`` (see ``_message_prefix``).
ID_SIGNED: frozenset[Construction] = frozenset({"id.timestamp.body"})
# NOVA_SIGNATURE_CONSTRUCTION's values (other than "auto") and the construction each names.
CONSTRUCTION_SETTINGS: dict[str, Construction] = {
    "body": "body",
    "timestamp": "timestamp.body",
    "id-timestamp": "id.timestamp.body",
}

SIGNATURE_HEADER = "x-webhook-signature"
LEGACY_SIGNATURE_HEADER = "x-nova-signature"
ID_HEADER = "x-webhook-id"
TIMESTAMP_HEADER = "x-webhook-timestamp"
EVENT_HEADER = "x-webhook-event"

_PREFIX = "sha256="
_HEX_DIGEST_LEN = 64
# More candidate signatures than this in one header is not rotation, it is an attack on CPU.
_MAX_CANDIDATES = 8


def setting_name(construction: Construction) -> str:
    """The ``NOVA_SIGNATURE_CONSTRUCTION`` value naming ``construction`` (``timestamp``…)."""
    return next(name for name, value in CONSTRUCTION_SETTINGS.items() if value == construction)


@dataclass(frozen=True, slots=True)
class Verified:
    """Evidence of a successful verification, recorded on the delivery row."""

    header: str
    construction: Construction
    secret_index: int
    webhook_id: str | None
    timestamp: datetime | None

    @property
    def scheme(self) -> str:
        """``<header>/<construction>``, as stored in ``delivery.signature_scheme``."""
        return f"{self.header}/{self.construction}"


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret, safe to log and display."""
    return "fp_" + hashlib.sha256(secret.encode()).hexdigest()[:10]


def _candidates(headers: Mapping[str, str]) -> tuple[str, list[bytes]]:
    """The header that carries signatures, and each signature decoded to digest bytes."""
    for name in (SIGNATURE_HEADER, LEGACY_SIGNATURE_HEADER):
        raw = headers.get(name)
        if raw is None:
            continue
        digests: list[bytes] = []
        # Several signatures may be sent during a secret rotation: split on commas/spaces.
        for part in raw.replace(",", " ").split()[:_MAX_CANDIDATES]:
            token = part[len(_PREFIX) :] if part.lower().startswith(_PREFIX) else part
            if len(token) != _HEX_DIGEST_LEN:
                continue
            try:
                digests.append(bytes.fromhex(token))
            except ValueError:
                continue
        if not digests:
            raise SignatureError("malformed_signature")
        return name, digests
    raise SignatureError("missing_signature")


def _message_prefix(
    construction: Construction, webhook_id: str | None, timestamp: str | None
) -> bytes | None:
    """The bytes signed before the body, or None when a needed header is absent."""
    if construction == "body":
        return b""
    if timestamp is None:
        return None
    try:
        # Starlette decodes headers as latin-1, so this gives back the bytes on the wire.
        if construction == "timestamp.body":
            return timestamp.encode("latin-1") + b"."
        if webhook_id is None:
            return None
        return webhook_id.encode("latin-1") + b"." + timestamp.encode("latin-1") + b"."
    except UnicodeEncodeError:
        return None  # text no HTTP header could carry: this construction cannot match


def _digest(key: bytes, prefix: bytes, body: bytes) -> bytes:
    mac = hmac.new(key, prefix, hashlib.sha256)
    mac.update(body)
    return mac.digest()


def verify(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: timedelta,
    allowed: Sequence[Construction | None] | None = None,
) -> Verified:
    """Return how ``body`` verified against any of ``keys``, or raise ``SignatureError``.

    ``headers`` must answer lower-case names (Starlette's ``Headers`` does, whatever the
    case on the wire). ``keys`` are the secrets as UTF-8 bytes, newest first. ``allowed``
    gives, per key, the one construction that key may match (its pin), or None for any;
    without it every key may match every construction.
    """
    header, digests = _candidates(headers)
    webhook_id = headers.get(ID_HEADER)
    raw_timestamp = headers.get(TIMESTAMP_HEADER)
    # Built once per request, not per key: what differs per key is only the HMAC itself.
    prefixes = [
        (construction, prefix)
        for construction in CONSTRUCTIONS
        if (prefix := _message_prefix(construction, webhook_id, raw_timestamp)) is not None
    ]
    for index, key in enumerate(keys):
        pin = allowed[index] if allowed is not None else None
        for construction, prefix in prefixes:
            if pin is not None and construction != pin:
                continue
            expected = _digest(key, prefix, body)
            # compare_digest on bytes: on str it raises for non-ASCII input (a 500, not a 401).
            if not any(hmac.compare_digest(expected, given) for given in digests):
                continue
            timestamp = _checked_timestamp(construction, raw_timestamp, now, tolerance)
            return Verified(header, construction, index, webhook_id, timestamp)
    raise SignatureError("no_matching_signature")


def _checked_timestamp(
    construction: Construction, raw: str | None, now: datetime, tolerance: timedelta
) -> datetime | None:
    if raw is None:
        return None
    try:
        stamp = parse_timestamp(raw)
    except (ValueError, OverflowError, OSError):
        if construction == "body":
            return None  # unsigned and unreadable: ignore it, it proves nothing either way
        raise SignatureError("invalid_timestamp") from None
    if construction != "body" and abs(now - stamp) > tolerance:
        raise SignatureError("timestamp_outside_tolerance")
    return stamp


def sign(
    secret: str,
    body: bytes,
    *,
    construction: Construction = "body",
    legacy_header: bool = False,
    webhook_id: str | None = None,
    timestamp: datetime | None = None,
    event_header: str | None = None,
) -> dict[str, str]:
    """Headers Nova would send with ``body``: used by fake Nova, tests and send-test-webhook.

    ``legacy_header`` uses ``X-Nova-Signature: <hex>`` (the oldest docs) instead of
    ``X-Webhook-Signature: sha256=<hex>``.
    """
    headers: dict[str, str] = {"content-type": "application/json"}
    stamp = None
    if timestamp is not None:
        stamp = timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers[TIMESTAMP_HEADER] = stamp
    if webhook_id is not None:
        headers[ID_HEADER] = webhook_id
    if event_header is not None:
        headers[EVENT_HEADER] = event_header
    prefix = _message_prefix(construction, webhook_id, stamp)
    if prefix is None:
        raise ValueError(f"construction {construction!r} needs a timestamp (and id)")
    hexdigest = _digest(secret.encode(), prefix, body).hex()
    if legacy_header:
        headers[LEGACY_SIGNATURE_HEADER] = hexdigest
    else:
        headers[SIGNATURE_HEADER] = _PREFIX + hexdigest
    return headers
