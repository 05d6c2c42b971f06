"""receiver.signatures: both header generations, three signed constructions, rotation, clock."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.errors import SignatureError
from receiver.signatures import Verified, parse_timestamp, sign, verify
from tests.factories import NOW, OTHER_SECRET, SECOND_SECRET, SECRET, hmac_hex, score_completed

TOLERANCE = timedelta(seconds=300)
BODY = score_completed()
KEYS = [SECRET.encode()]


def check(
    headers: dict[str, str], body: bytes = BODY, *, keys: list[bytes] | None = None, **kw: Any
) -> Verified:
    return verify(
        KEYS if keys is None else keys,
        headers,
        body,
        now=kw.pop("now", NOW),
        tolerance=kw.pop("tolerance", TOLERANCE),
    )


def reason(headers: dict[str, str], body: bytes = BODY, **kw: Any) -> str:
    with pytest.raises(SignatureError) as caught:
        check(headers, body, **kw)
    return caught.value.reason


# ---- header generations ----------------------------------------------------------------------


def test_accepts_current_header_with_sha256_prefix() -> None:
    """X-Webhook-Signature: sha256=<hex> over the raw body verifies."""
    headers = {"x-webhook-signature": "sha256=" + hmac_hex(SECRET, BODY)}
    verified = check(headers)
    assert (verified.header, verified.construction) == ("x-webhook-signature", "body")
    assert verified.scheme == "x-webhook-signature/body"


@pytest.mark.parametrize("prefix", ["", "sha256="], ids=["bare-hex", "sha256-prefix"])
def test_accepts_legacy_header_with_or_without_prefix(prefix: str) -> None:
    """The oldest docs' X-Nova-Signature verifies with or without the sha256= prefix."""
    verified = check({"x-nova-signature": prefix + hmac_hex(SECRET, BODY)})
    assert verified.header == "x-nova-signature"


def test_sign_legacy_header_is_bare_hex() -> None:
    """sign(legacy_header=True) emits X-Nova-Signature as bare hex, as the old docs show."""
    headers = sign(SECRET, BODY, legacy_header=True)
    assert headers["x-nova-signature"] == hmac_hex(SECRET, BODY)
    assert "x-webhook-signature" not in headers
    assert check(headers).header == "x-nova-signature"


def test_accepts_uppercase_hex_and_prefix() -> None:
    """Hex digits and the prefix are case-insensitive."""
    headers = {"x-webhook-signature": "SHA256=" + hmac_hex(SECRET, BODY).upper()}
    assert check(headers).construction == "body"


def test_accepts_any_of_several_signatures_in_one_header() -> None:
    """During a rotation a header may carry several signatures; one matching is enough."""
    wrong = "sha256=" + hmac_hex(OTHER_SECRET, BODY)
    right = "sha256=" + hmac_hex(SECRET, BODY)
    assert check({"x-webhook-signature": f"{wrong}, {right}"}).construction == "body"


# ---- constructions ---------------------------------------------------------------------------


def test_accepts_timestamp_dot_body_construction() -> None:
    """An HMAC over `<timestamp>.<body>` verifies and records the construction and time."""
    stamp = NOW - timedelta(seconds=30)
    verified = check(sign(SECRET, BODY, construction="timestamp.body", timestamp=stamp))
    assert verified.construction == "timestamp.body"
    assert verified.timestamp == stamp


def test_accepts_id_dot_timestamp_dot_body_construction() -> None:
    """An HMAC over `<id>.<timestamp>.<body>` verifies and records the webhook id."""
    headers = sign(
        SECRET, BODY, construction="id.timestamp.body", webhook_id="msg_42", timestamp=NOW
    )
    verified = check(headers)
    assert (verified.construction, verified.webhook_id) == ("id.timestamp.body", "msg_42")


def test_signed_strings_match_an_independent_hmac() -> None:
    """sign() signs exactly `body`, `ts.body` and `id.ts.body` with the whole whsec_ secret."""
    ts = "2026-01-15T12:00:00.000Z"
    assert sign(SECRET, BODY)["x-webhook-signature"] == "sha256=" + hmac_hex(SECRET, BODY)
    by_ts = sign(SECRET, BODY, construction="timestamp.body", timestamp=NOW)
    assert by_ts["x-webhook-timestamp"] == ts
    assert by_ts["x-webhook-signature"] == "sha256=" + hmac_hex(SECRET, f"{ts}.".encode() + BODY)
    by_id = sign(SECRET, BODY, construction="id.timestamp.body", webhook_id="m1", timestamp=NOW)
    expected = hmac_hex(SECRET, f"m1.{ts}.".encode() + BODY)
    assert by_id["x-webhook-signature"] == "sha256=" + expected


