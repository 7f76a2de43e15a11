"""Ray, driven from a subprocess: started on first use, shut down at the end of the run.

Ray runs in its own driver process (``ray_driver.py``), never in ours: ``ray.init``
starts a local cluster, threads and signal handlers that would stay in the
benchmark process and disturb what runs after it. One driver serves every Ray
peer of a run, so the 2-4 s of ``ray.init`` are paid once. Its interpreter is
ours when Ray is installed here (``pip install llmos-actors[peers]``), or any
other given with ``--ray-python``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .payload import PAYLOAD
from .workload import Workload

#: Keeps Ray on loopback (else it binds the default route's address) and offline.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

DRIVER = Path(__file__).with_name("ray_driver.py")

#: Seconds for ``ray.init`` to come up; for any single request (a 256 MiB round is < 5 s).
START_TIMEOUT = 180.0
REQUEST_TIMEOUT = 300.0


class RayError(RuntimeError):
    """The Ray driver failed or stopped answering."""


class RaySession:
    """The Ray driver process of one benchmark run.

    Args:
        python: the interpreter to run it with (default: this one).
        log_path: where the driver's stderr goes (Ray's own messages).
    """

    def __init__(self, python: str | None, log_path: Path) -> None:
        self.python = python or sys.executable
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.failure: str | None = None
        self.version = ""
        self._buf = b""
        self._next_id = 0

    # ------------------------------------------------------------------ life
    def unavailable(self) -> str | None:
        """Why Ray cannot be used (None: it is up). Starts the driver on first call."""
        if self.proc is None and self.failure is None:
            try:
                self._start()
            except (OSError, RayError) as exc:
                self.failure = str(exc)
                self._kill()
        return self.failure

    def _start(self) -> None:
        # Ray's session files (logs, sockets) go under the run's own directory, which the
        # run removes; by default they would pile up in /tmp/ray.
        env = {**os.environ, **RAY_ENV, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(self.log_path.parent / "ray")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, str(DRIVER), "--payload-hex", _payload_hex()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self.log_path.parent,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        hello = self._read(START_TIMEOUT)
        if not hello.get("ok"):
            raise RayError(hello.get("error") or "the Ray driver failed to start")
        self.version = hello.get("ray", "")

    def close(self) -> None:
        """Shut Ray down (``ray.shutdown`` in the driver), then make sure its process group is gone."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(b'{"op": "quit"}\n')
                    proc.stdin.flush()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(60)
        finally:
            self._kill()

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started, by its id
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    # ------------------------------------------------------------------ requests
    def request(self, msg: dict, timeout: float = REQUEST_TIMEOUT) -> dict:
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise RayError(self.failure or "the Ray driver is not running")
        try:
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            proc.stdin.flush()
        except OSError as exc:
            raise RayError(f"the Ray driver is gone: {exc}{self._log_tail()}") from exc
        reply = self._read(timeout)
        if not reply.get("ok"):
            raise RayError(reply.get("error") or "the Ray driver failed")
        return reply

    def open(self, kind: str, **params: Any) -> RayWorkload:
        self._next_id += 1
        wid = self._next_id
        reply = self.request({"op": "open", "id": wid, "kind": kind, "params": params})
        return RayWorkload(self, wid, reply["ops"], reply.get("note", ""))

    def _read(self, timeout: float) -> dict:
        """The next reply line, within ``timeout`` seconds."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RayError(f"the Ray driver did not answer within {timeout:.0f} s{self._log_tail()}")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RayError(f"the Ray driver exited{self._log_tail()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return (": " + lines[-1][:300]) if lines else ""


class RayWorkload(Workload):
    """A workload that lives in the Ray driver; each round is timed over there."""

    def __init__(self, session: RaySession, wid: int, ops: float, note: str) -> None:
        self.session = session
        self.wid = wid
        self.ops = ops
        self.note = note

    def round(self) -> float:
        return float(self.session.request({"op": "round", "id": self.wid})["secs"])

    def close(self) -> None:
        if self.session.proc is not None:
            with contextlib.suppress(RayError):
                self.session.request({"op": "close", "id": self.wid})


def _payload_hex() -> str:
    import msgpack

    return msgpack.packb(PAYLOAD).hex()
