"""The ``nova-sink`` command line run in this process (``receiver.cli.run(argv)``).

``InProcessCli`` gives each invocation an environment that holds only the nova-sink settings
the test sets, runs in the test's ``tmp_path`` (no stray ``.env``), captures stdout and
stderr apart with ``capsys``, checks that no configured secret ever appears in either, and
restores the process's structlog configuration afterwards.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from receiver.cli import run
from tests.cli_helpers import OWN_PREFIXES, Ran, assert_no_secret

__all__ = [
    "API_KEY",
    "SECRETS",
    "SINK_KEY",
    "TENANT",
    "WEBHOOK_SECRET",
    "InProcessCli",
    "Ran",
    "default_env",
]

WEBHOOK_SECRET = "whsec_inproc_primary_secret_0123456"
API_KEY = "sk_test_inproc_api_key_9f8e7d"
SINK_KEY = "sink-inproc-read-key-0123456789abcdef"
SECRETS = (WEBHOOK_SECRET, API_KEY, SINK_KEY)
TENANT = "acme-corp"


@dataclass
class InProcessCli:
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    env: dict[str, str] = field(default_factory=dict)
    secrets: Sequence[str] = SECRETS

    def __call__(self, *args: str, input: str = "", **env: str) -> Ran:
        """Run ``nova-sink *args``; ``env`` adds or (with "") removes variables."""
        merged = {**self.env, **env}
        self.capsys.readouterr()
        with self.monkeypatch.context() as patch:
            for name in list(os.environ):
                if name.startswith(OWN_PREFIXES):
                    patch.delenv(name)
            for name, value in merged.items():
                if value != "":
                    patch.setenv(name, value)
            patch.chdir(self.tmp_path)
            patch.setattr(sys, "stdin", io.StringIO(input))
            # The command configures structlog onto this capture's stderr, which closes
            # with the test: later apps in this process must not log into it.
            saved = structlog.get_config()
            try:
                code = run(list(args))
            finally:
                structlog.configure(**saved)
        out, err = self.capsys.readouterr()
        ran = Ran(code, out, err)
        assert_no_secret(ran, self.secrets, args)
        return ran


def default_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "NOVA_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "NOVA_API_KEY": API_KEY,
        "NOVA_TENANT_ID": TENANT,
        "SINK_SECRET_KEY": SINK_KEY,
        "LOG_FORMAT": "json",
        "COLUMNS": "200",
        **extra,
    }
