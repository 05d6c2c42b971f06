"""Signature-construction pinning (issue 8, item 1; NOVA.md, Decision 1).

The attack: ``HMAC(k, ts + "." + body)`` is also a body-only MAC for the body ``ts.body``.
Holding one captured timestamp-signed delivery, an attacker drops the timestamp header, sends
``<ts>.<body>`` as the body with the same signature, and replays it past the tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.errors import SignatureError
from receiver.pinning import PinPolicy, describe
from receiver.signatures import TIMESTAMP_HEADER, fingerprint, sign, verify
from storage.db import transaction
from tests.cli_helpers import Ran, run_cli_subprocess, scrubbed_env
from tests.factories import NOW, SECOND_SECRET, SECRET, score_completed
from tests.old_schemas import BACKENDS, database_at
from tests.servers import migrated_database

URL = "/webhooks/nova"
TOLERANCE = timedelta(minutes=5)
KEYS = [SECRET.encode()]


def captured() -> tuple[bytes, dict[str, str]]:
    """A genuine timestamp-signed delivery, as an attacker could have captured it."""
    body = score_completed()
    return body, sign(SECRET, body, construction="timestamp.body", timestamp=NOW)


def reframed(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The re-framed replay: no timestamp header, `<ts>.<body>` as the body, same signature."""
    forged = dict(headers)
    stamp = forged.pop(TIMESTAMP_HEADER)
    return stamp.encode() + b"." + body, forged


# ---- pure: verify with pins ------------------------------------------------------------------


def test_without_a_pin_the_reframed_replay_verifies_as_body_only() -> None:
    """The weakness itself: with every construction allowed, the replay is a valid MAC."""
    body, forged = reframed(*captured())
    verified = verify(KEYS, forged, body, now=NOW + timedelta(days=3), tolerance=TOLERANCE)
    assert verified.construction == "body"


def test_a_secret_pinned_to_timestamp_rejects_the_reframed_replay() -> None:
    """Pinned to `timestamp.body`, the body-only reading is never tried."""
    body, forged = reframed(*captured())
    with pytest.raises(SignatureError) as caught:
        verify(KEYS, forged, body, now=NOW, tolerance=TOLERANCE, allowed=["timestamp.body"])
    assert caught.value.reason == "no_matching_signature"


def test_pins_apply_per_secret() -> None:
    """A pin on one secret does not restrict another one."""
    body = score_completed()
    keys = [SECRET.encode(), SECOND_SECRET.encode()]
    headers = sign(SECOND_SECRET, body)
    verified = verify(
        keys, headers, body, now=NOW, tolerance=TOLERANCE, allowed=["timestamp.body", None]
    )
    assert (verified.secret_index, verified.construction) == (1, "body")
    with pytest.raises(SignatureError):
        verify(
            keys, headers, body, now=NOW, tolerance=TOLERANCE, allowed=[None, "id.timestamp.body"]
        )


def test_policy_configured_applies_one_construction_to_every_secret() -> None:
    """NOVA_SIGNATURE_CONSTRUCTION=timestamp: every secret is held to it, no claims needed."""
    policy = PinPolicy(["fp_a", "fp_b"], "timestamp")
    assert policy.allowed == ["timestamp.body", "timestamp.body"]
    assert not policy.needs_claim(0)


def test_policy_auto_learns_and_ignores_unknown_stored_names() -> None:
    """auto: unpinned secrets accept any construction until a pin is learned."""
    policy = PinPolicy(["fp_a", "fp_b"], "auto")
    policy.load({"fp_a": "id.timestamp.body", "fp_b": "rot13"})
    assert policy.allowed == ["id.timestamp.body", None]
    assert policy.needs_claim(1)
    assert policy.learn(1, "body")
    assert policy.allowed == ["id.timestamp.body", "body"]
    assert not policy.needs_claim(1)


def test_describe_says_how_each_pin_was_set() -> None:
    """secrets status: configured, learned, or unpinned."""
    auto = describe(["fp_a", "fp_b"], "auto", {"fp_a": "body"})
    assert [(p.construction, p.source) for p in auto] == [("body", "learned"), (None, "unpinned")]
    fixed = describe(["fp_a"], "id-timestamp", {"fp_a": "body"})
    assert [(p.construction, p.source) for p in fixed] == [("id.timestamp.body", "configured")]


