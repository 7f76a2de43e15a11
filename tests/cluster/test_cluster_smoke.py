"""The short cluster check of the default run: two Ray nodes, a daemon on each, one cross-node call.

Skipped without Ray. The full set is ``make cluster`` (tests marked ``cluster``).
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import llmos_actors as llmos  # noqa: E402
from llmos_actors import cluster  # noqa: E402


@pytest.mark.timeout(600)  # two Ray nodes and their daemons: slow on a loaded machine
def test_up_spawn_on_other_node_call_down():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = c.add_node(num_cpus=1)
        ray.init(address=c.address, namespace="llmos", log_to_driver=False)
        c.wait_for_nodes()
        nodes = cluster.up()
        assert sorted(n["node_id"] for n in nodes) == sorted([c.head_node.node_id, worker.node_id])
        with llmos.connect("ray://auto") as ck:
            ref = ck.spawn("llmos_actors.bench.actors:Echo", node=worker.node_id)
            assert ref.address.endpoint.startswith("tcp://")
            assert ref.call("echo", {"seq": 1})["op"] == "ret"
            assert [r["node"] for r in ck.ps(exited=False)] == [worker.node_id]
        assert cluster.down() == 2
    finally:
        try:
            if ray.is_initialized():
                cluster.down()
        finally:
            ray.shutdown()
            c.shutdown()
