"""``nova-sink demo``: the zero-configuration tour, run as a user would, from an empty directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import Ran, run_cli_subprocess, scrubbed_env

pytestmark = pytest.mark.slow


def run_demo(cwd: Path, *args: str) -> Ran:
    """``nova-sink demo`` with no configuration at all: no nova-sink variable, no .env."""
    return run_cli_subprocess(cwd, "demo", *args, env=scrubbed_env(), timeout=90)


def test_demo_without_configuration_converges_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Exit 0, the proof table and CONVERGED; the working directory stays empty."""
    demo = run_demo(tmp_path)

    assert demo.code == 0, demo.err
    lines = demo.out.splitlines()
    assert lines[-1].startswith("CONVERGED: all ")
    assert any(line.startswith("3. reconcile checked") for line in lines)
    assert "Traceback" not in demo.err
    assert list(tmp_path.iterdir()) == []


def test_demo_json_reports_convergence_per_batch(tmp_path: Path) -> None:
    """--json: one object with converged true, every batch equal, no mismatches."""
    demo = run_demo(tmp_path, "--json", "--seed", "11")

    assert demo.code == 0, demo.err
    report = json.loads(demo.out)
    assert report["converged"] is True
    assert report["mismatches"] == []
    assert report["batches"]
    assert all(batch["equal"] == "yes" for batch in report["batches"])
    assert report["reconcile"]["converged"] is True
    assert report["database"] is None  # not kept without --keep
