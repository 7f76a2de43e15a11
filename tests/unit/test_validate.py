"""The shared argument checks: one exception type per failure, whichever side of the wire runs them."""

from __future__ import annotations

import pytest

from llmos_actors import _validate as check
from llmos_actors._wire.codec import error_from_payload, error_payload
from llmos_actors.errors import (
    InvalidArgument,
    InvalidSupervisorArgument,
    InvalidSyncArgument,
    LockError,
    ProtocolError,
    SupervisorError,
)


def test_sync_checks():
    assert check.sync_name("db") == "db"
    for bad in ("", "x" * 201, 3, None):
        with pytest.raises(InvalidSyncArgument, match="name"):
            check.sync_name(bad)
    assert check.semaphore_count(2) == 2 and check.barrier_parties(1) == 1
    for bad in (0, -1, 1.0, True, "2"):
        with pytest.raises(InvalidSyncArgument, match="n must be an int >= 1"):
            check.semaphore_count(bad)
        with pytest.raises(InvalidSyncArgument, match="parties"):
            check.barrier_parties(bad)
    assert check.sync_kind("event") == "event"
    with pytest.raises(InvalidSyncArgument, match="a barrier cannot be acquired"):
        check.sync_kind("barrier", check.LOCK_KINDS, "acquired")
    with pytest.raises(InvalidSyncArgument, match="unknown sync object kind"):
        check.sync_kind("gizmo")
    assert check.notify_count(-1) == -1
    with pytest.raises(InvalidSyncArgument):
        check.notify_count(-2)
    assert check.sync_holder({"pid": 7, "owner": "t"}) == (7, "t")
    for bad in (None, {"pid": 0}, {"pid": "1"}, {"pid": 1, "owner": "x" * 101}):
        with pytest.raises(InvalidArgument, match="who"):
            check.sync_holder(bad)


def test_timeouts():
    assert check.timeout(None) is None and check.timeout(2) == 2.0
    for bad in (-0.1, True, "1"):
        with pytest.raises(InvalidArgument, match="timeout"):
            check.timeout(bad)
    with pytest.raises(InvalidArgument, match="grace"):
        check.timeout(-1, "grace")


def test_supervision_checks():
    assert check.strategy("rest_for_one") == "rest_for_one"
    with pytest.raises(InvalidSupervisorArgument, match="strategy"):
        check.strategy("all_for_none")
    with pytest.raises(InvalidSupervisorArgument, match="restart"):
        check.restart_policy("sometimes")
    assert check.supervisor_name(None) == ""
    with pytest.raises(InvalidArgument):
        check.supervisor_name("x" * 65)
    assert check.restart_limits({"intensity": 3, "period": 1.5, "backoff": None}) == {"intensity": 3, "period": 1.5}
    for bad in ({"intensity": -1}, {"intensity": 1.5}, {"period": 0}, {"backoff": -1}, {"colour": 1}, [1]):
        with pytest.raises(InvalidArgument):
            check.restart_limits(bad)


def test_one_type_on_both_sides_of_the_wire():
    """Each type is what the client's callers catch (ValueError) and what the daemon's tests catch."""
    assert issubclass(InvalidSyncArgument, LockError) and issubclass(InvalidSyncArgument, ValueError)
    assert issubclass(InvalidSupervisorArgument, SupervisorError) and issubclass(InvalidSupervisorArgument, ValueError)
    assert issubclass(InvalidArgument, ProtocolError) and issubclass(InvalidArgument, ValueError)
    for cls in (InvalidArgument, InvalidSyncArgument, InvalidSupervisorArgument):
        back = error_from_payload(error_payload(cls("bad")))
        assert type(back) is cls and str(back) == "bad"