def test_timestamp_construction_without_timestamp_header_is_rejected() -> None:
    """A `ts.body` signature cannot verify when the timestamp header is missing."""
    headers = sign(SECRET, BODY, construction="timestamp.body", timestamp=NOW)
    del headers["x-webhook-timestamp"]
    assert reason(headers) == "no_matching_signature"


def test_id_construction_with_a_different_id_is_rejected() -> None:
    """The webhook id is covered by the `id.ts.body` signature: changing it fails."""
    headers = sign(SECRET, BODY, construction="id.timestamp.body", webhook_id="m1", timestamp=NOW)
    headers["x-webhook-id"] = "m2"
    assert reason(headers) == "no_matching_signature"


# ---- secrets ---------------------------------------------------------------------------------


def test_rotation_accepts_second_secret_and_records_its_index() -> None:
    """With two secrets configured, a body signed with the second verifies as index 1."""
    keys = [SECRET.encode(), SECOND_SECRET.encode()]
    assert check(sign(SECOND_SECRET, BODY), keys=keys).secret_index == 1
    assert check(sign(SECRET, BODY), keys=keys).secret_index == 0


def test_rejects_wrong_secret() -> None:
    """A well-formed signature made with an unknown secret is no_matching_signature."""
    assert reason(sign(OTHER_SECRET, BODY)) == "no_matching_signature"


def test_secret_is_the_whole_whsec_string() -> None:
    """The key is the secret including its whsec_ prefix, not the part after it."""
    stripped = SECRET.removeprefix("whsec_")
    headers = {"x-webhook-signature": "sha256=" + hmac_hex(stripped, BODY)}
    assert reason(headers) == "no_matching_signature"


# ---- malformed and missing ---------------------------------------------------------------------


def test_rejects_missing_signature_header() -> None:
    """No signature header at all is missing_signature."""
    assert reason({"x-webhook-id": "m1"}) == "missing_signature"


@pytest.mark.parametrize(
    "value",
    ["", "sha256=", "sha256=abc", "sha256=" + "g" * 64, "v1,abcdef==", "t=1,v1=" + "a" * 64 + "x"],
)
def test_rejects_garbled_signature_header(value: str) -> None:
    """A header that holds no 64-hex-digit signature is malformed_signature."""
    assert reason({"x-webhook-signature": value}) == "malformed_signature"


def test_rejects_body_with_one_byte_changed() -> None:
    """The signature covers every byte of the raw body."""
    headers = sign(SECRET, BODY)
    tampered = BODY.replace(b'"score": 7', b'"score": 9')
    assert tampered != BODY
    assert reason(headers, tampered) == "no_matching_signature"


@pytest.mark.parametrize(
    "value",
    [
        "sha256=" + "é" * 64,
        "sha256=" + "ÿ" * 64,
        "é" * 64,
        "\x00" * 64,
        "sha256=" + "\u0661" * 64,  # Arabic-Indic digits: str.isdigit() but not hex
    ],
)
def test_non_ascii_header_garbage_is_a_signature_error(value: str) -> None:
    """Latin-1 garbage (how Starlette decodes header bytes) is a 401 reason, not a TypeError."""
    assert reason({"x-webhook-signature": value}) == "malformed_signature"
    assert reason({"x-nova-signature": value}) == "malformed_signature"


def test_non_ascii_webhook_id_and_timestamp_do_not_crash() -> None:
    """Latin-1 id/timestamp headers next to a valid-looking signature fail cleanly."""
    headers = {
        "x-webhook-signature": "sha256=" + "0" * 64,
        "x-webhook-id": "ÿ\x00\r\n",
        "x-webhook-timestamp": "2026-01-15T12:00:00Zÿ",
    }
    assert reason(headers) in {"no_matching_signature", "invalid_timestamp"}


# ---- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(seconds=301)])
def test_rejects_signed_timestamp_outside_tolerance(offset: timedelta) -> None:
    """A timestamp the signature covers must be within the tolerance, past or future."""
    headers = sign(SECRET, BODY, construction="timestamp.body", timestamp=NOW + offset)
    assert reason(headers) == "timestamp_outside_tolerance"
    headers = sign(
        SECRET, BODY, construction="id.timestamp.body", webhook_id="m", timestamp=NOW + offset
    )
    assert reason(headers) == "timestamp_outside_tolerance"


@pytest.mark.parametrize("offset", [timedelta(seconds=-299), timedelta(seconds=299)])
def test_accepts_signed_timestamp_inside_tolerance(offset: timedelta) -> None:
    """Just inside the tolerance, either side of now, verifies."""
    headers = sign(SECRET, BODY, construction="timestamp.body", timestamp=NOW + offset)
    assert check(headers).construction == "timestamp.body"