# ---- the store: one winner -------------------------------------------------------------------


def test_claim_pin_keeps_the_first_winner(engine: Engine) -> None:
    """The first claim wins; a later, different claim reads back the winner (both databases)."""
    with transaction(engine) as store:
        assert store.claim_pin("fp_a", "timestamp.body", now=NOW) == "timestamp.body"
    with transaction(engine) as store:
        assert store.claim_pin("fp_a", "body", now=NOW) == "timestamp.body"
        assert store.claim_pin("fp_b", "body", now=NOW) == "body"
    with transaction(engine, write=False) as store:
        pins = store.signature_pins()
    assert {name: pin.construction for name, pin in pins.items()} == {
        "fp_a": "timestamp.body",
        "fp_b": "body",
    }
    assert pins["fp_a"].pinned_at == NOW


def test_remove_pins_by_fingerprint_or_all(engine: Engine) -> None:
    """Unpinning removes the named pins, or every one."""
    with transaction(engine) as store:
        for name in ("fp_a", "fp_b", "fp_c"):
            store.claim_pin(name, "body", now=NOW)
    with transaction(engine) as store:
        assert store.remove_pins(["fp_b", "fp_x"]) == ["fp_b"]
    with transaction(engine) as store:
        assert store.remove_pins() == ["fp_a", "fp_c"]
        assert store.signature_pins() == {}


# ---- through the app ------------------------------------------------------------------------


def post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(URL, content=body, headers=headers)


def delivery_count(engine: Engine) -> int:
    """Inbox rows, whatever their outcome."""
    with transaction(engine, write=False) as store:
        return sum(store.stats()["deliveries"].values())


