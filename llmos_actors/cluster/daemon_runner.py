"""``python -m llmos_actors.cluster.daemon_runner BASE``: a node's daemon, and its directory's cleanup.

The agent starts this runner (which dies with the agent's worker), the runner starts
``llmos daemon``. On SIGTERM (the agent stopping, or its worker dying with the node) it stops
the daemon and removes BASE, the private directory holding the daemon's keys and sockets.
If the daemon exits by itself, BASE stays: the agent starts a new daemon there.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def main(base: Path) -> int:
    def die_with_runner() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    proc = subprocess.Popen([sys.executable, "-m", "llmos_actors.cli", "daemon"], preexec_fn=die_with_runner)
    (base / "daemon.pid").write_text(f"{proc.pid}\n")
    stopping = []

    def stop(_signum: int, _frame: object) -> None:
        stopping.append(True)
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    code = proc.wait()
    if stopping:
        shutil.rmtree(base, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
