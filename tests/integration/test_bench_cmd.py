"""``llmos bench`` end to end: its own daemon, or a running one; table, JSON, plot, missing peers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_actors import Kernel
from llmos_actors.testing import DaemonHandle

pytestmark = pytest.mark.slow


def llmos(*args: str, env: dict[str, str] | None = None, timeout: float = 100) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "LLMOS_RUNTIME_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "llmos_actors.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_quick_run_of_cheap_cases_prints_a_table_and_writes_json_and_a_plot(tmp_path: Path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    plot = ["--plot", str(out_png)] if _has_matplotlib() else []
    proc = llmos(
        "bench",
        "--quick",
        "--peers",
        "--ray-python",
        str(tmp_path / "no-such-python"),
        "--json",
        str(out_json),
        *plot,
        "1_1_actor_calls_sync",
        "pubsub_fanout_4",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    row = next(line for line in lines if line.startswith("1_1_actor_calls_sync"))
    assert "llmos" in row and "calls/s" in row
    assert any("pyzmq REQ/REP" in line for line in lines)
    # A peer that cannot run is skipped with its reason, on one line; the run goes on.
    ray_row = next(line for line in lines if line.split()[:1] == ["Ray"])
    assert "skipped:" in ray_row and "no-such-python" in ray_row
    assert "llmos bench: [1/" in proc.stderr  # progress, on stderr

    doc = json.loads(out_json.read_text())
    assert doc["machine"]["nproc"] >= 1 and doc["settings"]["quick"] is True
    sync, pubsub = doc["cases"]
    assert sync["name"] == "1_1_actor_calls_sync" and sync["llmos"]["status"] == "ok"
    assert sync["llmos"]["value"] > 0 and len(sync["llmos"]["samples"]) == 3
    zmq = next(p for p in sync["peers"] if p["peer"] == "zmq_req_rep")
    assert zmq["status"] == "ok" and zmq["llmos_advantage"] == pytest.approx(sync["llmos"]["value"] / zmq["value"])
    ray = next(p for p in sync["peers"] if p["peer"] == "ray_sync")
    assert ray["status"] == "skipped" and "value" not in ray
    assert pubsub["name"] == "pubsub_fanout_4" and pubsub["llmos"]["status"] == "ok"
    if plot:
        assert out_png.read_bytes().startswith(b"\x89PNG")


def test_unknown_case_is_a_usage_error():
    proc = llmos("bench", "--quick", "no_such_case")
    assert proc.returncode == 2
    assert "no benchmark case 'no_such_case'" in proc.stderr and "1_1_actor_calls_sync" in proc.stderr


def test_uses_a_running_daemon_and_kills_only_its_own_actors(daemon: DaemonHandle, kernel: Kernel):
    mine = kernel.spawn("actors:Counter", name="bystander")
    proc = llmos("--runtime-dir", str(daemon.runtime_dir), "bench", "--quick", "--json", "-", "tell_throughput")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["settings"]["daemon"] == str(daemon.runtime_dir)
    assert doc["cases"][0]["llmos"]["status"] == "ok"
    live = [row["name"] or row["id"] for row in kernel.ps(exited=False)]
    assert live == ["bystander"]
    assert mine.call("incr") == 1


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_mutex_case_contends_on_the_kernel_mutex_and_leaves_it_free(daemon: DaemonHandle, kernel: Kernel):
    proc = llmos(
        "--runtime-dir", str(daemon.runtime_dir), "bench", "--quick", "--peers", "--json", "-", "mutex_cycles_2proc"
    )
    assert proc.returncode == 0, proc.stderr
    (case,) = json.loads(proc.stdout)["cases"]
    assert case["llmos"]["status"] == "ok" and case["llmos"]["value"] > 0
    (peer,) = case["peers"]
    assert peer["who"] == "multiprocessing.Lock" and peer["status"] == "ok" and peer["value"] > 0
    sync = kernel.status()["sync"]  # the contenders are gone, and so is their hold
    assert "bench-mutex" not in json.dumps([sync["busy"], sync["waits"]]), sync
