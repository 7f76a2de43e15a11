"""Turning ``kernel.spawn(cls, *args, **options)`` into the request the daemon gets.

Classes travel by import path (``module:Class``), never by pickle; the
constructor arguments are packed here with the caller's codec so refs in them
re-bind inside the actor.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._wire.codec import Codec
from .config import OVERFLOW_POLICIES
from .errors import ActorImportError

RESTART_POLICIES = ("permanent", "transient", "temporary")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CLASS_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

#: Options ``spawn`` takes as keywords; every other keyword goes to the constructor.
SPAWN_OPTIONS = (
    "name",
    "cpus",
    "gpus",
    "priority",
    "restart",
    "exclusive",
    "max_concurrency",
    "mailbox_size",
    "overflow",
    "env",
    "supervisor",
    "snapshot_every",
)


@dataclass(frozen=True)
class RestartPolicy:
    """A restart policy with its own limits, for ``spawn(..., restart=RestartPolicy(...))``.

    Standalone actors only: a supervised actor's limits are its supervisor's.
    None means the daemon's default (config section ``[supervisor]``).

    Attributes:
        policy: "permanent" (restart after any exit), "transient" (after an abnormal
            exit: non-zero code or a signal) or "temporary" (never).
        intensity: restarts allowed within ``period`` seconds; one more and it stays down.
        period: the window of ``intensity``, in seconds.
        backoff: delay before the 2nd restart within the window; doubles for each next one.
        backoff_max: cap of that delay, in seconds.
    """

    policy: str = "permanent"
    intensity: int | None = None
    period: float | None = None
    backoff: float | None = None
    backoff_max: float | None = None

    def limits(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "policy" and v is not None}


def _check_restart(value: Any) -> tuple[str | None, dict]:
    """``restart=`` as a policy name, a ``RestartPolicy``, or a dict of its fields."""
    if value is None:
        return None, {}
    if isinstance(value, dict):
        try:
            value = RestartPolicy(**value)
        except TypeError as exc:
            raise TypeError(f"restart: {exc}") from None
    if isinstance(value, RestartPolicy):
        policy, limits = value.policy, value.limits()
    elif isinstance(value, str):
        policy, limits = value, {}
    else:
        raise TypeError(f"restart must be a policy name or a RestartPolicy, not {value!r}")
    if policy not in RESTART_POLICIES:
        raise ValueError(f"restart must be one of {RESTART_POLICIES}, not {policy!r}")
    intensity = limits.get("intensity")
    if intensity is not None and (type(intensity) is not int or intensity < 0):
        raise ValueError(f"restart intensity must be an int >= 0, not {intensity!r}")
    for key in ("period", "backoff", "backoff_max"):
        v = limits.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ValueError(f"restart {key} must be a number of seconds >= 0, not {v!r}")
    if limits.get("period") == 0:
        raise ValueError("restart period must be > 0 seconds")
    return policy, limits


def describe_class(cls: Any) -> tuple[str, list[str], str | None]:
    """Return ``(module:qualname, sys.path hints, main file)`` for a class or import string.

    Raises:
        ActorImportError: the class cannot be named by an import path.
    """
    if isinstance(cls, str):
        if not CLASS_RE.match(cls):
            raise ActorImportError(f"actor class must be named 'module:Class', not {cls!r}")
        return cls, [os.getcwd(), *_user_paths()], None
    if not isinstance(cls, type):
        raise TypeError(f"spawn takes an actor class or a 'module:Class' string, not {type(cls).__name__}")
    module_name, qualname = cls.__module__, cls.__qualname__
    if "<locals>" in qualname:
        raise ActorImportError(
            f"{qualname} is defined inside a function; actor classes must be importable (define them at module level)"
        )
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name == "__main__":
        if not file:
            raise ActorImportError(
                f"{qualname} was defined in an interactive session; put actor classes in a module or script"
            )
        main_file = str(Path(file).resolve())
        return f"__main__:{qualname}", [str(Path(main_file).parent)], main_file
    hints = [os.getcwd()]
    if file:
        root = Path(file).resolve().parent
        depth = module_name.count(".") + (1 if Path(file).name == "__init__.py" else 0)
        for _ in range(depth):
            root = root.parent
        hints.insert(0, str(root))
    return f"{module_name}:{qualname}", hints, None


def _user_paths() -> list[str]:
    """The caller's own sys.path entries (its scripts and source trees, not installed packages)."""
    skip = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    out = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry) or "-packages" in entry or entry.endswith(".zip"):
            continue
        if any(entry.startswith(p + os.sep + "lib") for p in skip):
            continue
        out.append(os.path.abspath(entry))
    return out