def test_body_only_signature_accepts_old_unsigned_timestamp() -> None:
    """An unsigned X-Webhook-Timestamp 40 minutes old does not reject a body-only signature."""
    headers = sign(SECRET, BODY, timestamp=NOW - timedelta(minutes=40))
    verified = check(headers)
    assert verified.construction == "body"
    assert verified.timestamp == NOW - timedelta(minutes=40)


def test_body_only_signature_ignores_unreadable_timestamp() -> None:
    """An unsigned, unparseable timestamp proves nothing and is ignored."""
    headers = sign(SECRET, BODY)
    headers["x-webhook-timestamp"] = "yesterday-ish"
    assert check(headers).timestamp is None


def test_signed_unreadable_timestamp_is_rejected() -> None:
    """A covered timestamp that does not parse is invalid_timestamp."""
    stamp = "not-a-time"
    headers = {
        "x-webhook-timestamp": stamp,
        "x-webhook-signature": "sha256=" + hmac_hex(SECRET, f"{stamp}.".encode() + BODY),
    }
    assert reason(headers) == "invalid_timestamp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-15T12:00:00Z", NOW),
        ("2026-01-15T12:00:00.123Z", NOW + timedelta(milliseconds=123)),
        ("2026-01-15T12:00:00.123456Z", NOW + timedelta(microseconds=123456)),
        ("2026-01-15T12:00:00z", NOW),
        ("2026-01-15T12:00:00+00:00", NOW),
        ("2026-01-15T14:00:00+02:00", NOW),
        ("2026-01-15T06:30:00.5-05:30", NOW + timedelta(milliseconds=500)),
        ("2026-01-15T12:00:00", NOW),
        (str(int(NOW.timestamp())), NOW),
    ],
)
def test_parses_iso_timestamps(text: str, expected: datetime) -> None:
    """ISO-8601 with or without fractions, with Z or an offset, normalised to UTC."""
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text", ["2026-01-15T12:00:00.250+01:00", "2026-01-15T11:00:00Z", "2026-01-15T16:30:00+05:30"]
)
def test_verifies_hand_made_timestamp_formats(text: str) -> None:
    """A `ts.body` signature verifies with any ISO spelling of a time within tolerance."""
    now = parse_timestamp(text) + timedelta(seconds=5)
    headers = {
        "x-webhook-timestamp": text,
        "x-webhook-signature": "sha256=" + hmac_hex(SECRET, f"{text}.".encode() + BODY),
    }
    verified = check(headers, now=now)
    assert verified.construction == "timestamp.body"
    assert verified.timestamp == parse_timestamp(text)
    assert verified.timestamp is not None
    assert verified.timestamp.tzinfo is not None


# ---- properties ------------------------------------------------------------------------------

secrets_text = st.text(min_size=1, max_size=40)


@settings(max_examples=150)
@given(body=st.binary(max_size=2048), secret=secrets_text)
def test_property_sign_then_verify_accepts(body: bytes, secret: str) -> None:
    """verify(sign(x)) accepts for any body bytes and any secret text."""
    verified = verify([secret.encode()], sign(secret, body), body, now=NOW, tolerance=TOLERANCE)
    assert (verified.construction, verified.secret_index) == ("body", 0)


@settings(max_examples=150)
@given(
    body=st.binary(min_size=1, max_size=512),
    data=st.data(),
    construction=st.sampled_from(["body", "timestamp.body", "id.timestamp.body"]),
)
def test_property_any_single_byte_change_of_body_is_rejected(
    body: bytes, data: st.DataObject, construction: Any
) -> None:
    """Changing any one byte of the body makes every construction fail."""
    headers = sign(SECRET, body, construction=construction, webhook_id="m1", timestamp=NOW)
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    delta = data.draw(st.integers(1, 255), label="delta")
    tampered = bytearray(body)
    tampered[index] = (tampered[index] + delta) % 256
    with pytest.raises(SignatureError) as caught:
        verify(KEYS, headers, bytes(tampered), now=NOW, tolerance=TOLERANCE)
    assert caught.value.reason == "no_matching_signature"


@settings(max_examples=150)
@given(body=st.binary(max_size=256), data=st.data())
def test_property_any_single_change_of_signature_is_rejected(
    body: bytes, data: st.DataObject
) -> None:
    """Changing any one hex digit of the signature is rejected."""
    value = sign(SECRET, body)["x-webhook-signature"]
    index = data.draw(st.integers(len("sha256="), len(value) - 1), label="index")
    replacement = data.draw(
        st.sampled_from("0123456789abcdef").filter(lambda c: c != value[index]), label="digit"
    )
    changed = value[:index] + replacement + value[index + 1 :]
    with pytest.raises(SignatureError) as caught:
        verify(KEYS, {"x-webhook-signature": changed}, body, now=NOW, tolerance=TOLERANCE)
    assert caught.value.reason == "no_matching_signature"


