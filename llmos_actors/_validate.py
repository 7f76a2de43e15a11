"""Argument checks shared by the client and the daemon.

A client checks what it can before sending, so a mistake surfaces at the call
site; the daemon checks again because any process may talk to it. Both call
the functions here, so one failure is always one exception type (an
``InvalidArgument`` subclass, which is also a ``ValueError``) with one message,
whichever side saw it first. Nothing here imports above ``errors``.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidArgument, InvalidSupervisorArgument, InvalidSyncArgument


# ---------------------------------------------------------------------------- common
def timeout(value: Any, what: str = "timeout") -> float | None:
    """None (wait as long as it takes) or a number of seconds >= 0, as a float."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{what} must be None or a number of seconds >= 0, not {value!r}")
    return float(value)


def _count(value: Any, what: str, error: type[InvalidArgument]) -> int:
    if type(value) is not int or value < 1:
        raise error(f"{what} must be an int >= 1, not {value!r}")
    return value


# ---------------------------------------------------------------------------- sync objects
SYNC_KINDS = ("mutex", "semaphore", "condition", "barrier", "event")
#: The kinds a holder acquires and releases (a condition through its lock).
LOCK_KINDS = ("mutex", "semaphore", "condition")
MAX_SYNC_NAME = 200
MAX_OWNER = 100


def sync_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_SYNC_NAME:
        raise InvalidSyncArgument(
            f"a sync object name must be a string of 1 to {MAX_SYNC_NAME} characters, not {name!r}"
        )
    return name


def sync_kind(kind: Any, allowed: tuple[str, ...] = SYNC_KINDS, verb: str = "used") -> str:
    """One of ``allowed``; a known kind outside it gets "a barrier cannot be acquired"."""
    if kind in allowed:
        return kind
    if kind in SYNC_KINDS:
        raise InvalidSyncArgument(f"a {kind} cannot be {verb}")
    raise InvalidSyncArgument(f"unknown sync object kind {kind!r} (expected one of {', '.join(SYNC_KINDS)})")


def semaphore_count(n: Any) -> int:
    return _count(n, "semaphore count n", InvalidSyncArgument)


def barrier_parties(parties: Any) -> int:
    return _count(parties, "barrier parties", InvalidSyncArgument)


def notify_count(n: Any) -> int:
    """How many condition sleepers to wake: an int >= 0, or -1 for all."""
    if type(n) is not int or n < -1:
        raise InvalidSyncArgument(f"notify count must be an int >= 0 (or -1 for all), not {n!r}")
    return n


def sync_holder(who: Any) -> tuple[int, str]:
    """The ``{pid, owner}`` map a request names its holder by, as a ``(pid, owner)`` tuple."""
    if not isinstance(who, dict):
        raise InvalidArgument("'who' must be a map {pid, owner}")
    pid, owner = who.get("pid"), who.get("owner", "")
    if type(pid) is not int or pid <= 0 or not isinstance(owner, str) or len(owner) > MAX_OWNER:
        raise InvalidArgument(f"'who' must be {{pid: int > 0, owner: str of at most {MAX_OWNER} characters}}")
    return (pid, owner)


def ticket(value: Any) -> int:
    if type(value) is not int:
        raise InvalidArgument(f"ticket must be an int, not {value!r}")
    return value


# ---------------------------------------------------------------------------- supervision
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_POLICIES = ("permanent", "transient", "temporary")
RESTART_LIMIT_KEYS = ("intensity", "period", "backoff", "backoff_max")
MAX_SUPERVISOR_NAME = 64


def strategy(value: Any) -> str:
    if value not in STRATEGIES:
        raise InvalidSupervisorArgument(f"strategy must be one of {STRATEGIES}, not {value!r}")
    return value


def restart_policy(value: Any) -> str:
    if value not in RESTART_POLICIES:
        raise InvalidSupervisorArgument(f"restart must be one of {RESTART_POLICIES}, not {value!r}")
    return value


def supervisor_name(value: Any) -> str:
    """A supervisor's optional name ("" for none)."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_SUPERVISOR_NAME:
        raise InvalidArgument(f"supervisor name must be a string of at most {MAX_SUPERVISOR_NAME} characters")
    return value


def restart_limits(values: Any, what: str = "restart limits") -> dict:
    """A map of some of ``RESTART_LIMIT_KEYS``; returns a copy without the None values."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidArgument(f"{what} must be a map of {', '.join(RESTART_LIMIT_KEYS)}")
    out: dict = {}
    for key, value in values.items():
        if key not in RESTART_LIMIT_KEYS:
            raise InvalidArgument(f"{what}: unknown key {key!r} (expected {', '.join(RESTART_LIMIT_KEYS)})")
        if value is None:
            continue
        if key == "intensity":
            if type(value) is not int or value < 0:
                raise InvalidArgument(f"{what}: intensity must be an int >= 0, not {value!r}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise InvalidArgument(f"{what}: {key} must be a number of seconds >= 0, not {value!r}")
        elif key == "period" and value <= 0:
            raise InvalidArgument(f"{what}: period must be > 0 seconds")
        out[key] = value
    return out


# ---------------------------------------------------------------------------- actors
def actor_name(value: Any) -> str:
    """An actor named on the wire by its name or id."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument("an actor must be named by a non-empty string (name or id)")
    return value
