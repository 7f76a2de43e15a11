"""The supervisor's decisions with a fake clock and fake processes: no forks, no waiting."""

from __future__ import annotations

import asyncio

import pytest

from llmos_actors._kernel.proctable import EXITED, RESTARTING, RUNNING, ActorRecord, ProcessTable
from llmos_actors._kernel.supervisor import RestartHistory, Supervision, check_limits, needs_restart
from llmos_actors.errors import ProtocolError, SupervisorError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLifecycle:
    """Records what the supervisor asks for; 'processes' start and stop instantly."""

    def __init__(self, table: ProcessTable, supervision_ref: list) -> None:
        self.table = table
        self.log: list[str] = []
        self.restart_times: list[float] = []
        self.sup = supervision_ref

    async def terminate(self, record: ActorRecord, *, reason: str = "", **_: object) -> dict:
        self.log.append(f"stop {record.name}")
        self.die(record, 0, reason=f"stopped {reason}")
        return record.exit or {}

    async def kill(self, record: ActorRecord, **_: object) -> dict:
        record.wanted_down = True
        return await self.terminate(record)

    def abandon(self, record: ActorRecord, reason: str) -> None:
        self.log.append(f"abandon {record.name}")
        record.state = EXITED

    async def restart(self, record: ActorRecord) -> bool:
        if record.state != RESTARTING or record.doomed or record.wanted_down:
            return False
        self.log.append(f"start {record.name}")
        record.state = RUNNING
        record.restarts += 1
        return True

    def die(self, record: ActorRecord, exitcode: int | None, signal: int | None = None, reason: str = "test") -> bool:
        """What Lifecycle._finish does around the decision."""
        record.exit = {"exitcode": exitcode, "signal": signal, "reason": reason}
        restarting = self.sup[0].decide_restart(record)
        record.state = RESTARTING if restarting else EXITED
        return restarting


def _setup(**defaults):
    table = ProcessTable()
    ref: list = []
    life = FakeLifecycle(table, ref)
    clock = FakeClock()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    sup = Supervision(life, table, defaults, clock=clock, sleep=sleep)  # type: ignore[arg-type]
    ref.append(sup)
    return sup, life, table, clock, sleeps


def _actor(table, sup, name, restart="permanent", supervisor="") -> ActorRecord:
    record = ActorRecord(id=f"a-{name}", name=name, cls="m:C", request={}, endpoint="", restart=restart)
    record.supervisor = supervisor
    record.state = RUNNING
    record.ready_mono = 1.0
    table.add(record)
    sup.on_new_record(record)
    return record


async def _settle(sup) -> None:
    while sup._tasks:
        await asyncio.gather(*list(sup._tasks))


def test_history_intensity_and_backoff():
    clock = FakeClock()
    h = RestartHistory(intensity=4, period=10.0, backoff=0.5, backoff_max=1.5, clock=clock)
    delays = []
    for _ in range(4):
        assert h.allow()
        delays.append(h.delay())
    assert delays == [0.0, 0.5, 1.0, 1.5]  # first immediate, then doubling, capped
    assert not h.allow()  # the 5th within 10 s
    clock.now += 10.0
    assert h.allow() and h.delay() == 0.0  # the window moved on


def test_policy_table():
    assert needs_restart("permanent", False) and needs_restart("permanent", True)
    assert needs_restart("transient", True) and not needs_restart("transient", False)
    assert not needs_restart("temporary", True)


def test_check_limits():
    assert check_limits({"intensity": 3, "period": 1.5}, "x") == {"intensity": 3, "period": 1.5}
    for bad in ({"intensity": -1}, {"intensity": 1.5}, {"period": 0}, {"backoff": -1}, {"colour": 1}, [1]):
        with pytest.raises(ProtocolError):
            check_limits(bad, "x")


def test_standalone_restart_backoff_and_give_up():
    async def main():
        sup, life, table, _clock, sleeps = _setup(intensity=3, period=60.0, backoff=0.2, backoff_max=10.0)
        a = _actor(table, sup, "a")
        published = []
        sup.publish = lambda topic, body: published.append((topic, body))
        for _ in range(3):
            assert life.die(a, None, 9)
            await _settle(sup)
            assert a.state == RUNNING
        assert sleeps == [0.2, 0.4]  # the first restart did not sleep
        assert not life.die(a, None, 9)  # a 4th within the period: give up
        assert a.state == EXITED and "gave up" in a.exit["reason"]
        assert published[0][0] == "sys.supervisor.gave_up"

    asyncio.run(main())


