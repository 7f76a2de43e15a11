"""The daemon checks what clients send itself: topics, spawn and pool requests, actor-only methods.

Each test plays a client that skips the library's own checks (raw sockets or the raw
control call), as an attacker on the same machine would, and shows the daemon refuses
the request clearly, keeps nothing of it, and stays responsive.
"""

from __future__ import annotations

import time

import msgpack
import psutil
import pytest
import zmq

import llmos_actors as llmos
from llmos_actors._wire.topics import array_body, pub_header
from llmos_actors.config import PUBLISH_SOCKET
from llmos_actors.testing import wait_for

from actors import Counter


def _raw_publisher(daemon):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(daemon.config.endpoint(PUBLISH_SOCKET))
    return pub


def _publish_raw(pub, topic: bytes, body: object) -> None:
    pub.send_multipart([topic, pub_header(1), array_body([msgpack.packb(body)])])


def _events_of(daemon) -> dict:
    with daemon.connect() as k:
        return k.status()["topics"]


def test_forged_system_event_is_refused_and_audited(daemon, kernel):
    ref = kernel.spawn(Counter, name="forge-target")
    pub = _raw_publisher(daemon)
    try:
        with kernel.subscribe("sys.actor.exited") as victim_view, kernel.subscribe("sys.audit") as audit:
            # The subscriber is live; keep publishing until the daemon has seen the publisher (slow joiner).
            def refused():
                _publish_raw(pub, b"sys.actor.exited", {"actor": ref.id, "name": "forge-target", "reason": "forged"})
                return _events_of(daemon)["refused"] > 0

            wait_for(refused, 10, what="the daemon to refuse a forged sys. topic")
            _topic, event = audit.get(timeout=5)
            while event.get("request") != "publish":
                _topic, event = audit.get(timeout=5)
            assert event["action"] == "refused" and "reserved" in event["reason"]
            with pytest.raises(TimeoutError):
                victim_view.get(timeout=0.3)
        assert ref.call("incr") == 1  # nothing happened to it
    finally:
        pub.close(0)


def test_long_and_non_utf8_topics_cost_the_daemon_nothing(daemon, kernel):
    pub = _raw_publisher(daemon)
    try:
        with kernel.subscribe("x") as sub:
            before = _events_of(daemon)["refused"]
            marker = 0

            def seen():
                nonlocal marker
                marker += 1
                _publish_raw(pub, b"x" * (256 * 1024), 1)  # was a 15 s stall of the daemon's loop
                _publish_raw(pub, b"x\xff\xfe", 2)
                return _events_of(daemon)["refused"] >= before + 2

            wait_for(seen, 10, what="the daemon to refuse both topics")
            start = time.monotonic()
            kernel.status()
            assert time.monotonic() - start < 0.5
            with pytest.raises(TimeoutError):
                sub.get(timeout=0.2)
    finally:
        pub.close(0)


def test_a_batch_that_lies_about_its_counts_is_malformed(daemon, kernel):
    """Counts a publisher writes in its header are bounded: a huge ``n`` or ``pd`` once overflowed
    the daemon's counters until ``status`` could not be sent (the long fuzz run found it)."""
    pub = _raw_publisher(daemon)
    try:
        body = array_body([msgpack.packb(1)])
        before = _events_of(daemon)["malformed"]

        def refused():
            pub.send_multipart([b"lie", pub_header(1 << 63), body])
            pub.send_multipart([b"lie", pub_header(1, pd=(1 << 64) - 1), body])
            return _events_of(daemon)["malformed"] > before

        wait_for(refused, 10, what="the daemon to count the lying batch as malformed")
        for _ in range(3):
            pub.send_multipart([b"lie", pub_header(1 << 63), body])
            pub.send_multipart([b"lie", pub_header(1, pd=(1 << 64) - 1), body])
        status = kernel.status()["topics"]  # still packable: no counter beyond 64 bits
        assert status["published"] < 1 << 40
    finally:
        pub.close(0)


def test_subscription_prefix_matching_is_not_quadratic(kernel):
    # Many subscribers of short prefixes, one long topic: the daemon answers at once.
    subs = [kernel.subscribe(f"p{i}.") for i in range(20)]
    try:
        start = time.monotonic()
        for _ in range(200):
            kernel.publish("q" * 1000, 1)
        kernel.status()
        assert time.monotonic() - start < 2.0
    finally:
        for s in subs:
            s.close()


def _starting(kernel) -> list[dict]:
    return [r for r in kernel.ps() if r["state"] == "starting"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": 7}, "name"),
        ({"name": ["a"]}, "name"),
        ({"priority": 11}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"cls": "not a class"}, "module:Class"),
        ({"args": "text"}, "args"),
        ({"env": {"A": 1}}, "env"),
        ({"mailbox_size": 0}, "mailbox_size"),
        ({"restart": "sometimes"}, "restart"),
        ({"cpus": [-1]}, "cpus"),
        ({"surprise": 1}, "unknown"),
        ({"path": ["x"] * 10_000}, "path"),
    ],
)
def test_bad_spawn_requests_are_refused_by_the_daemon(daemon, kernel, change, needle):
    good = llmos._spawnspec.build_spawn_request(kernel._core.codec, Counter, (), {}, {})
    proc = psutil.Process(daemon.pid)
    fds = proc.num_fds()
    with pytest.raises(llmos.ProtocolError, match=needle):
        kernel._control("spawn", {**good, **change})
    assert not _starting(kernel)
    assert proc.num_fds() <= fds
    assert kernel.spawn(Counter).call("incr") == 1  # the daemon is fine


