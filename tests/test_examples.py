"""The files under ``examples/`` work as the README and ``--help`` say they do."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from receiver.fake_nova import create_fake_nova
from receiver.fake_nova.config import FakeNovaConfig
from receiver.serving import bound_socket, port_of, serving
from tests.cli_inproc import InProcessCli, default_env
from tests.servers import migrated_database

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(name="cli")
def fixture_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> InProcessCli:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    url = migrated_database(tmp_path / "sink.db")
    return InProcessCli(capsys, monkeypatch, tmp_path, default_env(url))


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize(
    "args",
    [
        ("examples/applications.json",),
        ("examples/applications.csv", "--job-description", "examples/job-description.txt"),
    ],
    ids=["json", "csv"],
)
async def test_the_example_input_files_submit_as_they_are(
    cli: InProcessCli, args: tuple[str, ...]
) -> None:
    """``submit`` takes each shipped example file: three applications, one batch."""
    fake = create_fake_nova(FakeNovaConfig(), background_delivery=False)
    sock = bound_socket()  # held: a free port can be taken first
    port = port_of(sock)
    async with fake, serving(fake.app, sock):
        ran = await asyncio.to_thread(
            cli,
            "submit",
            *args,
            "--job",
            "job-42",
            "--json",
            NOVA_API_URL=f"http://127.0.0.1:{port}",
        )

    assert ran.code == 0, ran.err
    (batch,) = ran.json()
    assert len(batch["scoring_job_ids"]) + len(batch["rejected"]) == 3


def test_the_example_webhook_body_is_a_valid_score_event() -> None:
    """``examples/score-completed.json`` parses as a score.completed of the test tenant."""
    from receiver.events import ScoreEvent, parse_event
    from storage.store.batches import TEST_TENANT

    event = parse_event((EXAMPLES / "score-completed.json").read_bytes())

    assert isinstance(event, ScoreEvent)
    assert event.result.tenant_id == TEST_TENANT
    assert json.loads((EXAMPLES / "score-completed.json").read_text())["event"] == event.name
