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
#: Largest packed constructor arguments (bytes): the fork server carries the whole request in one
#: frame of at most 64 MiB, so arguments stay well below it (large data travels as pages or refs).
MAX_SPAWN_ARGS_BYTES = 32 * 1024 * 1024
#: Bounds on the other client-controlled parts of a spawn request.
MAX_PATH_ENTRIES = 256
MAX_PATH_CHARS = 4096
MAX_ENV_ENTRIES = 1024
MAX_ENV_BYTES = 1024 * 1024
MAX_PRIORITY = 7
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
    # The caller's own source dirs too: the class's module may import its neighbours the way the
    # caller found them (a test or script dir on sys.path), not as parts of its own package.
    hints += [p for p in _user_paths() if p not in hints]
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
    return check_spawn_request(request)


#: Keys a spawn request may carry on the wire.
REQUEST_KEYS = frozenset(
    {"cls", "path", "main_file", "args", "restart", "restart_limits"} | set(SPAWN_OPTIONS) - {"restart"}
)


def check_spawn_request(request: Any) -> dict:
    """Validate a spawn request as it travels (the client builds it; the daemon checks it again).

    Returns the request. Every field is checked for type and bounds, so whatever a client
    sends, the daemon either refuses it with a clear error or can act on it safely.

    Raises:
        TypeError / ValueError: a bad field, named in the message.
        ActorImportError: ``cls`` is not ``module:Class``.
    """
    if not isinstance(request, dict):
        raise TypeError("a spawn request is a map")
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        raise ValueError(f"unknown spawn request fields: {', '.join(sorted(map(str, unknown)))}")
    cls = request.get("cls")
    if not isinstance(cls, str) or len(cls) > 512 or not CLASS_RE.match(cls):
        raise ActorImportError(f"actor class must be named 'module:Class', not {cls!r:.200}")
    path = request.get("path", [])
    if path is None:
        path = []
    if not isinstance(path, list) or len(path) > MAX_PATH_ENTRIES:
        raise ValueError(f"spawn 'path' must be a list of at most {MAX_PATH_ENTRIES} directories")
    if not all(isinstance(p, str) and 0 < len(p) <= MAX_PATH_CHARS and "\0" not in p for p in path):
        raise ValueError(f"spawn 'path' entries must be directory names of at most {MAX_PATH_CHARS} characters")
    main_file = request.get("main_file")
    if main_file is not None and (not isinstance(main_file, str) or not 0 < len(main_file) <= MAX_PATH_CHARS):
        raise ValueError("spawn 'main_file' must be a file name")
    args = request.get("args", b"")
    if not isinstance(args, bytes):
        raise TypeError("spawn request 'args' must be packed bytes")
    if len(args) > MAX_SPAWN_ARGS_BYTES:
        raise ValueError(
            f"spawn arguments of {len(args)} bytes exceed the limit of {MAX_SPAWN_ARGS_BYTES} bytes "
            "(MAX_SPAWN_ARGS_BYTES): pass large data as an array or tensor (pages) or an object ref"
        )
    name = request.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_RE.match(name)):
        raise ValueError(f"actor name must match {NAME_RE.pattern} (letters, digits, '.', '_', '-'), not {name!r:.100}")
    priority = request.get("priority")
    if priority is not None and (type(priority) is not int or not 0 <= priority <= MAX_PRIORITY):
        raise ValueError(f"priority must be an int from 0 (lowest) to {MAX_PRIORITY} (highest), not {priority!r:.50}")
    restart = request.get("restart")
    if restart is not None and restart not in RESTART_POLICIES:
        raise ValueError(f"restart must be one of {RESTART_POLICIES}, not {restart!r:.50}")
    limits = request.get("restart_limits")
    if limits is not None:
        if not isinstance(limits, dict) or not set(limits) <= {"intensity", "period", "backoff", "backoff_max"}:
            raise ValueError("restart_limits must be a map of intensity, period, backoff, backoff_max")
        _check_restart({"policy": restart or "permanent", **limits})
    overflow = request.get("overflow")
    if overflow is not None and overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r:.50}")
    for key in ("max_concurrency", "mailbox_size"):
        value = request.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= 1 << 31):
            raise ValueError(f"{key} must be an int from 1 to 2**31, not {value!r:.50}")
    env = request.get("env")
    if env is not None:
        if not isinstance(env, dict) or len(env) > MAX_ENV_ENTRIES:
            raise TypeError(f"env must be a dict of str to str with at most {MAX_ENV_ENTRIES} entries")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise TypeError("env must be a dict of str to str")
        if sum(len(k) + len(v) for k, v in env.items()) > MAX_ENV_BYTES:
            raise ValueError(f"env exceeds the limit of {MAX_ENV_BYTES} characters")
    for key in ("cpus", "gpus"):
        value = request.get(key)
        if isinstance(value, list) and len(value) > 4096:
            raise ValueError(f"{key} lists more than 4096 devices")
        _check_devices(value, key)
    supervisor = request.get("supervisor")
    if supervisor is not None and (not isinstance(supervisor, str) or not 0 < len(supervisor) <= 128):
        raise TypeError("supervisor must be a supervisor id or name")
    exclusive = request.get("exclusive")
    if exclusive is not None and type(exclusive) is not bool:
        raise TypeError("exclusive must be a bool")
    return request


#: Most members a pool may have (a bound on what one request makes the daemon start).
MAX_POOL_SIZE = 1024
MAX_POOL_TAGS = 64


def check_pool_request(request: Any) -> dict:
    """Validate a pool request as it travels: its member request is checked like a spawn.

    Raises:
        TypeError / ValueError / ActorImportError: a bad field, named in the message.
    """
    if not isinstance(request, dict) or not isinstance(request.get("member"), dict):
        raise TypeError("a pool request is a map with the member spawn request under 'member'")
    unknown = set(request) - {"member", "size", "min", "max", "tags", "window", "name"}
    if unknown:
        raise ValueError(f"unknown pool request fields: {', '.join(sorted(map(str, unknown)))}")
    member = request["member"]
    if "name" in member:
        raise ValueError("a pool's member request must not carry a name (members are named after the pool)")
    check_spawn_request(member)
    name = request.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 56):
        raise ValueError(f"pool name must match {NAME_RE.pattern} in at most 56 characters, not {name!r:.100}")
    for key, default in (("size", 1), ("min", 1), ("max", 1), ("window", 2)):
        value = request.get(key, default)
        if type(value) is not int or not 1 <= value <= MAX_POOL_SIZE:
            raise ValueError(f"pool {key} must be an int from 1 to {MAX_POOL_SIZE}, not {value!r:.50}")
    tags = request.get("tags") or []
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_POOL_TAGS
        or not all(isinstance(t, str) and len(t) <= 128 for t in tags)
    ):
        raise ValueError(f"pool tags must be a list of at most {MAX_POOL_TAGS} short strings")
    return request
