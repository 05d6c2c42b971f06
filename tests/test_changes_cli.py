"""``nova-sink results changes``, run in process; ``--follow`` (stopped by SIGINT) as the
installed console script."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver import cursors
from storage.db import transaction
from storage.store import ResultChange
from tests.cli_helpers import NOVA_SINK, scrubbed_env
from tests.cli_inproc import InProcessCli, Ran
from tests.conftest import migrated_sqlite_engine
from tests.factories import NOW, completed


@pytest.fixture(name="db")
def fixture_db(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_sqlite_engine(tmp_path / "sink.db")
    yield engine
    engine.dispose()


Changes = Callable[..., Ran]


@pytest.fixture(name="changes")
def fixture_changes(
    db: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Changes:
    """``nova-sink results changes *args`` in process, against ``db``."""
    env = {"DATABASE_URL": str(db.url), "LOG_FORMAT": "json"}
    cli = InProcessCli(capsys, monkeypatch, tmp_path, env)

    def changes(*args: str) -> Ran:
        return cli("results", "changes", *args)

    return changes


def store(engine: Engine, *ids: str) -> None:
    with transaction(engine) as s:
        s.insert_new_results([completed(i) for i in ids], source="webhook", now=NOW, delivered=True)
        s.log_changes([ResultChange(i, "created") for i in ids], now=NOW)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_carry_a_cursor_that_resumes_right_after_the_change(
    db: Engine, changes: Changes
) -> None:
    """Three changes as JSON Lines; --after the second line's cursor prints only the third."""
    store(db, "sj_1", "sj_2", "sj_3")

    everything = changes("--json")
    resumed = changes("--json", "--after", lines(everything.out)[1]["cursor"])

    assert everything.code == 0, everything.err
    assert [c["scoring_job_id"] for c in lines(everything.out)] == ["sj_1", "sj_2", "sj_3"]
    assert [c["seq"] for c in lines(resumed.out)] == [3]
    assert resumed.err.strip() == f"next cursor: {lines(everything.out)[2]['cursor']}"


def test_text_output_is_one_tab_separated_line_per_change(db: Engine, changes: Changes) -> None:
    """Without --json: a header and one line per change, the cursor last."""
    store(db, "sj_1")

    done = changes()

    header, row = done.out.splitlines()
    assert header.split("\t")[:4] == ["seq", "changed_at", "kind", "scoring_job_id"]
    assert row.split("\t")[:5] == ["1", "2026-01-15T12:00:00Z", "created", "sj_1", "completed"]


def test_a_cursor_that_is_not_one_is_a_one_line_error(db: Engine, changes: Changes) -> None:
    """--after garbage: exit 2, one stderr line naming --after, nothing on stdout."""
    done = changes("--after", "garbage", "--json")

    assert done.code == 2
    assert done.out == ""
    assert done.err.count("\n") == 1
    assert "--after" in done.err


@pytest.mark.slow
def test_follow_prints_changes_as_they_commit_and_stops_cleanly(db: Engine) -> None:
    """--follow: a change stored later is printed; Ctrl-C exits 0 with the resume cursor."""
    store(db, "sj_old")
    after_old = cursors.encode("changes", 1)
    command = [str(NOVA_SINK), "results", "changes", "--after", after_old, "--follow", "--json"]
    with subprocess.Popen(
        [*command, "--interval=0.1"],
        env=scrubbed_env(DATABASE_URL=str(db.url), LOG_FORMAT="json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            store(db, "sj_new")
            assert follower.stdout is not None
            first = json.loads(follower.stdout.readline())
        finally:
            follower.send_signal(signal.SIGINT)
            _out, err = follower.communicate(timeout=30)

    assert first["scoring_job_id"] == "sj_new"
    assert follower.returncode == 0
    assert err.strip() == f"next cursor: {first['cursor']}"


def test_after_now_prints_nothing_of_the_past(db: Engine, changes: Changes) -> None:
    """--after now on a store with history: no change, and the head as resume cursor."""
    store(db, "sj_1", "sj_2")

    done = changes("--after", "now", "--json")

    assert (done.code, done.out) == (0, "")
    assert done.err.strip() == f"next cursor: {cursors.encode('changes', 2)}"


def test_stored_text_cannot_fake_columns_or_drive_the_terminal(
    db: Engine, changes: Changes
) -> None:
    """A job id with a tab, a newline and an escape sequence stays one inert cell."""
    with transaction(db) as s:
        s.insert_new_results(
            [completed("sj_1", job_id="job\t1\nfake\x1b[2J")],
            source="webhook",
            now=NOW,
            delivered=True,
        )
        s.log_changes([ResultChange("sj_1", "created")], now=NOW)

    done = changes()

    _header, row = done.out.splitlines()
    assert "\x1b" not in done.out
    assert row.split("\t")[5] == "job\ufffd1\ufffdfake\ufffd[2J"
