"""The installed ``nova-sink`` console script as a real process: a few smoke tests.

Everything the commands do is tested in process (``tests/test_cli.py`` and friends); these
check what only a real process shows: the entry point starts, exit codes survive
``sys.exit``, stdout and stderr stay apart through real pipes, and stdin is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli_subprocess, scrubbed_env
from tests.servers import migrated_database

pytestmark = pytest.mark.slow

SECRET = "whsec_process_smoke_secret_0123456789"
API_KEY = "sk_test_process_smoke_key_abcdef"


def test_the_console_script_starts_and_lists_its_commands(tmp_path: Path) -> None:
    """``nova-sink --help`` from the installed script: exit 0, usage and commands on stdout."""
    ran = run_cli_subprocess(tmp_path, "--help", env=scrubbed_env(COLUMNS="200"))

    assert ran.code == 0
    assert "Usage: nova-sink" in ran.out
    assert re.search(r"^\s+reconcile\s", ran.out, re.M)


def test_a_real_command_prints_json_on_stdout_and_logs_on_stderr_only(tmp_path: Path) -> None:
    """``db current --json`` on a migrated file: exit 0, stdout is one JSON document."""
    url = migrated_database(tmp_path / "sink.db")
    env = scrubbed_env(DATABASE_URL=url, NOVA_WEBHOOK_SECRETS=SECRET, LOG_FORMAT="json")

    ran = run_cli_subprocess(tmp_path, "db", "current", "--json", env=env, secrets=[SECRET])

    assert ran.code == 0, ran.err
    assert ran.json()["up_to_date"] is True


@pytest.mark.parametrize(
    ("args", "env_extra", "code", "names"),
    [
        (("serve", "--port", "1"), {"NOVA_WEBHOOK_SECRETS": ""}, 2, "NOVA_WEBHOOK_SECRETS"),
        (("reconcile",), {"NOVA_API_KEY": ""}, 2, "NOVA_API_KEY"),
        (("results", "show", "sj_nope"), {}, 1, "sj_nope"),
    ],
)
def test_exit_codes_and_one_line_errors_survive_the_real_process(
    tmp_path: Path, args: tuple[str, ...], env_extra: dict[str, str], code: int, names: str
) -> None:
    """Configuration errors exit 2 and a missing record exits 1, each as one stderr line."""
    url = migrated_database(tmp_path / "sink.db")
    settings = {
        "DATABASE_URL": url,
        "NOVA_WEBHOOK_SECRETS": SECRET,
        "NOVA_API_KEY": API_KEY,
        "NOVA_TENANT_ID": "acme-corp",
        "LOG_FORMAT": "json",
        **env_extra,
    }
    env = scrubbed_env(**{k: v for k, v in settings.items() if v})

    ran = run_cli_subprocess(tmp_path, *args, env=env, secrets=[SECRET, API_KEY])

    assert ran.code == code
    assert ran.out == ""
    assert names in ran.error_line


def test_a_prompt_reads_the_answer_from_the_real_stdin(tmp_path: Path) -> None:
    """``erase`` without ``--yes`` asks on stderr and an answer of "n" on stdin refuses (1)."""
    url = migrated_database(tmp_path / "sink.db")
    env = scrubbed_env(DATABASE_URL=url, NOVA_WEBHOOK_SECRETS=SECRET, LOG_FORMAT="json")

    ran = run_cli_subprocess(
        tmp_path, "erase", "--application-id", "app-001", env=env, input="n\n", secrets=[SECRET]
    )

    assert ran.code == 1
    assert "Erase every record of application app-001?" in ran.err
