"""``nova-sink demo``: the zero-configuration tour, run as a user would, from an empty directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOVA_SINK = Path(sys.executable).parent / "nova-sink"
_OWN_PREFIXES = ("NOVA_", "DATABASE_URL", "SQLITE_", "LOG_", "WEBHOOK_", "SINK_")


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``nova-sink demo`` with no configuration at all: no nova-sink variable, no .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    return subprocess.run(
        [str(NOVA_SINK), "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_demo_without_configuration_converges_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Exit 0, the proof table and CONVERGED; the working directory stays empty."""
    demo = run_demo(tmp_path)

    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    assert lines[-1].startswith("CONVERGED: all ")
    assert any(line.startswith("3. reconcile checked") for line in lines)
    assert "Traceback" not in demo.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_json_reports_convergence_per_batch(tmp_path: Path) -> None:
    """--json: one object with converged true, every batch equal, no mismatches."""
    demo = run_demo(tmp_path, "--json", "--seed", "11")

    assert demo.returncode == 0, demo.stderr
    report = json.loads(demo.stdout)
    assert report["converged"] is True
    assert report["mismatches"] == []
    assert report["batches"]
    assert all(batch["equal"] == "yes" for batch in report["batches"])
    assert report["reconcile"]["converged"] is True
    assert report["database"] is None  # not kept without --keep