# A signature header worth attacking: random text, or something that parses as a digest.
_signature_text = st.one_of(
    st.text(max_size=120),
    st.builds(
        lambda prefix, digits: prefix + digits,
        st.sampled_from(["", "sha256=", "SHA256="]),
        st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64),
    ),
)
_header_names = st.sampled_from(
    ["x-webhook-signature", "x-nova-signature", "x-webhook-id", "x-webhook-timestamp"]
)


@settings(max_examples=300)
@given(
    headers=st.dictionaries(
        _header_names, st.one_of(_signature_text, st.text(max_size=60)), max_size=4
    ),
    body=st.binary(max_size=64),
)
def test_property_verify_raises_only_signature_error_for_any_header_text(
    headers: dict[str, str], body: bytes
) -> None:
    """Whatever text the headers hold, verify returns or raises SignatureError, nothing else."""
    with contextlib.suppress(SignatureError):
        verify(KEYS, headers, body, now=NOW, tolerance=TOLERANCE)


@settings(max_examples=300)
@given(
    signature=_signature_text,
    webhook_id=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=40),
    timestamp=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=40),
)
def test_property_verify_handles_any_latin1_header_values(
    signature: str, webhook_id: str, timestamp: str
) -> None:
    """Header values as Starlette decodes them (latin-1) never escape as another error."""
    headers = {"x-webhook-signature": signature, "x-webhook-id": webhook_id}
    headers["x-webhook-timestamp"] = timestamp
    with contextlib.suppress(SignatureError):
        verify(KEYS, headers, BODY, now=NOW, tolerance=TOLERANCE)


@pytest.mark.parametrize("header", ["x-webhook-timestamp", "x-webhook-id"])
def test_non_latin1_id_or_timestamp_text_is_a_signature_error(header: str) -> None:
    """Header text beyond latin-1 (a caller that is not Starlette) is a 401, not an encode error."""
    headers = {
        "x-webhook-signature": "sha256=" + "0" * 64,
        "x-webhook-id": "msg_1",
        "x-webhook-timestamp": "2026-01-15T12:00:00Z",
    }
    headers[header] = "\u0100" + headers[header]
    assert reason(headers) == "no_matching_signature"


def test_timestamp_far_outside_datetime_range_is_a_signature_error() -> None:
    """Unix seconds beyond datetime's range are invalid_timestamp, not OverflowError."""
    stamp = "9" * 30
    headers = {
        "x-webhook-timestamp": stamp,
        "x-webhook-signature": "sha256=" + hmac_hex(SECRET, f"{stamp}.".encode() + BODY),
    }
    assert reason(headers) == "invalid_timestamp"


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"])
def test_covered_timestamp_outside_plausible_years_is_invalid(stamp: str) -> None:
    """A covered timestamp outside 2000-2100 (even one overflowing datetime) is invalid."""
    headers = {
        "x-webhook-timestamp": stamp,
        "x-webhook-signature": "sha256=" + hmac_hex(SECRET, f"{stamp}.".encode() + BODY),
    }
    assert reason(headers, now=datetime(9999, 12, 31, tzinfo=UTC)) == "invalid_timestamp"


# ---- cost (issue 8, item 9) ---------------------------------------------------------------------


@pytest.mark.parametrize(("allowed", "hmacs"), [(None, 15), (["timestamp.body"] * 5, 5)])
def test_forged_body_costs_one_hmac_per_secret_and_allowed_construction(
    monkeypatch: pytest.MonkeyPatch, allowed: Any, hmacs: int
) -> None:
    """5 secrets, all three constructions applicable: 15 HMACs unpinned, 5 once pinned."""
    import hmac as hmac_module

    calls: list[int] = []
    original = hmac_module.new

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    keys = [f"whsec_cost_{i}_0123456789".encode() for i in range(5)]
    headers = {
        "x-webhook-signature": "sha256=" + "0" * 64,
        "x-webhook-id": "m1",
        "x-webhook-timestamp": "2026-01-15T12:00:00Z",
    }
    monkeypatch.setattr(hmac_module, "new", spy)
    with pytest.raises(SignatureError):
        verify(keys, headers, BODY, now=NOW, tolerance=TOLERANCE, allowed=allowed)
    assert len(calls) == hmacs
