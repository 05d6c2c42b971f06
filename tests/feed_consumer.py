"""A change-feed consumer, run as a process by ``tests/test_feed_e2e.py``.

It is what product code would do: long-poll ``GET /api/changes`` and process each change.
Its log file is its whole state: each processed change is one appended line holding the
change and its cursor, written by one ``os.write``; on start it resumes after the cursor
of the last complete line (a torn last line was never processed and is cut off). So a
``kill -9`` at any moment neither loses a change nor repeats one.

Usage: ``python -m tests.feed_consumer BASE_URL LOG_FILE`` with ``FEED_TOKEN`` set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx


def resume_cursor(log: Path) -> str | None:
    """The cursor of the last complete line; truncates a torn line left by a kill."""
    if not log.exists():
        return None
    data = log.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with log.open("r+b") as handle:
            handle.truncate(len(complete))
    lines = complete.splitlines()
    return str(json.loads(lines[-1])["cursor"]) if lines else None


def main(base_url: str, log_path: str) -> None:
    log = Path(log_path)
    cursor = resume_cursor(log)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    headers = {"Authorization": f"Bearer {os.environ['FEED_TOKEN']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=40) as client:
        while True:
            params: dict[str, str | int] = {"limit": 5, "wait": 5}
            if cursor is not None:
                params["after"] = cursor
            answer = client.get("/api/changes", params=params)
            answer.raise_for_status()
            for change in answer.json()["data"]:
                os.write(fd, (json.dumps(change) + "\n").encode())
                cursor = change["cursor"]


if __name__ == "__main__":
    main(*sys.argv[1:3])
