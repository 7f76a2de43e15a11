"""The README's first command runs ``clients/demo.py``: it must keep working, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_actors import Kernel
from llmos_actors.testing import DaemonHandle

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "clients" / "demo.py"


def test_demo_runs_against_a_running_daemon_and_stops_what_it_started(daemon: DaemonHandle, kernel: Kernel):
    env = {k: v for k, v in os.environ.items() if k != "LLMOS_RUNTIME_DIR"}
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--runtime-dir", str(daemon.runtime_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"using the running daemon at {daemon.runtime_dir}" in out
    for line in (
        "where each actor runs:",
        "processed 1000 tells before the call",
        "ahead of",
        "read-only=True",
        "answered",
        "demo finished cleanly",
    ):
        assert line in out, out
    assert kernel.ps(exited=False) == []  # every actor it spawned is stopped
