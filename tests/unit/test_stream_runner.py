"""Stream turns, credit, parking and gone callers on a manual clock: no actor, no socket, no waiting."""

from __future__ import annotations

from llmos_actors._clock import ManualClock
from llmos_actors._rpc.server import Request
from llmos_actors._runtime.methods import GEN, SYNC
from llmos_actors._runtime.stream_runner import PARKED_CHECK, StreamRunner, StreamTurn
from llmos_actors._wire import protocol as P


class Host:
    """The executor's side of the runner: counters, failures and the mailbox, recorded."""

    def __init__(self) -> None:
        self.busy_sync = 0
        self.busy_async = 0
        self.stats: dict = {}
        self.failed: list = []
        self.queued: list[StreamTurn] = []

    def fail(self, req, exc, *, traceback=True) -> None:
        self.failed.append((req.id, exc))

    def requeue(self, turn: StreamTurn) -> None:
        self.queued.append(turn)

    def async_done(self) -> None:
        self.busy_async -= 1


class Caller:
    """Where items go: every reply recorded; the caller may go away."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, object]] = []
        self.present = True

    def reply(self, ident, msg_id, kind, value) -> None:
        self.sent.append((msg_id, kind, value))

    def gone(self, ident) -> bool:
        return not self.present

    def ping(self, ident) -> bool:
        return self.present


def counting(n):
    yield from range(n)


def _request(msg_id: int, credit: int) -> Request:
    return Request(b"caller", msg_id, P.STREAM, "gen", [], {}, None, None, {"credit": credit})


def _setup(quantum: float = 0.005):
    clock, host, caller = ManualClock(), Host(), Caller()
    return clock, host, caller, StreamRunner(host, caller, clock, quantum=quantum)


def test_a_turn_ends_with_its_quantum_and_the_stream_sinks_a_level():
    clock, host, caller, runner = _setup()

    def slow(n):  # each item takes 2 ms of (manual) time
        for i in range(n):
            clock.advance(0.002)
            yield i

    runner.start(_request(1, 100), lambda: slow(10), GEN, level=4)
    assert [v for _, kind, v in caller.sent if kind == P.ITEM] == [0, 1, 2]  # 6 ms > 5 ms quantum
    turn = host.queued.pop()
    assert turn.prio == 3 and host.busy_sync == 0  # went back in the mailbox one level lower
    runner.turn(turn.stream)
    runner.turn(host.queued.pop().stream)
    runner.turn(host.queued.pop().stream)
    assert caller.sent[-1] == (1, P.END, 10) and len(runner) == 0 and host.stats["done"] == 1


def test_out_of_credit_parks_until_credit_comes():
    _, host, caller, runner = _setup()
    runner.start(_request(2, 2), lambda: counting(5), GEN, level=4)
    assert len(caller.sent) == 2 and not host.queued  # parked: nothing queued
    runner.add_credit(b"caller", 2, 10)
    runner.turn(host.queued.pop().stream)
    assert [v for _, kind, v in caller.sent if kind == P.ITEM] == [0, 1, 2, 3, 4]
    assert caller.sent[-1] == (2, P.END, 5)


def test_a_parked_stream_whose_caller_left_is_dropped_at_the_next_check():
    clock, host, caller, runner = _setup()
    closed = []

    def endless():
        try:
            while True:
                yield 1
        finally:
            closed.append(True)

    runner.start(_request(3, 1), endless, GEN, level=4)
    clock.advance(PARKED_CHECK)
    assert len(runner) == 1  # the caller is still there: it stays parked
    caller.present = False
    clock.advance(PARKED_CHECK)
    assert len(runner) == 0 and closed == [True] and host.stats["streams_cancelled"] == 1
    assert clock.pending() == 0  # nothing parked: no more checks


def test_failures_and_cancel():
    _, host, _, runner = _setup()

    def broken():
        yield 1
        raise ValueError("boom")

    runner.start(_request(4, 10), broken, GEN, level=4)
    assert host.failed[-1][0] == 4 and isinstance(host.failed[-1][1], ValueError)
    runner.start(_request(5, 10), lambda: 1, SYNC, level=4)
    assert "not a generator" in str(host.failed[-1][1])
    runner.start(_request(6, 1), lambda: counting(3), GEN, level=4)
    assert runner.cancel(b"caller", 6) and not runner.cancel(b"caller", 6) and len(runner) == 0
