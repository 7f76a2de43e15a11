"""Test helpers for llmos users (and our own tests): a real daemon in a temporary runtime dir.

Registered as a pytest plugin, so in any project that installs llmos-actors::

    def test_counter(llmos_kernel):
        ref = llmos_kernel.spawn("mypkg.actors:Counter", 1)
        assert ref.call("incr") == 2

``start_daemon`` starts a real ``llmos daemon`` process and waits for it to
answer; on exit it stops it and checks it left no process and no shared-memory
file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ._rpc.tcp import free_tcp_ports  # noqa: F401  (tests find it here)
from .client import Kernel, connect
from .config import Config, load_config
from .errors import DaemonUnavailable, LlmosError


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError after ``timeout``.

    The one way our tests wait for another process: a state with a deadline, never a bare sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or predicate!r}")
        time.sleep(interval)


def drain_then_mark(publisher: Any, sub: Any, topic: str, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """Messages ``sub`` reads until ``quiet`` seconds pass without one, then up to an ``"end-marker"``
    that ``publisher`` publishes on ``topic`` after them (not counted): what a topic test compares
    with what was published and dropped."""
    from .errors import CallTimeout

    received = 0
    while True:
        try:
            sub.get(timeout=quiet)
            received += 1
        except CallTimeout:
            break
    publisher.publish(topic, "end-marker")
    while sub.get(timeout=timeout)[1] != "end-marker":
        received += 1
    return received


def shm_files(instance: str | None = None) -> set[str]:
    """Our files in /dev/shm (all llmos ones, or one daemon instance's)."""
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return set()
    prefix = f"llmos-{instance}" if instance else "llmos"
    return {n for n in names if n.startswith(prefix)}


@dataclass
class DaemonHandle:
    """A daemon started by ``start_daemon``."""

    config: Config
    process: subprocess.Popen
    log_path: Path
    kernels: list[Kernel] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def runtime_dir(self) -> Path:
        return self.config.runtime_dir

    def connect(self) -> Kernel:
        kernel = connect(config=self.config)
        self.kernels.append(kernel)
        return kernel

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL the whole tree if it does not exit in time."""
        for kernel in self.kernels:
            kernel.close()
        self.kernels.clear()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for proc in self.descendants():
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                self.process.kill()
                self.process.wait(5)
                raise LlmosError(
                    f"daemon {self.pid} did not stop within {timeout} s:\n{self.log_text()[-4000:]}"
                ) from None
        return self.process.returncode


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_text(settings: dict[str, Any]) -> str:
    """Config settings as TOML: plain keys, then one ``[section]`` per dict (``scheduler={...}``)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for section, values in settings.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def short_tmpdir(prefix: str = "llmos-t-") -> Path:
    """A private temp dir with a short path (unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextlib.contextmanager
def start_daemon(
    runtime_dir: str | os.PathLike[str] | None = None,
    *,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    check_leaks: bool = True,
    **settings: Any,
) -> Iterator[DaemonHandle]:
    """Run ``llmos daemon`` in a subprocess until the block ends.

    Args:
        runtime_dir: where its sockets go (default: a fresh short temp dir, removed afterwards).
        timeout: seconds to wait for it to answer.
        env: extra environment for the daemon.
        check_leaks: after it stops, fail if any of its processes or /dev/shm files remain.
        **settings: config keys written to a config file for it (e.g. ``grace=1.0``); a dict
            value is a TOML table (``pages={"size": "64MiB"}``).
    """
    own_dir = runtime_dir is None
    base = short_tmpdir() if own_dir else Path(runtime_dir).parent  # type: ignore[arg-type]
    rdir = base / "rt" if own_dir else Path(runtime_dir)  # type: ignore[arg-type]
    state = base / "state" if own_dir else rdir.parent / (rdir.name + "-state")
    config_file = base / "llmosd.toml"
    config_file.write_text(toml_text(settings))
    config = load_config(
        {"runtime_dir": rdir, "state_dir": state},
        config_file=config_file,
        env={},  # isolate from the caller's env
    )
    log_path = base / "daemon.log"
    child_env = dict(os.environ)
    child_env.pop("NOTIFY_SOCKET", None)
    child_env.update({"LLMOS_RUNTIME_DIR": str(rdir), "LLMOS_STATE_DIR": str(state), "LLMOS_CONFIG": str(config_file)})
    child_env.update(env or {})
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmos_actors.cli", "daemon", "--log-level", "DEBUG"],
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,  # Ctrl-C in the test terminal is not the daemon's business
        )
    handle = DaemonHandle(config, proc, log_path)
    try:
        _wait_ready(handle, timeout)
        yield handle
    finally:
        try:
            handle.stop()
        finally:
            # Its processes die with it, but not in the same instant (death signals and
            # lifelines take a few ms to land): a leak is one still there after 5 s.
            leftovers: list[psutil.Process] = []
            try:
                wait_for(lambda: not daemon_processes(handle.runtime_dir), 5.0, 0.02)
            except TimeoutError:
                leftovers = daemon_processes(handle.runtime_dir)
            for p in leftovers:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            shm = shm_files(config.instance)
            for name in shm:
                with contextlib.suppress(OSError):
                    os.unlink(f"/dev/shm/{name}")
            if own_dir:
                shutil.rmtree(base, ignore_errors=True)
            if check_leaks and (leftovers or shm):
                raise AssertionError(
                    f"daemon left processes {[p.pid for p in leftovers]} and /dev/shm files {sorted(shm)}"
                )


def daemon_processes(runtime_dir: Path) -> list[psutil.Process]:
    """Live processes (fork server, actors) of the daemon instance at ``runtime_dir``, orphans included.

    They are found by the ``LLMOS_RUNTIME_DIR`` they inherited, wherever they were re-parented.
    """
    found = []
    want = str(runtime_dir)
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or "llmos_actors" not in " ".join(
                proc.info["cmdline"] or ()
            ):
                continue
            if proc.pid != os.getpid() and proc.environ().get("LLMOS_RUNTIME_DIR") == want:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_ready(handle: DaemonHandle, timeout: float) -> None:
    control = handle.runtime_dir / "control"

    def ready() -> bool:
        if handle.process.poll() is not None:
            raise LlmosError(f"daemon exited with {handle.process.returncode}:\n{handle.log_text()[-4000:]}")
        return control.exists() and "ready at" in handle.log_text()

    try:
        wait_for(ready, timeout, 0.02)
    except TimeoutError:
        handle.stop()
        raise DaemonUnavailable(f"daemon not ready within {timeout} s:\n{handle.log_text()[-4000:]}") from None


# ---------------------------------------------------------------------------- pytest plugin
try:
    import pytest
except ImportError:  # pragma: no cover - only without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def llmos_daemon() -> Iterator[DaemonHandle]:
        """A real daemon for the whole test session."""
        with start_daemon() as handle:
            yield handle

    @pytest.fixture
    def llmos_kernel(llmos_daemon: DaemonHandle) -> Iterator[Kernel]:
        """A kernel handle on the session daemon; actors it spawned are killed afterwards."""
        kernel = connect(config=llmos_daemon.config)
        before = {row["id"] for row in kernel.ps()}
        try:
            yield kernel
        finally:
            try:
                for row in kernel.ps(exited=False):
                    if row["id"] not in before:
                        kernel.kill(row["id"], force=True)
            finally:
                kernel.close()
