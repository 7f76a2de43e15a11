"""kill -9 the daemon at random points while a client spawns, kills, snapshots and builds trees.

After each restart the recovered state must match what was acknowledged: every acknowledged
spawn is back (same id), every acknowledged kill stays dead, nothing is there twice, trees keep
their acknowledged children in order, each actor has its last acknowledged snapshot (or a newer
one that was written but not yet acknowledged), and nothing leaked (``start_daemon`` checks
processes and /dev/shm; here the journal and snapshot files are checked too).
"""

from __future__ import annotations

import random
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmos_actors.errors import LlmosError
from llmos_actors.testing import start_daemon, wait_for

SETTINGS = {"grace": 2.0, "heartbeat_interval": 0.2, "client": {"reconnect_timeout": 2.0}}


@dataclass
class Model:
    """What the daemon acknowledged, and what was in flight when it died."""

    actors: dict[str, str] = field(default_factory=dict)  # name -> id (acknowledged spawns)
    start: dict[str, int] = field(default_factory=dict)  # name -> constructor value
    snaps: dict[str, int] = field(default_factory=dict)  # name -> last acknowledged snapshot value
    maybe_snaps: dict[str, set] = field(default_factory=dict)  # values written but not acknowledged
    killed: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)  # spawn or kill in flight at the crash
    trees: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # sup name -> (id, children names)
    serial: int = 0


def worker(k, model: Model, rng: random.Random, ops: list[int], stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            ops[0] += 1
            choice = rng.random()
            model.serial += 1
            i = model.serial
            live = [n for n in model.actors if n not in model.uncertain]
            if choice < 0.4 or not live:
                name = f"c{i}"
                model.uncertain.add(name)
                model.start[name] = i
                ref = k.spawn("state_actors:Keeper", i, name=name, restart="permanent")
                model.actors[name] = ref.id
                model.uncertain.discard(name)
            elif choice < 0.55:
                name = rng.choice(live)
                model.uncertain.add(name)
                k.kill(name)
                del model.actors[name]
                model.killed.add(name)
                model.uncertain.discard(name)
            elif choice < 0.85:
                name = rng.choice(live)
                n = k.lookup(name).call("incr", 1)
                model.maybe_snaps.setdefault(name, set()).add(n)
                k.snapshot(name)
                model.snaps[name] = n
                model.maybe_snaps[name].discard(n)
            else:
                sup_name = f"t{i}"
                sup = k.supervisor(name=sup_name, strategy="one_for_all")
                model.trees[sup_name] = (sup.id, [])
                for j in range(2):
                    name = f"t{i}c{j}"
                    model.uncertain.add(name)
                    model.start[name] = i
                    ref = k.spawn("state_actors:Keeper", i, name=name, supervisor=sup)
                    model.actors[name] = ref.id
                    model.trees[sup_name][1].append(name)
                    model.uncertain.discard(name)
    except LlmosError:
        return  # the daemon died under us


def check(k, model: Model) -> None:
    rows = k.ps(exited=False)
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)), f"duplicate actors: {sorted(names)}"
    by_name = {r["name"]: r for r in rows}
    for name, actor_id in model.actors.items():
        if name in model.uncertain:
            continue
        assert name in by_name, f"acknowledged spawn {name} was lost"
        assert by_name[name]["id"] == actor_id and by_name[name]["state"] == "running"
    for name in model.killed - model.uncertain:
        assert name not in by_name, f"acknowledged kill of {name} was undone"
    unexpected = set(by_name) - set(model.actors) - model.uncertain
    assert not unexpected, f"actors nobody spawned: {unexpected}"
    for name in list(by_name):
        got = k.lookup(name).call("get")["n"]
        allowed = {model.snaps.get(name, model.start[name])} | model.maybe_snaps.get(name, set())
        assert got in allowed, f"{name}: value {got} not among {allowed}"
        model.snaps[name] = got
        model.maybe_snaps.pop(name, None)
    sups = {s["name"]: s for s in k.supervisors()}
    for sup_name, (sup_id, children) in model.trees.items():
        assert sup_name in sups and sups[sup_name]["id"] == sup_id, f"supervisor {sup_name} lost"
        ids = [model.actors[c] for c in children if c in model.actors and c not in model.uncertain]
        order = [c for c in sups[sup_name]["children"] if c in ids]
        assert order == ids, f"{sup_name}: children {order} != acknowledged {ids}"
    # What was in flight is settled by what came back.
    for name in model.uncertain:
        if name in by_name:
            model.actors[name] = by_name[name]["id"]
            model.killed.discard(name)
        else:
            model.actors.pop(name, None)
    names_of = {r["id"]: r["name"] for r in rows}
    for sup_name, (_, children) in model.trees.items():
        children[:] = [names_of[c] for c in sups[sup_name]["children"] if c in names_of]
    model.uncertain.clear()


def check_files(state_dir: Path, model: Model) -> None:
    db = sqlite3.connect(state_dir / "journal.sqlite")
    try:
        ids = [row[0] for row in db.execute("SELECT id FROM actors")]
    finally:
        db.close()
    assert len(ids) == len(set(ids))
    assert set(ids) == set(model.actors.values()), "journal rows differ from the live actors"
    snaps = state_dir / "snapshots"
    left = {p.name for p in snaps.iterdir()} if snaps.is_dir() else set()
    assert left <= set(ids), f"snapshot files of forgotten actors: {left - set(ids)}"


def recovered(k) -> bool:
    return k.status()["state"].get("recovering") is False


def one_round(rdir: Path, model: Model, rng: random.Random) -> None:
    with start_daemon(rdir, **SETTINGS) as d:
        k = d.connect()
        wait_for(lambda: recovered(k), 60, what="recovery")
        check(k, model)
        ops = [0]
        stop = threading.Event()
        target = rng.randint(2, 12)
        thread = threading.Thread(target=worker, args=(d.connect(), model, rng, ops, stop))
        thread.start()
        try:
            wait_for(lambda: ops[0] >= target or not thread.is_alive(), 120, what="client operations")
        finally:
            d.process.kill()  # kill -9, wherever the client is
            d.process.wait(10)
            stop.set()
            thread.join(60)
        assert not thread.is_alive()


def run_chaos(rdir: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    model = Model()
    for _ in range(rounds):
        one_round(rdir, model, rng)
    with start_daemon(rdir, **SETTINGS) as d:
        k = d.connect()
        wait_for(lambda: recovered(k), 60, what="recovery")
        check(k, model)
        state_dir = d.config.state_dir
    check_files(state_dir, model)  # after a graceful stop, which keeps everything


def test_kill9_at_random_points_short(rdir: Path) -> None:
    run_chaos(rdir, rounds=2, seed=random.randrange(1 << 30))


@pytest.mark.chaos
@pytest.mark.timeout(1800)  # ten daemon starts and recoveries: minutes on a loaded machine
@pytest.mark.parametrize("seed", range(3))
def test_kill9_at_random_points_long(rdir: Path, seed: int) -> None:
    run_chaos(rdir, rounds=10, seed=seed)
