"""The one way tests build a clean environment and start ``nova-sink`` as a real process.

``scrubbed_env`` is the parent's environment minus every nova-sink setting (a developer's
shell must never leak its ``DATABASE_URL`` or secrets into a test), plus what the test sets.
``run_cli_subprocess`` runs the installed console script with it to completion and checks
that no secret the test names appears on stdout or stderr; ``start_cli_process`` starts a
long-running one (``serve``, ``fake-nova``). Most CLI tests run in process instead
(``tests.cli_inproc.InProcessCli``); the subprocess is for what only a real process shows
(the console script starts, exit codes through ``sys.exit``, signals), and is ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The console script uv installed next to this interpreter.
NOVA_SINK = Path(sys.executable).parent / "nova-sink"
# Prefixes of every variable nova-sink (or its prometheus multiprocess mode) reads.
OWN_PREFIXES = ("NOVA_", "DATABASE_URL", "SQLITE_", "LOG_", "WEBHOOK_", "SINK_", "PROMETHEUS_")


@dataclass(frozen=True)
class Ran:
    """One finished CLI invocation, in process or as a subprocess."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed whole: it must be nothing but one JSON document."""
        return json.loads(self.out)

    @property
    def error_line(self) -> str:
        """The one stderr line of a failure (asserts there is exactly one, no traceback)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


def scrubbed_env(**extra: str) -> dict[str, str]:
    """The parent's environment minus every nova-sink setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update(extra)
    return env


def assert_no_secret(ran: Ran, secrets: Iterable[str], args: Iterable[str]) -> None:
    """No configured secret appears in either stream of ``ran``."""
    for secret in secrets:
        assert secret not in ran.out, f"{secret!r} leaked on stdout of {tuple(args)}"
        assert secret not in ran.err, f"{secret!r} leaked on stderr of {tuple(args)}"


def run_cli_subprocess(
    cwd: Path,
    *args: str,
    env: dict[str, str],
    input: str | None = None,
    secrets: Iterable[str] = (),
    timeout: float = 60,
) -> Ran:
    """Run ``nova-sink *args`` as a process in ``cwd`` with exactly ``env``."""
    proc = subprocess.run(
        [str(NOVA_SINK), *args],
        cwd=cwd,
        env=env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    ran = Ran(proc.returncode, proc.stdout, proc.stderr)
    assert_no_secret(ran, secrets, args)
    return ran


def start_cli_process(
    cwd: Path, *args: str, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start a long-running ``nova-sink *args`` (serve, fake-nova) in its own session, so
    that a test can signal its whole process group. Output goes to ``log_path``, never a
    pipe: a full pipe nobody reads would block the server."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(NOVA_SINK), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
