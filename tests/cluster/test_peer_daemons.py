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
from llmos_actors.testing import free_tcp_ports, short_tmpdir, start_daemon, wait_for

from actors import Listener

pytestmark = pytest.mark.timeout(300)

MESSAGES = 500


def _settings(base: Path, keys: ClusterKeys, port: int) -> dict:
    server_key, authorized, node_key = write_daemon_keys(keys, base)
    return {
        "grace": 2.0,
        "network": {
            "listen": [f"tcp://127.0.0.1:{port}"],
            "server_key": str(server_key),
            "authorized_keys": str(authorized),
        },
        "security": {"roles": {f"key:{CLIENT_NAME}": "admin", f"key:{NODE_NAME}": "user"}},
        "cluster": {"peers": str(base / "peers.json"), "node_key": str(node_key), "relay_identity": f"key:{NODE_NAME}"},
    }


@pytest.fixture(scope="module")
def nodes():
    keys = ClusterKeys.generate()
    bases = [short_tmpdir() for _ in range(3)]
    ports = []
    for _ in range(3):  # distinct triples (a port is only free until a daemon binds it)
        port = free_tcp_ports(3)
        while any(abs(port - p) < 3 for p in ports):
            port = free_tcp_ports(3)
        ports.append(port)
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(start_daemon(**_settings(b, keys, p))) for b, p in zip(bases, ports, strict=True)
        ]
        endpoints = {f"n{i}": f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)}
        for i, base in enumerate(bases):
            others = {n: e for n, e in endpoints.items() if n != f"n{i}"}
            (base / "peers.json").write_text(json.dumps({"peers": others}))
        yield handles
    for base in bases:
        shutil.rmtree(base, ignore_errors=True)


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