def test_wanted_down_planned_and_never_ready():
    async def main():
        sup, life, table, _, _ = _setup()
        a = _actor(table, sup, "a")
        a.wanted_down = True
        assert not life.die(a, None, 9)
        b = _actor(table, sup, "b")
        b.planned = True
        assert life.die(b, 0) and not b.planned  # planned stops restart without counting
        c = _actor(table, sup, "c")
        c.ready_mono = None  # its spawn failed: nothing to restart
        assert not life.die(c, 1)
        await _settle(sup)

    asyncio.run(main())


@pytest.mark.parametrize(
    "strategy, log",
    [
        ("one_for_one", ["start b"]),
        ("one_for_all", ["stop c", "stop a", "start a", "start b", "start c"]),
        ("rest_for_one", ["stop c", "start b", "start c"]),
    ],
)
def test_strategies(strategy, log):
    async def main():
        sup, life, table, _, _ = _setup(backoff=0.0)
        node = sup.h_new(None, {"strategy": strategy, "intensity": 5})  # type: ignore[arg-type]
        a, b, c = (_actor(table, sup, n, supervisor=node["id"]) for n in "abc")
        assert sup.nodes[node["id"]].children == [a.id, b.id, c.id]
        assert life.die(b, None, 9)
        await _settle(sup)
        assert life.log == log
        assert all(r.state == RUNNING for r in (a, b, c))

    asyncio.run(main())


def test_escalation_and_temporary_children():
    async def main():
        sup, life, table, _, _ = _setup(backoff=0.0)
        top = sup.h_new(None, {"intensity": 1, "name": "top"})  # type: ignore[arg-type]
        mid = sup.h_new(None, {"intensity": 0, "parent": top["id"]})  # type: ignore[arg-type]
        a = _actor(table, sup, "a", supervisor=mid["id"])
        b = _actor(table, sup, "b", supervisor=mid["id"])
        t = _actor(table, sup, "t", restart="temporary", supervisor=mid["id"])
        assert not life.die(t, 1)
        assert t.id not in sup.nodes[mid["id"]].children  # temporary children leave when they exit
        assert life.die(a, 1)  # mid may not restart anything: escalates; top restarts mid's subtree
        await _settle(sup)
        assert life.log == ["stop b", "start a", "start b"]
        assert sup.nodes[mid["id"]].state == "running" and sup.nodes[top["id"]].restarts == 1
        life.log.clear()
        assert not life.die(b, 1)  # top's intensity is spent now: everything stops
        await _settle(sup)
        assert life.log == ["stop a"]
        assert a.state == EXITED and "gave up" in a.exit["reason"]
        assert sup.nodes[top["id"]].state == "failed"

    asyncio.run(main())


def test_giving_up_abandons_children_waiting_for_their_restart():
    async def main():
        sup, life, table, _, _ = _setup(backoff=0.0)
        node = sup.h_new(None, {"intensity": 1})  # type: ignore[arg-type]
        a = _actor(table, sup, "a", supervisor=node["id"])
        b = _actor(table, sup, "b", supervisor=node["id"])
        assert life.die(a, 1)  # restart scheduled, not run yet
        assert not life.die(b, 1)  # the second restart is one too many: give up
        await _settle(sup)
        assert a.state == EXITED and b.state == EXITED
        assert "abandon a" in life.log and "start a" not in life.log

    asyncio.run(main())


def test_supervisor_requests_validated():
    sup, *_ = _setup()
    with pytest.raises(SupervisorError):
        sup.h_new(None, {"strategy": "nope"})  # type: ignore[arg-type]
    with pytest.raises(SupervisorError):
        sup.h_new(None, {"parent": "s-missing"})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        sup.h_new(None, "not a map")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        sup.h_new(None, {"intensity": -2})  # type: ignore[arg-type]
    with pytest.raises(SupervisorError):
        sup.check_spawn({"supervisor": "s-missing"})
    assert sup.nodes == {}
