"""Daemons linked as cluster peers without Ray: three daemons on loopback TCP, each told the others.

What the node agents do on a Ray cluster (keys, ``[cluster]`` section, peers file) is done
here by hand, so topics across nodes and stored objects across nodes are checked in the
default run, without starting Ray.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from page_actors import PageUser

import llmos_actors as llmos
from llmos_actors.cluster.keys import CLIENT_NAME, NODE_NAME, ClusterKeys, write_daemon_keys
from llmos_actors.testing import drain_then_mark, free_tcp_ports, short_tmpdir, start_daemon, wait_for

from actors import Listener

pytestmark = pytest.mark.timeout(300)

MESSAGES = 500


def _settings(base: Path, keys: ClusterKeys, port: int, **more) -> dict:
    server_key, authorized, node_key = write_daemon_keys(keys, base)
    return {
        "grace": 2.0,
        **more,
        "network": {
            "listen": [f"tcp://127.0.0.1:{port}"],
            "server_key": str(server_key),
            "authorized_keys": str(authorized),
        },
        "security": {"roles": {f"key:{CLIENT_NAME}": "admin", f"key:{NODE_NAME}": "user"}},
        "cluster": {"peers": str(base / "peers.json"), "node_key": str(node_key), "relay_identity": f"key:{NODE_NAME}"},
    }


@contextlib.contextmanager
def linked_daemons(count: int, **settings):
    """``count`` daemons on loopback TCP, each with the others as its peers (``n0``, ``n1``, ...)."""
    keys = ClusterKeys.generate()
    bases = [short_tmpdir() for _ in range(count)]
    ports: list[int] = []
    for _ in range(count):  # distinct triples (a port is only free until a daemon binds it)
        port = free_tcp_ports(3)
        while any(abs(port - p) < 3 for p in ports):
            port = free_tcp_ports(3)
        ports.append(port)
    try:
        with contextlib.ExitStack() as stack:
            handles = [
                stack.enter_context(start_daemon(**_settings(b, keys, p, **settings)))
                for b, p in zip(bases, ports, strict=True)
            ]
            endpoints = {f"n{i}": f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)}
            for i, base in enumerate(bases):
                others = {n: e for n, e in endpoints.items() if n != f"n{i}"}
                (base / "peers.json").write_text(json.dumps({"peers": others}))
            yield handles
    finally:
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def nodes():
    with linked_daemons(3) as handles:
        yield handles


def _relay(kernel) -> dict:
    return kernel.status().get("cluster", {})


def test_topic_published_on_one_node_reaches_subscribers_on_two_others_in_order(nodes):
    a, b, c = (h.connect() for h in nodes)
    try:
        listeners = [b.spawn(Listener), c.spawn(Listener)]

        # Each subscriber's node subscribes at the others for "news." (its own subscribers' prefixes) ...
        def relays_live():
            for k, me in ((b, "n1"), (c, "n2")):
                peers = _relay(k).get("peers", {})
                if set(peers) != {"n0", "n1", "n2"} - {me}:
                    return False
                if not all("news." in p["prefixes"] and p["live"] for p in peers.values()):
                    return False
            return True

        wait_for(relays_live, 60, interval=0.05)
        # ... and the publisher's node, with no subscribers, subscribes nowhere: nothing is flooded.
        assert all(not p["prefixes"] for p in _relay(a)["peers"].values())
        for i in range(MESSAGES):
            a.publish("news.cluster", i)
        for ref in listeners:
            wait_for(lambda ref=ref: len(_news(ref)) >= MESSAGES, 60, interval=0.05)
            assert _news(ref) == list(range(MESSAGES))
        # The listeners' own node counted no drop for them, and the relays carried the messages.
        for k, ref in ((b, listeners[0]), (c, listeners[1])):
            row = next(r for r in k.ps(exited=False) if r["id"] == ref.id)
            assert row.get("topic_drops", 0) == 0
            assert _relay(k)["peers"]["n0"]["relayed"] == MESSAGES
        for k, ref in ((b, listeners[0]), (c, listeners[1])):
            k.kill(ref)
        # With its subscriber gone, a node withdraws its prefixes from the peers.
        wait_for(lambda: all(not p["prefixes"] for p in _relay(b)["peers"].values()), 30, interval=0.05)
    finally:
        for k in (a, b, c):
            k.close()


def _news(ref) -> list:
    return [msg for topic, msg in ref.call("received") if topic == "news.cluster"]


def test_object_stored_on_one_node_is_fetched_once_by_another(nodes):
    a, b, _c = (h.connect() for h in nodes)
    try:
        wait_for(lambda: len(_relay(b).get("peers", {})) == 2, 60, interval=0.05)
        owner = a.spawn(PageUser)
        ref = owner.call("put", 1 << 16)
        assert ref.home == f"tcp://127.0.0.1:{nodes[0].config.extra['network']['listen'][0].rpartition(':')[2]}"
        readers = [b.spawn(PageUser), b.spawn(PageUser)]
        expected = float(sum(range(1 << 16)))
        assert [r.call("get_total", ref) for r in readers] == [expected, expected]
        counters = b.status()["cluster_objects"]
        assert (counters["imported"], counters["hits"], counters["copies"]) == (1, 1, 1)
        assert counters["imported_bytes"] == 8 << 16
        assert a.status()["cluster_objects"]["exported"] == 1
        # A ref whose home is not a peer is refused: a client cannot send the daemon elsewhere.
        stray = type(ref)(ref.id.replace(ref.pool, "0" * len(ref.pool)), ref.nbytes, "tcp://127.0.0.1:1")
        with pytest.raises(llmos.ObjectLost, match="not a node of this cluster"):
            readers[0].call("get_total", stray)
        for k, r in ((a, owner), (b, readers[0]), (b, readers[1])):
            k.kill(r)
    finally:
        for k in (a, b):
            k.close()


@pytest.mark.cluster  # a flood of 30,000 messages: the long run (make cluster)
def test_drops_across_nodes_are_counted_as_on_one_node():
    """A subscriber that never reads while another node floods its topic: nothing is lost uncounted."""
    with linked_daemons(2, topic_queue=2) as (na, nb):
        a, b = na.connect(), nb.connect()
        try:
            lazy = b.subscribe("flood.")  # never reads during the flood
            with b.subscribe("flood.") as fast:
                wait_for(lambda: _live_at(b, "n0", "flood."), 30)
                fast_received = 0
                blob = "x" * 1000  # big enough that the transport's buffers cannot hide the backlog
                for _ in range(10):
                    for i in range(3000):
                        a.publish("flood.x", [i, blob])
                    a._core.publisher().flush()
                    fast_received += drain_then_mark(a, fast, "flood.mark", 0.5) + 1
                published = 30_000 + 10  # payloads and markers
                assert fast_received + fast.dropped == published
                received = drain_then_mark(a, lazy, "flood.end", 0.5)
                assert lazy.dropped > 0
                assert received + lazy.dropped == published  # nothing lost silently
            lazy.close()
        finally:
            for k in (a, b):
                k.close()


def _live_at(kernel, peer: str, prefix: str) -> bool:
    """Whether ``kernel``'s daemon holds ``prefix`` at ``peer``, confirmed."""
    state = _relay(kernel).get("peers", {}).get(peer)
    return bool(state and prefix in state["prefixes"] and state["live"])
