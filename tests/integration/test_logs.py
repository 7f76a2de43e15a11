"""Actor output captured by the daemon: tagged, per-actor files, rotated, followable, kept on crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import llmos_actors as llmos
from llmos_actors.testing import start_daemon, wait_for

from actors import Probe


def _read_until(stream, text: str, timeout: float = 15.0) -> str:
    """Read a subprocess pipe until its output contains ``text`` (deadline, no sleeps)."""
    import select
    import time

    deadline = time.monotonic() + timeout
    seen = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            if text.encode() in seen:
                return seen.decode()
    raise TimeoutError(f"no output with {text!r} within {timeout} s; got {seen[-500:]!r}")


def _lines(kernel, name):
    return kernel.logs(name)["lines"]


def test_stdout_stderr_and_log_records_are_captured(kernel):
    p = kernel.spawn(Probe, "x", name="logger")
    pid = p.call("where")["pid"]
    p.call("say", "hello out")
    p.call("say", "hello err", "err")
    p.call("log_record", "a warning record")
    want = [f"logger[{pid}] out: hello out", f"logger[{pid}] err: hello err", "WARNING tests.actors: a warning record"]
    wait_for(lambda: all(any(w in line for line in _lines(kernel, "logger")) for w in want), 10, what=str(want))
    assert any("probe x started" in line for line in _lines(kernel, "logger"))  # on_start's print
    path = kernel.logs("logger")["path"]
    assert path.endswith("/logs/logger.log") and os.path.exists(path)


def test_logs_outlive_the_actor(kernel):
    p = kernel.spawn(Probe, name="short-lived")
    p.call("say", "remember me")
    kernel.kill(p)
    wait_for(lambda: any("remember me" in line for line in _lines(kernel, "short-lived")), 10)
    assert any("stopping" in line for line in _lines(kernel, "short-lived"))  # on_stop's print


def test_crash_keeps_last_lines_with_exit_record(kernel):
    p = kernel.spawn(Probe, name="crasher")
    p.call("say", "last words before the crash")
    with pytest.raises(llmos.ActorDiedError):
        p.call("exit_now", 5)
    row = next(r for r in kernel.ps() if r["id"] == p.id)
    assert row["exit"]["exitcode"] == 5
    assert any("last words before the crash" in line for line in row["exit"]["tail"])


def test_rotation_caps_size():
    with start_daemon(log_max_bytes=20_000, log_backups=2) as d:
        k = d.connect()
        p = k.spawn(Probe, name="chatty")
        p.call("spam", 3000, 60)
        logs = d.config.state_dir / "logs"
        wait_for(lambda: (logs / "chatty.log.2").exists(), 10)
        k.kill(p)
        files = sorted(f.name for f in logs.iterdir() if f.name.startswith("chatty"))
        assert files == ["chatty.log", "chatty.log.1", "chatty.log.2"]
        for f in files:
            assert (logs / f).stat().st_size < 20_000 + 200


def test_echo_to_daemon_stderr_for_the_journal():
    with start_daemon(log_to_stderr=True) as d:
        k = d.connect()
        p = k.spawn(Probe, name="journaled")
        pid = p.call("where")["pid"]
        p.call("say", "to the journal")
        wait_for(lambda: f"journaled[{pid}] out: to the journal" in d.log_text(), 10)


def test_cli_logs_follow(kernel, daemon):
    p = kernel.spawn(Probe, name="followed")
    p.call("say", "before follow")
    env = dict(os.environ, LLMOS_RUNTIME_DIR=str(daemon.runtime_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmos_actors.cli", "logs", "followed", "-f"],
        env=env,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    try:
        _read_until(proc.stdout, "before follow")
        p.call("say", "after follow")
        _read_until(proc.stdout, "after follow")
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def _open_log_files(daemon) -> int:
    logs = str(daemon.config.state_dir / "logs")
    count = 0
    for fd in os.listdir(f"/proc/{daemon.pid}/fd"):
        try:
            count += os.readlink(f"/proc/{daemon.pid}/fd/{fd}").startswith(logs)
        except OSError:
            pass  # closed while we looked
    return count


def test_the_daemon_closes_an_actors_log_file_once_it_has_exited(daemon, kernel):
    before = _open_log_files(daemon)
    for _ in range(20):
        ref = kernel.spawn(Probe)
        ref.call("say", "hello")
        kernel.kill(ref)
    wait_for(lambda: _open_log_files(daemon) <= before, 10, what="the exited actors' log files to close")
    assert kernel.logs(ref.id)["lines"]  # the file stays on disk for `llmos logs`


def test_log_files_of_forgotten_actors_are_deleted(tmp_path):
    with start_daemon(keep_exited=3) as daemon:
        kernel = daemon.connect()
        logs = daemon.config.state_dir / "logs"
        ids = []
        for _ in range(6):
            ref = kernel.spawn(Probe)
            ref.call("say", "hello")
            kernel.kill(ref)
            ids.append(ref.id)
        named = kernel.spawn(Probe, name="keeper")
        named.call("say", "first life")
        kernel.kill(named)
        again = kernel.spawn(Probe, name="keeper")  # a second life, running
        for _ in range(3):  # push the first "keeper" out of the table
            kernel.kill(kernel.spawn(Probe))
        names = {p.name for p in logs.iterdir()}
        assert f"{ids[0]}.log" not in names and f"{ids[1]}.log" not in names, names  # forgotten
        assert "keeper.log" in names  # a newer incarnation of that name still writes there
        assert any("first life" in line for line in kernel.logs("keeper")["lines"])
        assert kernel.logs(ids[0])["lines"] == []
        assert len(names) == 4, names  # the three most recent exits keep theirs, and "keeper"
        kernel.kill(again)
