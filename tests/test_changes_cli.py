"""``nova-sink results changes``, run as the installed console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver import cursors
from storage.db import transaction
from storage.store import ResultChange
from tests.conftest import migrated_sqlite_engine
from tests.factories import NOW, completed

NOVA_SINK = Path(sys.executable).parent / "nova-sink"


@pytest.fixture(name="db")
def fixture_db(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_sqlite_engine(tmp_path / "sink.db")
    yield engine
    engine.dispose()


def env_for(engine: Engine) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "SYSTEMROOT"}}
    return {**keep, "DATABASE_URL": str(engine.url), "LOG_FORMAT": "json"}


def run(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVA_SINK), "results", "changes", *args],
        env=env_for(engine),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def store(engine: Engine, *ids: str) -> None:
    with transaction(engine) as s:
        s.insert_new_results([completed(i) for i in ids], source="webhook", now=NOW, delivered=True)
        s.log_changes([ResultChange(i, "created") for i in ids], now=NOW)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_carry_a_cursor_that_resumes_right_after_the_change(db: Engine) -> None:
    """Three changes as JSON Lines; --after the second line's cursor prints only the third."""
    store(db, "sj_1", "sj_2", "sj_3")

    everything = run(db, "--json")
    resumed = run(db, "--json", "--after", lines(everything.stdout)[1]["cursor"])

    assert everything.returncode == 0, everything.stderr
    assert [c["scoring_job_id"] for c in lines(everything.stdout)] == ["sj_1", "sj_2", "sj_3"]
    assert [c["seq"] for c in lines(resumed.stdout)] == [3]
    assert resumed.stderr.strip() == f"next cursor: {lines(everything.stdout)[2]['cursor']}"


def test_text_output_is_one_tab_separated_line_per_change(db: Engine) -> None:
    """Without --json: a header and one line per change, the cursor last."""
    store(db, "sj_1")

    done = run(db)

    header, row = done.stdout.splitlines()
    assert header.split("\t")[:4] == ["seq", "changed_at", "kind", "scoring_job_id"]
    assert row.split("\t")[:5] == ["1", "2026-01-15T12:00:00Z", "created", "sj_1", "completed"]


def test_a_cursor_that_is_not_one_is_a_one_line_error(db: Engine) -> None:
    """--after garbage: exit 2, one stderr line naming --after, nothing on stdout."""
    done = run(db, "--after", "garbage", "--json")

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "--after" in done.stderr


@pytest.mark.slow
def test_follow_prints_changes_as_they_commit_and_stops_cleanly(db: Engine) -> None:
    """--follow: a change stored later is printed; Ctrl-C exits 0 with the resume cursor."""
    store(db, "sj_old")
    after_old = cursors.encode("changes", 1)
    command = [str(NOVA_SINK), "results", "changes", "--after", after_old, "--follow", "--json"]
    with subprocess.Popen(
        [*command, "--interval=0.1"],
        env=env_for(db),
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


def test_after_now_prints_nothing_of_the_past(db: Engine) -> None:
    """--after now on a store with history: no change, and the head as resume cursor."""
    store(db, "sj_1", "sj_2")

    done = run(db, "--after", "now", "--json")

    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.strip() == f"next cursor: {cursors.encode('changes', 2)}"


def test_stored_text_cannot_fake_columns_or_drive_the_terminal(db: Engine) -> None:
    """A job id with a tab, a newline and an escape sequence stays one inert cell."""
    with transaction(db) as s:
        s.insert_new_results(
            [completed("sj_1", job_id="job\t1\nfake\x1b[2J")],
            source="webhook",
            now=NOW,
            delivered=True,
        )
        s.log_changes([ResultChange("sj_1", "created")], now=NOW)

    done = run(db)

    _header, row = done.stdout.splitlines()
    assert "\x1b" not in done.stdout
    assert row.split("\t")[5] == "job\ufffd1\ufffdfake\ufffd[2J"
