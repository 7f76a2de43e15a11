"""Pure parts of the cluster: name claims (one winner per name) and where a ref that travelled is reached."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llmos_actors._rpc.tcp import actor_route
from llmos_actors._wire.address import ActorAddress
from llmos_actors.cluster.names import NameClaims
from llmos_actors.config import Config
from llmos_actors.errors import NameTaken


def test_an_address_with_its_tcp_endpoint_round_trips_and_old_ones_still_decode():
    addr = ActorAddress("a1", "n", "ipc:///node-a/rt/a/a1", "block", "tcp://10.0.0.1:4000")
    assert ActorAddress.from_wire(addr.to_wire()) == addr
    assert ActorAddress.from_dict(addr.to_dict()) == addr
    plain = ActorAddress("a2", "", "ipc:///x/a/a2")
    assert len(plain.to_wire()) == 4 and ActorAddress.from_wire(plain.to_wire()) == plain


def test_a_ref_from_another_node_goes_over_tcp_and_one_of_this_node_stays_local(tmp_path: Path):
    here = Config(runtime_dir=tmp_path, state_dir=tmp_path, extra={"cluster": {"node_key": "/k/node.key"}})
    mine = ActorAddress("a1", "", here.actor_endpoint("a1"), "block", "tcp://10.0.0.1:4000")
    theirs = ActorAddress("a1", "", "ipc:///other-node/rt/a/a1", "block", "tcp://10.0.0.2:4000")
    assert actor_route(here, mine) == (mine.endpoint, False)
    assert actor_route(here, theirs) == ("tcp://10.0.0.2:4000", True)
    alone = Config(runtime_dir=tmp_path, state_dir=tmp_path)  # no cluster: addresses are used as given
    assert actor_route(alone, theirs) == (theirs.endpoint, False)
    remote = Config(runtime_dir=tmp_path, state_dir=tmp_path, connect="tcp://10.0.0.2:5000")
    assert actor_route(remote, theirs) == ("tcp://10.0.0.2:4000", False)


def test_of_many_racing_claims_of_one_name_exactly_one_wins():
    claims = NameClaims(lambda node, name: "")
    barrier = threading.Barrier(8)
    won, refused = [], []

    def claim(i: int) -> None:
        barrier.wait(10)
        try:
            won.append(claims.claim("solo", f"node{i}"))
        except NameTaken as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1 and len(refused) == 7
    assert all(r.startswith("an actor named 'solo' is already running") for r in refused)


def test_a_claim_is_freed_by_a_failed_spawn_an_exited_actor_or_a_lost_node():
    running = {}
    claims = NameClaims(lambda node, name: running.get((node, name), ""))
    token = claims.claim("x", "n1")
    claims.release("x", token)  # the spawn failed
    token = claims.claim("x", "n1")
    claims.confirm("x", token, "a1")
    running[("n1", "x")] = "a1"
    with pytest.raises(NameTaken, match=r"already running \(id a1\)"):
        claims.claim("x", "n2")
    del running[("n1", "x")]  # it exited: the next claim finds it gone
    token = claims.claim("x", "n2")
    claims.release("x", "stale")  # a stale token changes nothing
    assert claims.table()["x"]["node"] == "n2"
    claims.node_lost("n2")
    assert "x" not in claims.table()
