"""The per-node agent: a Ray actor pinned to one node that runs and watches that node's ``llmos daemon``.

It writes the daemon's config and keys into a private directory of its own, starts the
daemon listening with TCP + CURVE on the node's address, and restarts it if it exits while
the agent lives. The daemon gets ``PR_SET_PDEATHSIG``: if Ray's worker (hence the node)
dies, the daemon is told to stop, and its actors die with it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .._rpc.tcp import free_tcp_ports
from .keys import CLIENT_NAME, NODE_NAME, ClusterKeys, write_daemon_keys

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: Seconds a daemon gets to say "ready" after it starts.
READY_TIMEOUT = 60.0
#: Seconds between checks that the daemon still runs.
WATCH_PERIOD = 0.2
#: The other nodes' daemons, for this node's topic relay (in the agent's directory).
PEERS_FILE = "peers.json"


def _die_with_parent() -> None:  # the runner: SIGTERM when the agent's thread that started it dies
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _daemon_config(host: str, port: int, base: Path, keys: tuple[Path, Path, Path], settings: dict) -> str:
    server_key, authorized, node_key = keys
    lines = [f"{k} = {v!r}" for k, v in settings.items() if isinstance(v, (int, float))]
    lines += [
        "[network]",
        f'listen = ["tcp://{host}:{port}"]',
        f'server_key = "{server_key}"',
        f'authorized_keys = "{authorized}"',
        "[security]",
        f'roles = {{ "key:{CLIENT_NAME}" = "admin", "key:{NODE_NAME}" = "user" }}',
        "[cluster]",  # topics across nodes: the peers file is kept current by set_peers
        f'peers = "{base / PEERS_FILE}"',
        f'node_key = "{node_key}"',
        f'relay_identity = "key:{NODE_NAME}"',
    ]
    return "\n".join(lines) + "\n"


class NodeAgent:
    """Runs one node's daemon. Methods are called by the registry through Ray."""

    def __init__(self, keys: ClusterKeys, node_id: str, settings: dict | None = None) -> None:
        self.keys = keys
        self.node_id = node_id
        self.settings = dict(settings or {})
        self.host = ""
        self.port = 0
        self.base: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.ready_pid: int | None = None  # the daemon that last said "ready" (None while one starts)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------------ Ray-facing methods
    def start(self) -> dict:
        """Start the daemon (once) and return where it listens."""
        import ray

        with self._lock:
            if self.proc is None:
                self.host = ray.util.get_node_ip_address()
                self.base = Path(tempfile.mkdtemp(prefix="llmos-node-", dir="/tmp"))
                self.port = free_tcp_ports(3, self.host)
                self._launch()
                self._watcher = threading.Thread(target=self._watch, name="llmos-daemon-watch", daemon=True)
                self._watcher.start()
        return self.info()

    def info(self) -> dict:
        return {
            "node_id": self.node_id,
            "endpoint": f"tcp://{self.host}:{self.port}",
            "host": self.host,
            "pid": self.ready_pid,
            "restarts": self.restarts,
            "runtime_dir": str(self.base / "rt") if self.base else "",
        }

    def stop(self) -> int | None:
        """Stop the daemon (SIGTERM, then SIGKILL after 20 s) and remove its directory."""
        self._stopping.set()
        with self._lock:
            proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            code = proc.returncode
        if self._watcher is not None:
            self._watcher.join(2)
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
        return code

    def set_peers(self, peers: dict[str, str]) -> None:
        """The other nodes' daemon endpoints (``{node_id: tcp://host:port}``); the daemon's relay follows the file."""
        with self._lock:
            if self.base is None:
                return
            others = {node_id: endpoint for node_id, endpoint in peers.items() if node_id != self.node_id}
            tmp = self.base / (PEERS_FILE + ".tmp")
            tmp.write_text(json.dumps({"peers": others}))
            tmp.replace(self.base / PEERS_FILE)  # whole or not at all for the reader

    def kill_daemon(self) -> int:
        """SIGKILL the daemon (tests use it to check the agent restarts it); returns the old pid."""
        pid = self.ready_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        return pid

    # ------------------------------------------------------------------ the daemon process
    def _launch(self) -> None:
        assert self.base is not None
        rt, state = self.base / "rt", self.base / "state"
        keys = write_daemon_keys(self.keys, self.base)
        config = self.base / "llmosd.toml"
        config.write_text(_daemon_config(self.host, self.port, self.base, keys, self.settings))
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update({"LLMOS_RUNTIME_DIR": str(rt), "LLMOS_STATE_DIR": str(state), "LLMOS_CONFIG": str(config)})
        log_path = self.base / "daemon.log"
        self.ready_pid = None
        (self.base / "daemon.pid").unlink(missing_ok=True)
        if log_path.exists():  # keep the last incarnation's log; "ready at" must come from this one
            log_path.replace(self.base / "daemon.log.1")
        with open(log_path, "wb") as log_fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmos_actors.cluster.daemon_runner", str(self.base)],
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llmos daemon exited with {self.proc.returncode}: {log_path.read_text()[-2000:]}")
            pid_file = self.base / "daemon.pid"
            if (rt / "control").exists() and pid_file.exists() and "ready at" in log_path.read_text(errors="replace"):
                self.ready_pid = int(pid_file.read_text())
                return
            self._stopping.wait(0.05)
        raise RuntimeError(f"llmos daemon not ready within {READY_TIMEOUT} s: {log_path.read_text()[-2000:]}")

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_PERIOD):
            with self._lock:
                proc = self.proc
                if proc is None or proc.poll() is None or self._stopping.is_set():
                    continue
                log.warning("llmos daemon %s exited with %s: restarting it", proc.pid, proc.returncode)
                self.restarts += 1
                try:
                    self._launch()
                except Exception:  # a failed restart is retried on the next tick
                    log.exception("restarting the llmos daemon failed")

    def __repr__(self) -> str:
        return f"NodeAgent({self.node_id[:8]} {self.host}:{self.port})"


def agent_options(node_id: str, namespace: str) -> dict[str, Any]:
    """Ray options pinning an agent to ``node_id`` for good (hard affinity: never elsewhere).

    Named and detached: it outlives a registry that Ray restarts, which finds it again by name.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {
        "name": f"llmos-agent-{node_id}",
        "namespace": namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": 0,
        "max_concurrency": 4,  # info/stop while the watcher thread runs
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        "max_restarts": 0,
    }
