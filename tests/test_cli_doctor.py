"""``nova-sink doctor``: one line per check, exit 0 when nothing failed, 1 otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from receiver.fake_nova import create_fake_nova
from receiver.fake_nova.config import FakeNovaConfig
from receiver.serving import free_port, serving
from tests.cli_inproc import API_KEY, InProcessCli


@asynccontextmanager
async def nova(**config: Any) -> AsyncIterator[str]:
    fake = create_fake_nova(FakeNovaConfig(**config), background_delivery=False)
    port = free_port()
    async with fake, serving(fake.app, port):
        yield f"http://127.0.0.1:{port}"


def statuses(cli_out: str) -> dict[str, str]:
    """``{check: status}`` from the text output (``status  name: detail``)."""
    rows = {}
    for line in cli_out.splitlines():
        status, rest = line.split(maxsplit=1)
        rows[rest.split(":", 1)[0]] = status
    return rows


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_ready_installation_passes_every_check(cli: InProcessCli) -> None:
    """Settings, database, secrets, read key and an accepted API key: five ok lines, exit 0."""
    async with nova(api_key=API_KEY) as url:
        ran = await asyncio.to_thread(cli, "doctor", NOVA_API_URL=url)

    assert ran.code == 0, ran.out
    assert statuses(ran.out) == {
        "settings": "ok",
        "database": "ok",
        "webhook secrets": "ok",
        "read api": "ok",
        "nova api": "ok",
    }


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_refused_api_key_fails_the_nova_check(cli: InProcessCli) -> None:
    """Nova answers 401 to the key: the nova api line says FAIL and the exit code is 1."""
    async with nova(api_key="sk_test_the_right_key_000") as url:
        ran = await asyncio.to_thread(cli, "doctor", "--json", NOVA_API_URL=url)

    assert ran.code == 1
    (nova_check,) = [c for c in ran.json() if c["name"] == "nova api"]
    assert nova_check["status"] == "fail"
    assert "NOVA_API_KEY refused" in nova_check["detail"]


def test_the_env_example_placeholder_secret_is_a_warning(cli: InProcessCli) -> None:
    """A secret copied from .env.example unchanged is flagged, without failing."""
    ran = cli("doctor", "--offline", NOVA_WEBHOOK_SECRETS="whsec_replace_me_with_the_portal_secret")

    assert ran.code == 0
    assert statuses(ran.out)["webhook secrets"] == "warn"
    assert "placeholder" in ran.out


def test_a_missing_database_fails_and_is_not_created(cli: InProcessCli) -> None:
    """doctor reads only: a SQLite file that does not exist is a FAIL, and stays absent."""
    missing = cli.tmp_path / "absent.db"

    ran = cli("doctor", "--offline", DATABASE_URL=f"sqlite:///{missing}")

    assert ran.code == 1
    assert statuses(ran.out)["database"] == "FAIL"
    assert not missing.exists()


def test_unparsable_settings_fail_in_one_line(cli: InProcessCli) -> None:
    """Settings that do not parse stop the checks there, naming the variable."""
    ran = cli("doctor", NOVA_RATE_LIMIT="fast")

    assert ran.code == 1
    assert ran.out.startswith("FAIL  settings: NOVA_RATE_LIMIT")
