"""``llmos stats`` and ``llmos top`` against a daemon whose actors record latency histograms."""

from __future__ import annotations

import json
import subprocess
import sys

from llmos_actors.cli.__main__ import main
from llmos_actors.testing import start_daemon, wait_for
from tests.actors import Counter, SlowStop


def test_stats_prints_latency_percentiles(capsys, tmp_path) -> None:
    with start_daemon(metrics={"timings": True}) as d, d.connect() as kernel:
        rd = str(d.runtime_dir)
        c = kernel.spawn(Counter, name="fast")
        for _ in range(30):
            c.call("incr")
        slow = kernel.spawn(SlowStop, name="slow")
        for _ in range(3):
            slow.call("busy", 0.03)
        wait_for(
            lambda: all((r["stats"].get("timings") or {}).get("run", {}).get("count") for r in kernel.ps(exited=False)),
            timeout=10,
            what="histograms in heartbeats",
        )
        assert main(["--runtime-dir", rd, "stats", "slow", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["run"]["count"] == 3
        assert 0.025 <= result["run"]["p50"] <= 0.05  # each run spun 30 ms: the 25-50 ms bucket
        assert main(["--runtime-dir", rd, "stats", "fast"]) == 0
        out = capsys.readouterr().out
        assert "P99" in out and "run" in out and "queue wait" in out
        assert main(["--runtime-dir", rd, "stats", "nobody"]) == 3
        # --watch refreshes until interrupted: two frames, then stop it.
        log = tmp_path / "watch.txt"
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llmos_actors.cli",
                    "--runtime-dir",
                    rd,
                    "stats",
                    "fast",
                    "--watch",
                    "-n",
                    "0.2",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: log.read_text().count("run p99 history") >= 2, timeout=20, what="two frames")
        finally:
            proc.terminate()
            proc.wait(10)
        assert "last 0.2 s" in log.read_text()
        # top shows a calls/s and a CPU sparkline per actor.
        assert main(["--runtime-dir", rd, "top", "--once", "-n", "0.2"]) == 0
        out = capsys.readouterr().out
        assert "CALLS/S HISTORY" in out and "CPU HISTORY" in out and "fast" in out


def test_stats_explains_when_nothing_is_recorded(capsys) -> None:
    with start_daemon() as d, d.connect() as kernel:
        kernel.spawn(Counter, name="untimed").call("incr")
        assert main(["--runtime-dir", str(d.runtime_dir), "stats", "untimed"]) == 1
        assert "[metrics]" in capsys.readouterr().err
