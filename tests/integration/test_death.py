"""Actors that die: every pending and later call fails promptly with ActorDiedError; nothing hangs."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import llmos_actors as llmos
from llmos_actors.testing import start_daemon, wait_for

from actors import CrashesFromThread, ExitsInInit, FailsInInit, IgnoresSigterm, Probe, SlowStop
from gates import Gate


def _row(kernel, ref):
    return next(r for r in kernel.ps() if r["id"] == ref.id)


def test_exception_in_init(kernel):
    with pytest.raises(llmos.ActorDiedError, match="ValueError: bad config") as info:
        kernel.spawn(FailsInInit, name="fails-init")
    assert info.value.exitcode == 1
    assert "raise ValueError(message)" in info.value.remote_traceback
    row = next(r for r in kernel.ps() if r["name"] == "fails-init")
    assert row["state"] == "exited"
    assert "bad config" in row["exit"]["reason"]


def test_actor_crash_from_a_thread_fails_callers_with_the_reason_and_restarts(kernel):
    ref = kernel.spawn(CrashesFromThread, name="crasher", restart="transient")
    assert ref.call("ping") == "pong"
    with pytest.raises(llmos.ActorDiedError, match="the load broke") as info:
        ref.options(timeout=30).call("wait_then_crash", "the load broke")
    assert info.value.exitcode == 1 and "the load broke" in info.value.reason
    assert "RuntimeError: the load broke" in _row(kernel, ref)["last_exit"]["traceback"]
    assert ref.options(wait_restart=True, timeout=15).call("ping") == "pong"  # a crash: restarted


def test_exit_in_init_keeps_last_output(kernel):
    with pytest.raises(llmos.ActorDiedError, match="about to exit") as info:
        kernel.spawn(ExitsInInit)
    assert info.value.exitcode == 7


def test_unimportable_class(kernel):
    with pytest.raises(llmos.ActorImportError, match="no_such_module"):
        kernel.spawn("no_such_module:Thing")
    with pytest.raises(llmos.ActorImportError, match="has no attribute"):
        kernel.spawn("actors:NoSuchClass")
    with pytest.raises(llmos.ActorImportError, match="not a class"):
        kernel.spawn("actors:log")


def test_os_exit_fails_pending_and_later_calls(kernel, tmp_path):
    p = kernel.spawn(Probe)
    dying = p.ask("exit_now", 3)
    queued = [p.ask("hold", Gate(tmp_path).path) for _ in range(3)]  # behind the exit in the mailbox
    with pytest.raises(llmos.ActorDiedError) as info:
        dying.result(timeout=10)
    assert info.value.exitcode == 3
    for fut in queued:
        with pytest.raises(llmos.ActorDiedError):
            fut.result(timeout=5)
    started = time.monotonic()
    with pytest.raises(llmos.ActorDiedError, match="exited with code 3"):
        p.call("where")
    assert time.monotonic() - started < 1.0
    row = _row(kernel, p)
    assert row["state"] == "exited" and row["exit"]["exitcode"] == 3


def test_sigkill_from_outside(kernel, tmp_path):
    p = kernel.spawn(Probe)
    pid = p.call("where")["pid"]
    gate = Gate(tmp_path)
    pending = [p.ask("hold", gate.path) for _ in range(10)]
    gate.wait_held()  # one call running, nine queued: all must fail with the actor
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    for fut in pending:
        with pytest.raises(llmos.ActorDiedError) as info:
            fut.result(timeout=5)
        assert info.value.signal == signal.SIGKILL
    assert time.monotonic() - started < 3.0
    row = _row(kernel, p)
    assert row["exit"]["signal"] == signal.SIGKILL and row["exit"]["signal_name"] == "SIGKILL"


def test_blocking_call_in_progress_fails_on_death(kernel):
    p = kernel.spawn(Probe)
    pid = p.call("where")["pid"]
    fut = p.ask("kill_self")  # the actor kills itself while handling a call
    with pytest.raises(llmos.ActorDiedError):
        fut.result(timeout=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_new_client_sees_dead_actor(kernel, daemon):
    p = kernel.spawn(Probe, name="dead-later")
    kernel.kill(p, force=True)
    other = daemon.connect()
    try:
        ref = other.lookup("dead-later")
        with pytest.raises(llmos.ActorDiedError, match="SIGKILL"):
            ref.call("where")
    finally:
        other.close()
        daemon.kernels.remove(other)


def test_kill_escalates_to_sigkill_after_grace(kernel):
    p = kernel.spawn(IgnoresSigterm)
    assert p.call("ping") == "pong"
    started = time.monotonic()
    record = kernel.kill(p, grace=0.5)
    assert record["signal"] == signal.SIGKILL
    assert "SIGKILL" in record["reason"]
    assert time.monotonic() - started < 5


def test_kill_busy_actor(kernel, tmp_path):
    p = kernel.spawn(SlowStop)
    started = tmp_path / "busy"
    p.tell("busy", 30, str(started))
    wait_for(started.exists, 10, what="the busy method to start")
    record = kernel.kill(p, grace=0.3)
    assert record["signal"] == signal.SIGKILL


def test_kill_force(kernel):
    p = kernel.spawn(Probe)
    record = kernel.kill(p, force=True)
    assert record["signal"] == signal.SIGKILL
    assert kernel.kill(p) == record  # killing a dead actor returns its record


def _zygote(handle):
    return next(p for p in psutil.Process(handle.pid).children() if "zygote" in " ".join(p.cmdline()))


def test_actors_die_with_the_daemon_kill_9():
    with start_daemon() as d:
        k = d.connect()
        refs = [k.spawn(Probe) for _ in range(3)]
        pids = [r.call("where")["pid"] for r in refs]
        zygote = _zygote(d)
        os.kill(d.pid, signal.SIGKILL)
        d.process.wait(10)
        for pid in [*pids, zygote.pid]:
            wait_for(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10)
        with pytest.raises((llmos.ActorDiedError, llmos.DaemonUnavailable, llmos.CallTimeout)):
            refs[0].options(timeout=2).call("where")


def test_sigterm_stops_actors_gracefully_and_removes_sockets(tmp_path):
    with start_daemon(grace=0.5) as d:
        k = d.connect()
        p = k.spawn(Probe)
        stubborn = k.spawn(IgnoresSigterm)
        assert stubborn.call("ping") == "pong"
        flag = tmp_path / "stopped"
        p.call("set_stopped_file", str(flag))
        pids = [p.call("where")["pid"], psutil.Process(d.pid).children()[0].pid]
        k.close()
        d.kernels.clear()
        assert d.stop() == 0
        assert flag.read_text() == "stopped"
        assert not (d.runtime_dir / "control").exists()
        assert not (d.runtime_dir / "a").exists()
        for pid in pids:
            assert not psutil.pid_exists(pid)
        assert "SIGKILL" in d.log_text()  # the stubborn one was killed after the grace period


def test_sigint_stops_the_daemon():
    with start_daemon() as d:
        k = d.connect()
        k.spawn(Probe)
        k.close()
        d.kernels.clear()
        d.process.send_signal(signal.SIGINT)
        assert d.process.wait(20) == 0


def test_second_daemon_on_same_runtime_dir_is_refused():
    with start_daemon() as d:
        import subprocess
        import sys

        env = dict(os.environ, LLMOS_RUNTIME_DIR=str(d.runtime_dir))
        out = subprocess.run(
            [sys.executable, "-m", "llmos_actors.cli", "daemon"], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 4
        assert "another llmos daemon is running" in out.stderr


def test_death_notices_arrive_while_the_caller_reads_the_control_socket(kernel):
    # A blocking call on the control socket reads it on the caller's thread, which can eat the
    # fd edge the IO loop waits on. A death notice arriving meanwhile must still be seen:
    # calls to the dead actor then fail at once instead of waiting out their timeout.
    for _ in range(5):
        probe = kernel.spawn(Probe)
        pid = probe.call("where")["pid"]  # opens the connection: the daemon now reports its death
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda p=probe: _row(kernel, p)["state"] == "exited", 10)  # ps calls while the notice comes
        started = time.monotonic()
        with pytest.raises(llmos.ActorDiedError):
            probe.options(timeout=10).call("where")
        assert time.monotonic() - started < 5


def test_a_client_frees_its_socket_to_an_actor_gone_for_good(kernel):
    me = psutil.Process()
    warm = kernel.spawn(Probe)  # the client's own sockets and threads exist before counting
    warm.call("where")
    kernel.kill(warm)
    before = me.num_fds()
    refs = []
    for _ in range(30):
        ref = kernel.spawn(Probe)
        ref.call("where")
        kernel.kill(ref)
        refs.append(ref)
    wait_for(lambda: me.num_fds() <= before + 4, 10, what="the dead actors' sockets to be closed")
    for ref in (refs[0], refs[-1]):  # a ref that still holds the closed connection
        with pytest.raises(llmos.ActorDiedError, match="stopped by request"):
            ref.call("where")
    fresh = kernel.lookup(refs[-1].id)  # a new handle to the dead actor: a new connection, same answer
    with pytest.raises(llmos.ActorDiedError):
        fresh.call("where")
