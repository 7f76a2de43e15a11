"""Message passing: pipelining, pub/sub, streaming, deadlines, backpressure, guarantees."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import llmos_actors as llmos
from llmos_actors.testing import drain_then_mark, start_daemon, wait_for

from actors import Counter, Listener, Probe, Streamer
from gates import Gate


def _stats(kernel, ref) -> dict:
    return next(r for r in kernel.ps() if r["id"] == ref.id)["stats"]


# ------------------------------------------------------------------ pipelining


def test_thousands_of_async_calls_in_flight(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as kernel:
            c = await kernel.spawn(Counter)
            results = await asyncio.gather(*(c.call("incr") for _ in range(10_000)))
            assert results == list(range(1, 10_001))  # one connection, FIFO, every reply matched
            await kernel.kill(c)

    asyncio.run(main())


def test_every_call_gets_exactly_one_outcome(kernel):
    p = kernel.spawn(Probe)
    futures = []
    for i in range(300):
        if i % 3 == 0:
            futures.append(("ok", p.ask("two_args", i, 1)))
        elif i % 3 == 1:
            futures.append(("err", p.ask("raise_value_error", str(i))))
        else:
            futures.append(("missing", p.ask("no_such_method")))
    for expect, fut in futures:
        exc = fut.exception(timeout=10)
        if expect == "ok":
            assert exc is None
        elif expect == "err":
            assert isinstance(exc, llmos.RemoteError)
        else:
            assert isinstance(exc, llmos.MethodNotFound)


# ------------------------------------------------------------------ pub/sub


def test_publish_subscribe_prefix(kernel):
    with kernel.subscribe("weather.") as sub:
        kernel.publish("weather.paris", {"t": 12})
        kernel.publish("sport.football", "ignored")
        kernel.publish("weather.oslo", [1, 2])
        assert sub.get(timeout=5) == ("weather.paris", {"t": 12})
        assert sub.get(timeout=5) == ("weather.oslo", [1, 2])
        with pytest.raises(llmos.CallTimeout):
            sub.get(timeout=0.2)
        assert sub.dropped == 0


def test_order_per_publisher_and_topic(kernel):
    with kernel.subscribe("seq.") as sub:
        for i in range(5000):
            kernel.publish("seq.a", i)
        got = [sub.get(timeout=10)[1] for _ in range(5000)]
    assert got == list(range(5000))


def test_actor_subscriptions_declared_and_dynamic(kernel):
    listener = kernel.spawn(Listener)
    kernel.publish("news.today", {"headline": "hi"})
    wait_for(lambda: ["news.today", {"headline": "hi"}] in listener.call("received"), 10)
    listener.call("listen", "alerts.")
    kernel.publish("alerts.fire", 1)
    wait_for(lambda: ["extra", "alerts.fire", 1] in listener.call("received"), 10)


def test_async_subscribe(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as kernel, await kernel.subscribe("async.") as sub:
            for i in range(100):
                kernel.publish("async.x", i)
            got = [(await sub.get(timeout=5))[1] for _ in range(100)]
            assert got == list(range(100))
            kernel.publish("async.y", "last")
            async for topic, msg in sub:
                assert (topic, msg) == ("async.y", "last")
                break

    asyncio.run(main())


def test_system_events(kernel):
    with kernel.subscribe("sys.actor.") as sub:
        p = kernel.spawn(Probe, name="evented")
        topic, msg = sub.get(timeout=10)
        assert topic == "sys.actor.started" and msg["name"] == "evented" and msg["pid"] > 0
        os.kill(msg["pid"], signal.SIGKILL)
        topic, msg = sub.get(timeout=10)
        while topic != "sys.actor.exited":
            topic, msg = sub.get(timeout=10)
        assert msg["name"] == "evented" and msg["signal"] == signal.SIGKILL
        with pytest.raises(llmos.ActorDiedError):
            p.call("where")


def test_topic_validation(kernel):
    with pytest.raises(ValueError, match="exceeds the limit"):
        kernel.publish("x" * (10 * 1024 * 1024), 1)
    with pytest.raises(ValueError, match="reserved"):
        kernel.publish("sys.actor.exited", {})
    with pytest.raises(TypeError):
        kernel.publish(b"bytes", 1)
    with pytest.raises(TypeError, match="pickle"):
        kernel.publish("ok.topic", object())


def test_many_topics(kernel):
    with kernel.subscribe("many.") as sub:
        for i in range(100_000):
            kernel.publish(f"many.{i}", i)
        received = drain_then_mark(kernel, sub, "many.end")
        assert received + sub.dropped == 100_000  # every message delivered or counted as missed
    assert kernel.status()["topics"]["subscribers"] >= 0  # the daemon is fine


def test_slow_client_subscriber_loses_messages_and_counts_them():
    with start_daemon(topic_queue=2) as d:
        kernel = d.connect()
        lazy = kernel.subscribe("flood.")  # never reads during the flood
        with kernel.subscribe("flood.") as fast:
            fast_received = 0
            blob = "x" * 1000  # big enough that the transport's buffers cannot hide the backlog
            for _ in range(10):
                for i in range(3000):
                    kernel.publish("flood.x", [i, blob])
                kernel._core.publisher().flush()
                fast_received += drain_then_mark(kernel, fast, "flood.mark", 0.2) + 1  # the fast one keeps up
            published = 30_000 + 10  # payloads and markers
            assert fast_received + fast.dropped == published
            received = drain_then_mark(kernel, lazy, "flood.end")
            assert lazy.dropped > 0
            assert received + lazy.dropped == published  # nothing lost silently
            status = kernel.status()["topics"]
            assert status["dropped"] >= lazy.dropped and status["slowest"][0]["dropped"] > 0
        lazy.close()


def test_slow_actor_subscriber_drops_are_counted_in_ps(tmp_path):
    with start_daemon(topic_queue=2, heartbeat_interval=0.2) as d:
        kernel = d.connect()
        listener = kernel.spawn(Listener)
        gate = Gate(tmp_path)
        listener.tell("hold", gate.path)
        gate.wait_held()  # busy: the messages below pile up behind the call
        for i in range(100_000):
            kernel.publish("bench.x", i)
        kernel._core.publisher().flush()

        def drops():
            return _stats(kernel, listener).get("topic_drops", 0)

        wait_for(lambda: drops() > 0, 15, what="topic drops in ps")
        gate.open()
        wait_for(lambda: listener.call("counted") + drops() == 100_000, 30, what="every message counted")
        assert listener.call("counted") > 0


def test_cli_pub_sub(daemon):
    env = dict(os.environ, LLMOS_RUNTIME_DIR=str(daemon.runtime_dir))
    sub = subprocess.Popen(
        [sys.executable, "-m", "llmos_actors.cli", "sub", "cli.", "--count", "2", "--timeout", "30"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert '"subscribed"' in sub.stdout.readline()
        for i in range(2):
            out = subprocess.run(
                [sys.executable, "-m", "llmos_actors.cli", "pub", "cli.topic", f'{{"n": {i}}}'],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
        lines = [sub.stdout.readline(), sub.stdout.readline()]
        assert sub.wait(30) == 0
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
        sub.stdout.close()
    assert '{"topic": "cli.topic", "msg": {"n": 0}}' in lines[0]
    assert '{"n": 1}' in lines[1]


# ------------------------------------------------------------------ streaming


def test_stream_items_then_end(kernel):
    s = kernel.spawn(Streamer)
    assert list(s.stream("count", 200)) == list(range(200))
    assert s.call("state")["closed"] == [200]


def test_stream_close_cancels_producer(kernel):
    s = kernel.spawn(Streamer)
    with s.stream("endless") as it:
        assert [next(it) for _ in range(10)] == list(range(10))
    wait_for(lambda: "endless" in s.call("state")["closed"], 10, what="generator closed")
    produced = s.call("state")["produced"]
    assert produced <= 10 + 64 + 1  # credit: never more than a window ahead of the consumer
    assert s.call("state")["produced"] == produced  # stopped producing


def test_stream_error_after_items(kernel):
    s = kernel.spawn(Streamer)
    it = s.stream("count", 10, fail_at=3)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(llmos.RemoteError, match="failed at 3"):
        next(it)


def test_async_generator_stream(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as kernel:
            s = await kernel.spawn(Streamer)
            got = [x async for x in s.stream("acount", 100)]
            assert got == list(range(100))
            it = s.stream("acount", 1000)
            async for x in it:
                if x == 5:
                    break
            await it.aclose()
            await kernel.kill(s)

    asyncio.run(main())


def test_streams_interleave_with_calls(kernel):
    s = kernel.spawn(Streamer)
    it = s.stream("endless")
    next(it)
    assert s.call("state")["produced"] >= 1  # calls are served while a stream is open
    it.close()


def test_stream_misuse(kernel):
    s = kernel.spawn(Streamer)
    with pytest.raises(llmos.LlmosError, match=r"ref\.stream"):
        s.call("count", 3)
    c = kernel.spawn(Counter)
    with pytest.raises(llmos.LlmosError, match="not a generator"):
        list(c.stream("incr"))


def test_abandoned_stream_when_caller_dies(kernel, daemon):
    s = kernel.spawn(Streamer, name="abandoned")
    script = textwrap.dedent(
        f"""
        import os, llmos_actors as llmos
        k = llmos.connect({str(daemon.runtime_dir)!r})
        it = k.lookup("abandoned").stream("endless")
        next(it); next(it)
        print("reading", flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "reading" in out.stdout, out.stderr
    wait_for(lambda: "endless" in s.call("state")["closed"], 15, what="abandoned stream cancelled")


# ------------------------------------------------------------------ deadlines


def test_expired_calls_are_dropped_unrun(kernel, tmp_path):
    c = kernel.spawn(Counter)
    p = kernel.spawn(Probe)
    gate = Gate(tmp_path)
    blocker = p.ask("hold", gate.path)
    gate.wait_held()
    doomed = [p.options(timeout=0.2).ask("two_args", 1, 2) for _ in range(5)]
    for fut in doomed:
        with pytest.raises(llmos.CallTimeout):
            fut.result(timeout=5)
    gate.open()  # only now does the actor reach them: past their deadline
    assert blocker.result(timeout=5) is True
    wait_for(lambda: _stats(kernel, p).get("expired", 0) == 5, 10)
    c.options(timeout=5).tell("incr")  # a tell with a deadline that is met runs
    assert c.call("get") == 1


# ------------------------------------------------------------------ backpressure


class _Flood:
    def __init__(self, ref, seconds: float) -> None:
        self.ref = ref
        self.seconds = seconds
        self.sent = 0
        self.refused = 0

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            for _ in range(100):
                try:
                    if self.ref.tell("work", 0.0005):  # a slow consumer: ~2,000 messages/s
                        self.sent += 1
                    else:
                        self.refused += 1
                except llmos.MailboxFull:
                    self.refused += 1


@pytest.mark.parametrize("overflow", ["block", "drop", "raise"])
def test_flood_keeps_memory_bounded(kernel, overflow, tmp_path):
    slow = kernel.spawn(Probe, mailbox_size=100, overflow=overflow)
    actor = psutil.Process(slow.call("where")["pid"])
    gate = Gate(tmp_path)
    stall = slow.ask("hold_until_arrived", gate.path, 100)  # stalled until the flood fills the mailbox
    gate.wait_held()
    me = psutil.Process()
    rss_actor, rss_me = actor.memory_info().rss, me.memory_info().rss
    flood = _Flood(slow if overflow == "block" else slow.options(timeout=0.5), 3.0)
    flood.run()
    assert stall.result(timeout=10) is True
    grown_actor = actor.memory_info().rss - rss_actor
    grown_me = me.memory_info().rss - rss_me
    assert grown_actor < 64 * 1024 * 1024, grown_actor
    assert grown_me < 64 * 1024 * 1024, grown_me
    if overflow == "drop":
        wait_for(lambda: _stats(kernel, slow).get("dropped", 0) > 0, 10)
    elif overflow == "raise":
        assert flood.refused > 0
    else:
        assert flood.refused == 0 and flood.sent > 0  # held back, never refused


def test_raise_policy_refuses_quickly(kernel, tmp_path):
    p = kernel.spawn(Probe, mailbox_size=10, overflow="raise")
    p.tell("hold", Gate(tmp_path).path)  # never opened: the actor never catches up
    with pytest.raises(llmos.MailboxFull):
        for _ in range(1_000_000):
            p.tell("two_args", 1, 2)


def test_drop_policy_rejects_calls_with_mailbox_full(kernel, tmp_path):
    p = kernel.spawn(Probe, mailbox_size=5, overflow="drop")
    gate = Gate(tmp_path)
    busy = p.ask("hold_until_arrived", gate.path, 200)  # busy while all 200 meet its mailbox
    gate.wait_held()
    futures = [p.ask("two_args", 1, 1) for _ in range(200)]
    assert busy.result(timeout=30) is True
    outcomes = [f.exception(timeout=10) for f in futures]
    assert any(isinstance(e, llmos.MailboxFull) for e in outcomes)
    assert outcomes.count(None) == 5  # the five that found room ran


def test_blocked_tell_waits_for_room(kernel, tmp_path):
    p = kernel.spawn(Probe, mailbox_size=10, overflow="block")
    gate = Gate(tmp_path)
    busy = p.ask("hold_until_arrived", gate.path, 10)  # busy until the flood has filled the mailbox
    gate.wait_held()
    done = threading.Event()

    def flood():
        for _ in range(50_000):
            p.tell("two_args", 1, 2)
        done.set()

    t = threading.Thread(target=flood)
    t.start()
    assert busy.result(timeout=30) is True
    t.join(60)
    assert done.is_set()  # the producer was held back, then finished once the actor caught up
    assert p.call("two_args", 2, 2) == 4


# ------------------------------------------------------------------ actor to actor


def test_actor_calls_actor_and_replies_later(kernel):
    from actors import Relay

    target = kernel.spawn(Counter, 1)
    relay = kernel.spawn(Relay, target)
    futures = [relay.ask("call_target", "incr", 1) for _ in range(20)]
    assert sorted(f.result(timeout=10) for f in futures) == list(range(2, 22))
    p = kernel.spawn(Probe)
    assert p.call("later", "done") == "done"


def test_published_tensors_reach_every_subscriber(kernel):
    import torch

    with kernel.subscribe("tensors.") as a, kernel.subscribe("tensors.") as b:
        big = torch.arange(1 << 20, dtype=torch.float32)  # 4 MiB: a page handle, not inline
        kernel.publish("tensors.x", {"t": big, "n": 1})
        for sub in (a, b):
            _, msg = sub.get(timeout=10)
            assert msg["n"] == 1 and torch.equal(msg["t"], big)


def test_bad_scheduler_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[scheduler]\ninterval = -1\n")
    env = dict(os.environ, LLMOS_RUNTIME_DIR=str(tmp_path / "rt"), LLMOS_STATE_DIR=str(tmp_path / "st"))
    out = subprocess.run(
        [sys.executable, "-m", "llmos_actors.cli", "daemon", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "[scheduler] interval" in out.stderr