def test_refused_spawns_leave_no_reserved_core(daemon, kernel):
    good = llmos._spawnspec.build_spawn_request(kernel._core.codec, Counter, (), {}, {})
    proc = psutil.Process(daemon.pid)
    fds = proc.num_fds()
    for _ in range(11):
        with pytest.raises(llmos.ProtocolError):
            kernel._control("spawn", {**good, "name": 7, "cpus": 1, "exclusive": True})
    assert not _starting(kernel)
    assert proc.num_fds() <= fds
    # The exclusive core of each refused request is free: an exclusive spawn still finds one.
    ref = kernel.spawn(Counter, cpus=1, exclusive=True)
    assert ref.call("incr") == 1
    kernel.kill(ref)


def test_spawn_arguments_over_the_limit_get_a_clear_error(daemon, kernel):
    from llmos_actors._spawnspec import MAX_SPAWN_ARGS_BYTES

    with pytest.raises(ValueError, match="MAX_SPAWN_ARGS_BYTES"):
        kernel.spawn_with(Counter, (b"x" * (MAX_SPAWN_ARGS_BYTES + 1),))
    good = llmos._spawnspec.build_spawn_request(kernel._core.codec, Counter, (), {}, {})
    with pytest.raises(llmos.ProtocolError, match="MAX_SPAWN_ARGS_BYTES"):
        kernel._control("spawn", {**good, "args": b"x" * (MAX_SPAWN_ARGS_BYTES + 1)}, timeout=60)
    assert kernel.spawn(Counter).call("incr") == 1  # the fork server lives


def test_spawn_args_bound_fits_the_fork_server_frame():
    from llmos_actors._kernel.zygote import MAX_FRAME
    from llmos_actors._spawnspec import MAX_ENV_BYTES, MAX_PATH_CHARS, MAX_PATH_ENTRIES, MAX_SPAWN_ARGS_BYTES

    assert MAX_SPAWN_ARGS_BYTES + MAX_ENV_BYTES * 2 + MAX_PATH_ENTRIES * MAX_PATH_CHARS * 2 < MAX_FRAME


@pytest.mark.parametrize(
    "change",
    [{"member": {"cls": 5}}, {"member": {"cls": "tests:Counter", "priority": 11}}, {"size": 10**9}, {"name": 3}],
)
def test_bad_pool_requests_are_refused_by_the_daemon(kernel, change):
    request = {"member": {"cls": "actors:Counter", "args": b"\x92\x90\x80"}, "size": 1, "min": 1, "max": 1}
    request.update(change)
    with pytest.raises(llmos.ProtocolError, match="invalid pool request"):
        kernel._control("pool_create", request)
    assert not _starting(kernel)


def test_actor_only_methods_answer_only_the_actor(daemon, kernel):
    ref = kernel.spawn(Counter, name="spoofed")
    with pytest.raises(llmos.PermissionDenied):
        kernel._control("actor_ready", ref.id, {})
    with pytest.raises(llmos.PermissionDenied):
        kernel._control("actor_failed", ref.id, {"type": "Forged", "message": "forged"}, "guess")
    with pytest.raises(llmos.PermissionDenied):
        kernel._control("heartbeat", ref.id, {"calls": -1})
    assert ref.call("incr") == 1
    kernel.kill(ref)
    row = next(r for r in kernel.ps() if r["id"] == ref.id)
    assert "Forged" not in str(row["exit"])


def test_audit_events_carry_the_daemons_identity(daemon, kernel):
    with kernel.subscribe("sys.audit") as audit:
        kernel.audit({"action": "tool_call", "tool": "shell", "by": "someone-else"})
        topic, event = audit.get(timeout=5)
        assert topic == "sys.audit"
        assert event["action"] == "reported" and event["event"]["tool"] == "shell"
        assert event["by"].startswith("uid:") and "pid:" in event["by"]
        ref = kernel.spawn(Counter, name="audited")
        kernel.kill(ref)
        actions = []
        while len(actions) < 2:
            _, event = audit.get(timeout=5)
            actions.append((event["action"], event.get("name")))
        assert actions == [("spawn", "audited"), ("kill", "audited")]
    with pytest.raises(llmos.ProtocolError, match="16384"):
        kernel.audit({"blob": "x" * 20_000})
    with pytest.raises(llmos.ProtocolError):
        kernel.audit(["not", "a", "map"])
    assert "audit: reported by uid:" in daemon.log_text()


def test_async_audit(daemon):
    import asyncio

    async def main():
        async with llmos.connect_async(config=daemon.config) as k:
            await k.audit({"action": "async"})

    asyncio.run(main())


def test_malformed_requests_are_audited(kernel):
    with kernel.subscribe("sys.audit") as audit:
        with pytest.raises(llmos.ProtocolError):
            kernel._control("spawn", {"cls": "x:Y", "name": 7})
        _, event = audit.get(timeout=5)
        assert event["action"] == "refused" and event["request"] == "spawn" and "name" in event["reason"]
        assert event["by"].startswith("uid:")
