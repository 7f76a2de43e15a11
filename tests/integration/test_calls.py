"""Request/reply end to end: spawn, call, tell, ask, lookup, kill, ps, errors, refs."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import llmos_actors as llmos
from llmos_actors.testing import wait_for

from actors import Counter, NotAnActor, Probe, Relay
from gates import Gate


def test_spawn_call_tell_ask(kernel):
    c = kernel.spawn(Counter, 10, name="counter")
    assert c.call("incr", 5) == 15
    c.tell("incr", 1)
    fut = c.ask("incr", 1)
    assert fut.result(timeout=10) == 17
    assert c.call("get") == 17


def test_spawn_by_import_string_and_plain_class(kernel):
    ref = kernel.spawn("actors:Counter", start=3)
    assert ref.call("incr") == 4
    plain = kernel.spawn(NotAnActor, 9)
    assert plain.call("value") == 9


def test_arguments_and_values_round_trip(kernel):
    c = kernel.spawn(Counter)
    value = {"a": [1, 2.5, "x", None, True], "b": b"\x00\xff", "n": -(2**40), 7: "int key"}
    assert c.call("echo", value) == value
    assert c.call("echo_kwargs", 1, 2, method="kw named method", x=3) == [[1, 2], {"method": "kw named method", "x": 3}]


def test_lookup_by_name_and_id(kernel):
    c = kernel.spawn(Counter, 1, name="look-me-up")
    assert kernel.lookup("look-me-up").call("get") == 1
    assert kernel.lookup(c.id).call("get") == 1
    with pytest.raises(llmos.ActorNotFound):
        kernel.lookup("nobody-has-this-name")


def test_name_taken(kernel):
    kernel.spawn(Counter, name="unique")
    with pytest.raises(llmos.NameTaken):
        kernel.spawn(Counter, name="unique")


def test_remote_error_carries_type_message_traceback(kernel):
    p = kernel.spawn(Probe)
    with pytest.raises(llmos.RemoteError) as info:
        p.call("raise_value_error", "bad thing")
    err = info.value
    assert err.remote_type == "ValueError"
    assert err.remote_message == "bad thing"
    assert "raise_value_error" in err.remote_traceback
    assert "Traceback" in err.remote_traceback
    assert p.call("where")["pid"] > 0  # still serving


def test_sync_methods_on_main_thread_async_on_loop(kernel):
    p = kernel.spawn(Probe)
    assert p.call("where")["is_main_thread"] is True
    info = p.call("where_async")
    assert info["is_main_thread"] is True
    assert info["loop"].startswith("uvloop")


def test_hooks_and_framework_attributes(kernel):
    p = kernel.spawn(Probe, "m", name="probe-hooks")
    info = p.call("where")
    assert info["started"] is True
    assert info["name"] == "probe-hooks"
    assert info["id"] == p.id


def test_private_and_hook_methods_are_not_callable(kernel):
    p = kernel.spawn(Probe)
    for name in ("_private", "on_start", "on_stop", "actor_ref", "__init__"):
        with pytest.raises(llmos.MethodNotFound):
            p.call(name)


def test_reply_later_with_awaitable(kernel):
    p = kernel.spawn(Probe)
    assert p.call("later", 42) == 42


def test_ps_shows_pid_and_state(kernel):
    p = kernel.spawn(Probe, name="ps-me")
    row = next(r for r in kernel.ps() if r["id"] == p.id)
    assert row["state"] == "running"
    assert row["pid"] == p.call("where")["pid"]
    assert row["name"] == "ps-me"
    assert row["rss"] > 0


def test_kill_returns_exit_record(kernel, tmp_path):
    p = kernel.spawn(Probe)
    flag = tmp_path / "stopped"
    p.call("set_stopped_file", str(flag))
    record = kernel.kill(p)
    assert record["exitcode"] == 0
    assert flag.read_text() == "stopped"  # on_stop ran
    with pytest.raises(llmos.ActorDiedError):
        p.call("where")


def test_many_concurrent_asks(kernel):
    c = kernel.spawn(Counter)
    futures = [c.ask("incr") for _ in range(5000)]
    results = [f.result(timeout=30) for f in futures]
    assert sorted(results) == list(range(1, 5001))
    assert results == list(range(1, 5001))  # per-sender FIFO


def test_tell_then_call_is_ordered(kernel):
    c = kernel.spawn(Counter)
    for _ in range(2000):
        c.tell("incr")
    assert c.call("get") == 2000


def test_refs_travel_in_messages(kernel):
    target = kernel.spawn(Counter, 100)
    relay = kernel.spawn(Relay, target)
    assert relay.call("call_target", "incr", 1) == 101
    other = kernel.spawn(Counter, 5)
    assert relay.call("call_ref", other, "incr", 2) == 7
    assert relay.call("call_ref_async", other, "incr", 3) == 10
    back = relay.call("my_ref")
    assert isinstance(back, llmos.ActorRef)
    assert back == relay


def test_actor_spawns_actor(kernel):
    relay = kernel.spawn(Relay)
    child = relay.call("spawn_child", 41)
    assert child.call("incr") == 42


def test_calls_do_not_go_through_the_daemon(kernel, daemon):
    """With the daemon frozen (SIGSTOP), calls to a running actor still complete."""
    c = kernel.spawn(Counter)
    c.call("incr")  # connection established
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        assert [c.call("incr") for _ in range(50)][-1] == 51
    finally:
        os.kill(daemon.pid, signal.SIGCONT)


def test_call_timeout(kernel, tmp_path):
    p = kernel.spawn(Probe)
    gate = Gate(tmp_path)
    with pytest.raises(llmos.CallTimeout):
        p.options(timeout=0.2).call("hold", gate.path)  # shut until the caller has given up
    gate.open()
    # the actor is fine afterwards (the late reply is dropped)
    assert p.call("where")["pid"] > 0
    assert gate.held() == 1


def test_options_validate(kernel):
    c = kernel.spawn(Counter)
    with pytest.raises(ValueError):
        c.options(priority=99)
    with pytest.raises(TypeError):
        c.options(bogus=1)


def test_unserializable_argument_is_a_clear_local_error(kernel):
    c = kernel.spawn(Counter)
    with pytest.raises(TypeError, match="pickle is never used"):
        c.call("echo", object())


def test_numpy_and_torch_values(kernel):
    import numpy as np
    import torch

    p = kernel.spawn(Probe)
    arr = p.call("make_array", 5)
    assert isinstance(arr, np.ndarray) and arr.tolist() == [0, 1, 2, 3, 4]
    t = p.call("make_tensor", 4)
    assert isinstance(t, torch.Tensor) and t.tolist() == [0, 1, 2, 3]
    big = np.ones(100_000, dtype=np.float64)  # travels as its own frame
    assert p.call("sum_array", big) == 100_000.0
    assert p.call("sum_array", torch.ones(3, 4)[:, 1]) == 3.0  # non-contiguous


def test_async_client(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as kernel:
            c = await kernel.spawn(Counter, 1)
            results = await asyncio.gather(*(c.call("incr") for _ in range(1000)))
            assert sorted(results) == list(range(2, 1002))
            await c.tell("incr", 10)
            assert await c.call("get") == 1011
            rows = await kernel.ps()
            assert any(r["id"] == c.id for r in rows)
            await kernel.kill(c)
            with pytest.raises(llmos.ActorDiedError):
                await c.call("get")

    asyncio.run(main())


def test_await_connect_async(daemon):
    async def main():
        kernel = await llmos.connect_async(config=daemon.config)
        try:
            assert (await kernel.status())["pid"] == daemon.pid
        finally:
            await kernel.close()

    asyncio.run(main())


def test_connect_without_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(llmos.DaemonUnavailable, match="llmos daemon"):
        llmos.connect(str(tmp_path / "nothing-here"))


def test_closed_kernel(daemon):
    k = daemon.connect()
    k.close()
    with pytest.raises(llmos.ClosedError):
        k.ps()
    daemon.kernels.remove(k)


def test_status_reports_inventory(kernel):
    status = kernel.status()
    assert status["inventory"]["cores"] == sorted(os.sched_getaffinity(0))
    assert "torch" in status["fork_server"]["preloaded"]
    assert wait_for(lambda: kernel.status()["actors"] is not None)
