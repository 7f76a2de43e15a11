"""llmos on a simulated Ray cluster: three Ray nodes on this machine, a daemon on each.

The head node runs the driver (this test process); ``worker-a`` and ``worker-b`` are extra
nodes with labels. Everything is torn down at the end, on failure too.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from llmos_actors.testing import wait_for

ray = pytest.importorskip("ray")
from page_actors import PageUser  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import llmos_actors as llmos  # noqa: E402
from llmos_actors import cluster  # noqa: E402

from actors import Counter, Listener, Relay, Streamer  # noqa: E402

# Starting three Ray nodes and their daemons takes minutes on a loaded machine.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

# Ray declares a node dead after ~5 s without health-check answers (default ~15 s). Tighter than this,
# a raylet starved for a second on a loaded 2-core machine is declared dead, head node included.
SYSTEM = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5, "health_check_timeout_ms": 1000}


def _poll(fn, timeout, what):
    try:
        return wait_for(fn, timeout, interval=0.05)
    except TimeoutError:
        raise AssertionError(f"{what() if callable(what) else what} not within {timeout} s") from None


@pytest.fixture(scope="module")
def ray_cluster():
    # The node daemons import the test actors by module name, like a local daemon does.
    here = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": SYSTEM})
    try:
        workers = [
            c.add_node(num_cpus=1, labels={"zone": "a"}),
            c.add_node(num_cpus=1, labels={"zone": "b"}),
        ]
        ray.init(address=c.address, namespace="llmos", log_to_driver=False)
        c.wait_for_nodes()
        cluster.up(grace=2.0)
        yield c, workers
    finally:
        try:
            if ray.is_initialized():
                table = ray.get(cluster.control.registry().node_table.remote())
                lost = [n["runtime_dir"] for n in table if n["state"] == "lost" and n.get("runtime_dir")]
                cluster.down()
                for rt in lost:  # a lost node's directory stays on its machine (here: this one)
                    shutil.rmtree(Path(rt).parent, ignore_errors=True)
        finally:
            ray.shutdown()
            c.shutdown()


@pytest.fixture
def ck(ray_cluster):
    k = llmos.connect("ray://auto")
    try:
        yield k
    finally:
        k.close()


def _node_id(node):
    return node.node_id


def test_up_gives_every_node_a_daemon_and_calls_cross_nodes(ray_cluster, ck):
    _c, workers = ray_cluster
    nodes = ck.nodes()
    assert len([n for n in nodes if n["state"] == "up"]) == 3
    assert all(n["endpoint"].startswith("tcp://") for n in nodes)
    target = _node_id(workers[0])
    ref = ck.spawn(Counter, name="far-counter", node=target)
    assert ref.address.endpoint.startswith("tcp://")
    assert [ref.call("incr") for _ in range(3)] == [1, 2, 3]
    assert ck.lookup("far-counter").call("incr") == 4
    rows = [r for r in ck.ps(exited=False) if r["name"] == "far-counter"]
    assert [r["node"] for r in rows] == [target]
    with pytest.raises(llmos.NameTaken):
        ck.spawn(Counter, name="far-counter", node=_node_id(workers[1]))
    labelled = ck.spawn(Counter, name="zone-b", node="zone=b")
    assert ck.node_of(labelled) == _node_id(workers[1])
    streamer = ck.spawn(Streamer, node=target)
    assert list(streamer.stream("count", 5)) == [0, 1, 2, 3, 4]
    for r in (ref, labelled, streamer):
        ck.kill(r)


def test_a_name_raced_on_two_nodes_goes_to_exactly_one_spawn(ray_cluster, ck):
    _c, workers = ray_cluster
    solo = ck.spawn(Counter, name="solo", node=_node_id(workers[0]))
    with pytest.raises(llmos.NameTaken) as one_daemon:  # what a single daemon says for a taken name
        ck.node_kernel(_node_id(workers[0])).spawn(Counter, name="solo")
    ck.kill(solo)
    barrier = threading.Barrier(2)
    results = {}

    def race(i, node):
        with llmos.connect("ray://auto") as k:  # two drivers
            barrier.wait(60)
            try:
                results[i] = k.spawn(Counter, name="contested", node=node).id
            except llmos.NameTaken as exc:
                results[i] = exc

    threads = [threading.Thread(target=race, args=(i, _node_id(w))) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    won = [r for r in results.values() if isinstance(r, str)]
    refused = [r for r in results.values() if isinstance(r, llmos.NameTaken)]
    assert len(won) == 1 and len(refused) == 1, results
    said = str(one_daemon.value).split(" (")[0].replace("'solo'", "'contested'")
    assert str(refused[0]).startswith(said)
    assert ck.lookup("contested").id == won[0]
    ck.kill("contested")
    again = _poll(lambda: _try_spawn(ck, "contested", _node_id(workers[1])), 30, "the name free once its actor exited")
    ck.kill(again)


def test_a_restarted_registry_keeps_its_supervised_actors_and_names(ray_cluster, ck):
    _c, workers = ray_cluster
    node = _node_id(workers[0])
    kept = ck.spawn(Counter, name="kept", node=node, restart="permanent")
    reg = cluster.control.registry()
    before = ray.get(reg.supervised.remote())
    assert before["actors"].get(kept.id) == node
    daemons = {n["node_id"]: n["pid"] for n in ck.nodes() if n["state"] == "up"}
    old = ray.get(reg.pid.remote())
    old_keydir = Path(cluster.state.load(cluster.state.KEYDIR))  # its copy of the client secret
    assert old_keydir.exists()
    ray.kill(reg, no_restart=False)  # its process dies; Ray starts it again

    def back():
        try:
            if ray.get(reg.pid.remote(), timeout=5) == old:
                return None  # not dead yet
            table = ray.get(reg.node_table.remote(), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return None
        return len([n for n in table if n["state"] == "up"]) == len(daemons) and table

    table = _poll(back, 120, "the registry restarted with every node up")
    assert {n["node_id"]: n["pid"] for n in table if n["state"] == "up"} == daemons  # the same daemons, adopted
    assert ray.get(reg.supervised.remote()) == before
    assert not old_keydir.exists()  # removed by the new incarnation
    with pytest.raises(llmos.NameTaken):  # the names in use, read back from the daemons
        ck.spawn(Counter, name="kept", node=_node_id(workers[1]))
    assert kept.call("incr") == 1  # the cluster key did not change under the running daemons
    with llmos.connect("ray://auto") as fresh:
        assert fresh.lookup("kept").call("incr") == 2
    ck.kill(kept)
    _poll(lambda: kept.id not in ray.get(reg.supervised.remote())["actors"], 10, "killed: no longer supervised")


def _try_spawn(ck, name, node):
    try:
        return ck.spawn(Counter, name=name, node=node)
    except llmos.NameTaken:
        return None


def test_tensor_crosses_nodes_intact(ray_cluster, ck):
    _c, workers = ray_cluster
    ref = ck.spawn(Counter, node=_node_id(workers[1]))
    data = np.random.default_rng(7).standard_normal(1 << 18).astype(np.float32)
    back = ref.call("echo", data)
    assert np.array_equal(np.asarray(back), data)
    ck.kill(ref)


def test_actor_calls_an_actor_on_another_node(ray_cluster, ck):
    c, workers = ray_cluster
    target = ck.spawn(Counter, node=_node_id(workers[0]))
    relay = ck.spawn(Relay, node=c.head_node.node_id)
    assert relay.call("call_ref", target, "incr") == 1
    assert relay.call("call_ref_async", target, "incr") == 2
    data = np.random.default_rng(3).standard_normal(1 << 16).astype(np.float32)
    assert np.array_equal(np.asarray(relay.call("call_ref", target, "echo", data)), data)  # by value both ways
    assert target.call("incr") == 3
    for r in (target, relay):
        ck.kill(r)


def test_refs_an_actor_makes_are_usable_on_another_node(ray_cluster, ck):
    _c, workers = ray_cluster
    a = ck.spawn(Relay, node=_node_id(workers[0]))
    b = ck.spawn(Relay, node=_node_id(workers[1]))
    assert a.call("hand_child", b, 41) == 42  # A's child's ref, made on A, called from B
    a_self = a.call("my_ref")
    assert b.call("call_ref", a_self, "my_ref") == a_self  # A's own ref, called from B
    child = a.call("spawn_child", 5)  # and from this driver, through A's node's TCP endpoint
    assert child.call("incr") == 6
    for r in (child, a, b):
        ck.kill(r)


def test_async_cluster_kernel_spawns_and_calls_across_nodes(ray_cluster):
    _c, workers = ray_cluster
    far = _node_id(workers[0])

    async def main():
        async with llmos.connect_async("ray://auto") as ak:
            assert isinstance(ak, llmos.AsyncClusterKernel)
            ref = await ak.spawn(Counter, name="async-far", node=far)
            assert isinstance(ref, llmos.AsyncActorRef) and ak.node_of(ref) == far
            assert [await ref.call("incr") for _ in range(3)] == [1, 2, 3]
            assert sorted(await asyncio.gather(*(ref.ask("incr") for _ in range(50)))) == list(range(4, 54))
            found = await ak.lookup("async-far")
            assert await found.call("incr") == 54
            assert [r["node"] for r in await ak.ps(exited=False) if r["name"] == "async-far"] == [far]
            await ak.kill(ref)

    asyncio.run(main())


def test_agent_restarts_its_daemon(ray_cluster, ck):
    _c, workers = ray_cluster
    node = _node_id(workers[0])
    agent = ray.get(cluster.control.registry().agent.remote(node))
    old_pid = ray.get(agent.kill_daemon.remote())
    info = _poll(
        lambda: (i := ray.get(agent.info.remote()))["pid"] not in (None, old_pid) and i["restarts"] >= 1 and i,
        90,
        "daemon restarted",
    )
    assert info["restarts"] >= 1
    _poll(lambda: any(n["node_id"] == node and n["pid"] == info["pid"] for n in ck.nodes()), 10, "registry updated")
    ref = ck.spawn(Counter, node=node)  # the driver reconnects to the new daemon by itself
    assert ref.call("incr") == 1
    ck.kill(ref)


def test_topic_published_on_one_node_reaches_subscribers_on_two_others_in_order(ray_cluster, ck):
    c, workers = ray_cluster
    head = c.head_node.node_id
    listeners = [ck.spawn(Listener, node=_node_id(w)) for w in workers]

    def relays_live():  # each listener's node has told the publisher's node it wants "news."
        for w in workers:
            peer = ck.node_kernel(_node_id(w)).status().get("cluster", {}).get("peers", {}).get(head)
            if not peer or "news." not in peer["prefixes"] or not peer["live"]:
                return False
        return True

    _poll(relays_live, 60, "the listeners' nodes subscribed at the publisher's node")
    publisher = ck.node_kernel(head)
    relayed = _poll(lambda: "cluster" in publisher.status() and publisher.status()["cluster"], 10, "relay status")
    assert all(not p["prefixes"] for p in relayed["peers"].values())  # no subscriber there: it asks for nothing
    for i in range(TOPIC_MESSAGES):
        publisher.publish("news.cluster", i)
    for ref in listeners:
        _poll(lambda ref=ref: len(_news(ref)) >= TOPIC_MESSAGES, 60, "every message relayed")
        assert _news(ref) == list(range(TOPIC_MESSAGES))
    for ref in listeners:
        ck.kill(ref)


TOPIC_MESSAGES = 300


def test_a_publish_right_after_subscribe_on_another_node_is_delivered(ray_cluster, ck):
    c, workers = ray_cluster
    publisher = ck.node_kernel(c.head_node.node_id)
    listener = ck.spawn(Listener, node=_node_id(workers[0]))
    for i in range(5):  # each prefix new to every node: no relay holds it before ``listen`` returns
        listener.call("listen", f"fresh{i}.")
        publisher.publish(f"fresh{i}.now", i)

    def extras():
        return [m[1:] for m in listener.call("received") if m[0] == "extra"]

    _poll(lambda: len(extras()) >= 5, 30, lambda: f"every publish delivered (got {extras()})")
    assert extras() == [[f"fresh{i}.now", i] for i in range(5)]
    ck.kill(listener)


def _news(ref):
    return [msg for topic, msg in ref.call("received") if topic == "news.cluster"]


def test_object_stored_on_one_node_is_read_on_another(ray_cluster, ck):
    c, workers = ray_cluster
    head, far = c.head_node.node_id, _node_id(workers[0])
    owner = ck.spawn(PageUser, node=head)
    reader = ck.spawn(PageUser, node=far)
    ref = owner.call("put", 1 << 16)
    assert ref.home == {n["node_id"]: n["endpoint"] for n in ck.nodes()}[head]
    assert reader.call("get_total", ref) == float(sum(range(1 << 16)))
    assert reader.call("get_total", ref) == float(sum(range(1 << 16)))  # the node's copy this time
    counters = ck.node_kernel(far).status()["cluster_objects"]
    assert counters["imported"] == 1 and counters["hits"] >= 1
    for r in (owner, reader):
        ck.kill(r)


def test_node_loss_fails_refs_and_restarts_permanent_actors(ray_cluster, ck):
    c, workers = ray_cluster
    victim = workers[1]
    ref = ck.spawn(Counter, name="doomed", node=_node_id(victim))
    keeper = ck.spawn(Counter, name="keeper", node=_node_id(victim), restart="permanent")
    # Spawned by a driver that is gone when the node is lost: the registry's supervisor respawns it.
    with llmos.connect("ray://auto") as gone:
        gone.spawn(Counter, name="orphan", node=_node_id(victim), restart="permanent")
    supervised = ray.get(cluster.control.registry().supervised.remote())
    assert sorted(supervised["actors"].values()).count(_node_id(victim)) == 2
    assert ref.call("incr") == 1
    mon = ck.monitor(ref)
    # The machine vanishes: every process of the node is frozen (no goodbye reaches anyone), then
    # Ray loses the node. Thawed at the end, so they stop and clean up as their parents die.
    frozen = _node_processes(victim)
    for p in frozen:
        p.suspend()
    try:
        started = time.monotonic()
        c.remove_node(victim, allow_graceful=False)
        died = _poll(lambda: _call_until_died(ref), 45, "ActorDiedError after the node's removal")
        assert died.reason == "node lost"
        assert time.monotonic() - started < 45
        _poll(lambda: mon.notices, 10, "monitor notice")
        assert mon.notices[0].reason == "node lost"
        with pytest.raises(llmos.ActorDiedError):
            keeper.call("incr")
        for name in ("keeper", "orphan"):
            back = _poll(lambda name=name: _try_lookup(ck, name), 60, f"permanent actor {name} back on another node")
            assert ck.node_of(back) != _node_id(victim)
            assert back.call("incr") == 1
            ck.kill(back)
    finally:
        for p in frozen:
            if _running(p):
                p.resume()
    _poll(lambda: not [p for p in frozen if _running(p)], 60, "the lost node's processes to exit")


def _call_until_died(ref):
    """The ActorDiedError a call raises once the node is gone (None while calls still succeed)."""
    try:
        ref.options(timeout=5).call("incr")
    except llmos.ActorDiedError as exc:
        return exc
    except llmos.CallTimeout:
        pass
    return None


def _try_lookup(ck, name):
    try:
        return ck.lookup(name)
    except llmos.ActorNotFound:
        return None


def test_new_node_gets_a_daemon(ray_cluster, ck):
    c, _workers = ray_cluster
    new = c.add_node(num_cpus=1)
    _poll(
        lambda: any(n["node_id"] == new.node_id and n["state"] == "up" for n in ck.nodes()),
        90,
        lambda: f"daemon on the new node {new.node_id} (nodes: {ck.nodes()})",
    )
    try:
        ref = ck.spawn(Counter, node=new.node_id)
        assert ref.call("incr") == 1
        ck.kill(ref)
        # Its daemon learns the other up daemons, for topics across nodes.
        others = {n["node_id"] for n in ck.nodes() if n["state"] == "up"} - {new.node_id}
        _poll(
            lambda: set(ck.node_kernel(new.node_id).status().get("cluster", {}).get("peers", {})) == others,
            30,
            "the new daemon's topic peers",
        )
    finally:
        _remove_node_and_wait(c, new)


def _node_processes(node):
    """The raylet of a simulated node and everything under it (agent, runner, daemon, actors)."""
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    procs = [raylet, *raylet.children(recursive=True)]
    return procs + [q for p in procs for q in _safe_children(p) if q not in procs]


def _remove_node_and_wait(c, node):
    """Remove a node this test added and wait until its processes (raylet, agent, daemon) are gone."""
    procs = _node_processes(node)
    c.remove_node(node, allow_graceful=False)
    _poll(lambda: not [p for p in procs if _running(p)], 30, "the removed node's processes to exit")


def _safe_children(p):
    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def _running(p):
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cli_cluster_status_lists_the_nodes(ray_cluster):
    c, _workers = ray_cluster
    out = subprocess.run(
        [sys.executable, "-m", "llmos_actors.cli", "cluster", "status", "--address", c.address, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    table, _end = json.JSONDecoder().raw_decode(out)  # Ray may print its own lines after ours
    assert {n["node_id"] for n in table if n["state"] == "up"} >= {c.head_node.node_id}
    assert all(n["endpoint"].startswith("tcp://") for n in table if n["state"] == "up")