def test_reframed_replay_after_a_timestamp_delivery_is_401(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """The probe's attack: auto mode learns `timestamp.body` and rejects the re-framed replay."""
    body, headers = captured()
    with TestClient(make_app()) as client:
        assert post(client, body, headers).json() == {"status": "applied"}
        forged_body, forged = reframed(body, headers)
        response = post(client, forged_body, forged)
        assert response.status_code == 401
        metrics = client.get("/metrics").text
    assert delivery_count(sqlite_engine) == 1
    assert 'nova_sink_verification_failures_total{reason="no_matching_signature"} 1.0' in metrics
    with transaction(sqlite_engine, write=False) as store:
        (pin,) = store.signature_pins().values()
    assert (pin.fingerprint, pin.construction) == (fingerprint(SECRET), "timestamp.body")


def test_configured_construction_rejects_others_from_the_first_delivery(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """NOVA_SIGNATURE_CONSTRUCTION=timestamp: the replay fails even with nothing learned yet."""
    body, headers = captured()
    forged_body, forged = reframed(body, headers)
    with TestClient(make_app(nova_signature_construction="timestamp")) as client:
        assert post(client, forged_body, forged).status_code == 401
        assert post(client, body, headers).json() == {"status": "applied"}
    with transaction(sqlite_engine, write=False) as store:
        assert store.signature_pins() == {}  # configured pins are not stored


def test_learned_pin_survives_a_restart(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """A new process reads the pin from the database: body-only signatures stay refused."""
    body, headers = captured()
    with TestClient(make_app()) as client:
        assert post(client, body, headers).status_code == 200
    with TestClient(make_app()) as client:
        assert client.app.state.receiver.webhook.pins.allowed == ["timestamp.body"]  # type: ignore[attr-defined]
        plain = score_completed("sj_2")
        assert post(client, plain, sign(SECRET, plain)).status_code == 401


def test_racing_workers_agree_on_one_pin(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """Two workers started before any pin: the second one's different first match is a 401."""
    first, second = make_app(), make_app()
    with TestClient(first) as a, TestClient(second) as b:
        plain = score_completed("sj_a")
        assert post(a, plain, sign(SECRET, plain)).json() == {"status": "applied"}
        body, headers = captured()
        assert post(b, body, headers).status_code == 401
        lines = b.get("/metrics").text.splitlines()
    assert 'nova_sink_verification_failures_total{reason="construction_not_pinned"} 1.0' in lines
    assert delivery_count(sqlite_engine) == 1


def test_first_delivery_is_503_when_its_pin_cannot_be_claimed(
    make_app: Callable[..., Starlette], sqlite_engine: Engine
) -> None:
    """No pin can be recorded (read-only database): 503 + Retry-After, Nova retries later."""
    from storage.db import make_engine

    path = sqlite_engine.url.database
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    body, headers = captured()
    try:
        with TestClient(make_app(engine=read_only)) as client:
            response = post(client, body, headers)
            lines = client.get("/metrics").text.splitlines()
    finally:
        read_only.dispose()
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert 'nova_sink_rejected_requests_total{status="503"} 1.0' in lines
    assert delivery_count(sqlite_engine) == 0
    with transaction(sqlite_engine, write=False) as store:
        assert store.signature_pins() == {}


# ---- the CLI: secrets status, secrets unpin ---------------------------------------------------


def run_cli(tmp_path: Path, url: str, *args: str, **extra: str) -> Ran:
    env = scrubbed_env(
        DATABASE_URL=url,
        NOVA_WEBHOOK_SECRETS=f"{SECRET},{SECOND_SECRET}",
        LOG_FORMAT="json",
        COLUMNS="200",
        **extra,
    )
    ran = run_cli_subprocess(tmp_path, *args, env=env, secrets=[SECRET, SECOND_SECRET])
    assert "Traceback" not in ran.err
    return ran


@pytest.mark.slow
def test_secrets_status_shows_construction_and_how_it_was_set(tmp_path: Path) -> None:
    """Learned, unpinned and configured pins are listed per fingerprint; unpin clears them."""
    url = migrated_database(tmp_path / "sink.db")
    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with transaction(engine) as store:
            store.claim_pin(fingerprint(SECRET), "timestamp.body", now=NOW)
    finally:
        engine.dispose()

    auto = json.loads(run_cli(tmp_path, url, "secrets", "status", "--json").out)
    assert [(r["fingerprint"], r["construction"], r["pinned"]) for r in auto] == [
        (fingerprint(SECRET), "timestamp", "learned"),
        (fingerprint(SECOND_SECRET), None, "unpinned"),
    ]
    assert auto[0]["pinned_at"].startswith("2026-01-15T12:00:00")
    fixed = run_cli(
        tmp_path, url, "secrets", "status", "--json", NOVA_SIGNATURE_CONSTRUCTION="id-timestamp"
    )
    assert {(r["construction"], r["pinned"]) for r in json.loads(fixed.out)} == {
        ("id-timestamp", "configured")
    }

    unknown = run_cli(tmp_path, url, "secrets", "unpin", "fp_0000000000")
    assert unknown.code == 1
    assert "no learned pin" in unknown.err
    assert run_cli(tmp_path, url, "secrets", "unpin").code == 2
    cleared = run_cli(tmp_path, url, "secrets", "unpin", fingerprint(SECRET), "--json")
    assert json.loads(cleared.out) == {"unpinned": [fingerprint(SECRET)]}
    after = json.loads(run_cli(tmp_path, url, "secrets", "status", "--json").out)
    assert [r["pinned"] for r in after] == ["unpinned", "unpinned"]
    assert json.loads(run_cli(tmp_path, url, "secrets", "unpin", "--all", "--json").out) == {
        "unpinned": []
    }


# ---- migration 0003 ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_adds_pins_and_keeps_existing_rows(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """0002 → head on a database holding a delivery: the row stays, pins become available."""
    from storage import schema
    from tests.test_migration_0002 import insert_old_rows

    with database_at("0002", backend, request, tmp_path) as engine:
        insert_old_rows(engine)  # as the revision before pins stored them
        assert schema.upgrade(engine) == schema.HEAD
        with transaction(engine) as store:
            assert store.get_delivery("msg_1") is not None
            assert store.claim_pin("fp_a", "body", now=NOW) == "body"