def _check_devices(value: Any, what: str) -> Any:
    if value is None or value == "auto":
        return value
    if isinstance(value, bool):
        raise TypeError(f"{what} must be None, 'auto', a count or a list of indexes")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{what}={value}: a count must be >= 1")
        return value
    if isinstance(value, (list, tuple, set, frozenset, range)):
        items = sorted(value)
        if not items or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
            raise ValueError(f"{what} must list non-negative indexes, got {value!r}")
        return items
    raise TypeError(f"{what} must be None, 'auto', a count or a list of indexes, not {value!r}")


def build_spawn_request(codec: Codec, cls: Any, args: tuple, kwargs: dict, options: dict[str, Any]) -> dict:
    """Validate options and pack the constructor arguments.

    Raises:
        TypeError / ValueError: a bad option, named in the message.
        ActorImportError: the class cannot be named by an import path.
    """
    unknown = set(options) - set(SPAWN_OPTIONS)
    if unknown:
        raise TypeError(f"unknown spawn options: {', '.join(sorted(unknown))}")
    cls_path, hints, main_file = describe_class(cls)
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_RE.match(name)):
        raise ValueError(f"actor name must match {NAME_RE.pattern} (letters, digits, '.', '_', '-'), not {name!r}")
    priority = options.get("priority")
    if priority is not None and (type(priority) is not int or not 0 <= priority <= 7):
        raise ValueError(f"priority must be an int from 0 (lowest) to 7 (highest), not {priority!r}")
    restart, restart_limits = _check_restart(options.get("restart"))
    overflow = options.get("overflow")
    if overflow is not None and overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
    for key in ("max_concurrency", "mailbox_size"):
        value = options.get(key)
        if value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"{key} must be an int >= 1, not {value!r}")
    every = options.get("snapshot_every")
    bad_every = isinstance(every, bool) or not isinstance(every, (int, float)) or not 0.1 <= every <= 604800
    if every is not None and bad_every:
        raise ValueError(f"snapshot_every must be a number of seconds in 0.1..604800, not {every!r}")
    env = options.get("env")
    if env is not None and not (
        isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        raise TypeError("env must be a dict of str to str")
    body, _ = codec.pack([list(args), kwargs], inline=True)
    request = {
        "cls": cls_path,
        "path": hints,
        "main_file": main_file,
        "args": body,
        "cpus": _check_devices(options.get("cpus"), "cpus"),
        "gpus": _check_devices(options.get("gpus"), "gpus"),
    }
    for key in SPAWN_OPTIONS:
        if key not in ("cpus", "gpus", "restart") and options.get(key) is not None:
            request[key] = options[key]
    if restart is not None:
        request["restart"] = restart
    if restart_limits:
        request["restart_limits"] = restart_limits
    if "supervisor" in request:
        sup = request["supervisor"]
        request["supervisor"] = sup if isinstance(sup, str) else getattr(sup, "id", None)
        if not isinstance(request["supervisor"], str) or not request["supervisor"]:
            raise TypeError(f"supervisor must be a supervisor handle or its id/name, not {sup!r}")
    if "exclusive" in request:
        request["exclusive"] = bool(request["exclusive"])
    return request
