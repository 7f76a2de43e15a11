"""One frozen configuration object, built once (flags > environment > file > defaults).

Nothing reads the environment at import time; ``load_config`` is the only place
that does, and it is called by the CLI and ``connect()`` with what they were given.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: Longest path a unix socket address may have (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 107

#: Endpoints are short names under the runtime directory.
CONTROL_SOCKET = "control"
EVENTS_SOCKET = "events"  # XPUB: subscribers connect here
PUBLISH_SOCKET = "publish"  # XSUB: publishers connect here
ACTORS_DIR = "a"
#: Longest actor socket name we create under ``ACTORS_DIR`` (ids are short).
_ACTOR_SOCKET_ROOM = len("/a/") + 24

OVERFLOW_POLICIES = ("block", "raise", "drop")


def default_runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the daemon's sockets live: $LLMOS_RUNTIME_DIR, $XDG_RUNTIME_DIR/llmos, /run/llmos (root).

    There is no shared fallback (a predictable path under /tmp could be made first by
    another user): without ``$XDG_RUNTIME_DIR`` a directory must be given.

    Raises:
        ConfigError: none of those applies.
    """
    env = os.environ if env is None else env
    if env.get("LLMOS_RUNTIME_DIR"):
        return Path(env["LLMOS_RUNTIME_DIR"]).expanduser()
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "llmos"
    if os.geteuid() == 0:
        return Path("/run/llmos")
    raise ConfigError(
        "no runtime directory: $XDG_RUNTIME_DIR is not set; set LLMOS_RUNTIME_DIR (or --runtime-dir) to a "
        "private directory (there is no /tmp fallback: another user could create it first)"
    )


def default_state_dir(runtime_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Where logs and exit records persist: $LLMOS_STATE_DIR, else per runtime dir under XDG state."""
    env = os.environ if env is None else env
    if env.get("LLMOS_STATE_DIR"):
        return Path(env["LLMOS_STATE_DIR"]).expanduser()
    if runtime_dir == Path("/run/llmos"):
        return Path("/var/lib/llmos")
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "llmos" / instance_name(runtime_dir)


def instance_name(runtime_dir: Path) -> str:
    """A short, stable name for the daemon instance that owns ``runtime_dir``."""
    return hashlib.blake2s(str(Path(runtime_dir).absolute()).encode(), digest_size=5).hexdigest()


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon and clients need to agree on, plus daemon tunables.

    Durations are float seconds; sizes are bytes.
    """

    runtime_dir: Path
    state_dir: Path
    #: Seconds an actor gets between SIGTERM and SIGKILL when stopped.
    grace: float = 5.0
    #: Seconds a spawn waits for the actor's READY before failing.
    spawn_timeout: float = 60.0
    #: Seconds a client waits for the daemon to answer the first hello.
    connect_timeout: float = 5.0
    #: Modules the fork server imports before forking (missing ones are skipped).
    preload: tuple[str, ...] = ("numpy", "torch")
    #: Warm actor processes the fork server keeps ready (forked, connected, waiting for an actor).
    prefork: int = 2
    #: Per-actor log file cap and rotated backups.
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3
    #: Last lines of output kept with an actor's exit record.
    log_tail_lines: int = 40
    #: Echo actor output to the daemon's stderr (None: only under systemd's journal).
    log_to_stderr: bool | None = None
    #: Largest message body a client sends or an actor accepts.
    max_message_bytes: int = 256 * 1024 * 1024
    #: How often actors report their counters to the daemon.
    heartbeat_interval: float = 1.0
    #: Default mailbox bound (messages) and what a full mailbox does to ``tell``.
    mailbox_size: int = 10_000
    overflow: str = "block"
    #: Topic messages (each a batch of up to 128) queued per subscriber before it misses some.
    topic_queue: int = 100
    #: Generation-0 threshold of Python's cyclic GC in actors and the daemon (0: Python's 700).
    #: Decoding a batch of messages allocates hundreds of containers; at 700 an actor collects
    #: every few messages and spends a fifth of its time there. Refcounting frees everything
    #: acyclic at once either way; only cyclic garbage waits longer.
    gc_threshold: int = 50_000
    #: Exited actors kept in the process table for ``ps`` (oldest dropped first).
    keep_exited: int = 200
    #: TCP endpoint; off by default. Requires CurveZMQ keys when set.
    tcp: str | None = None
    curve_secret_key_file: Path | None = None
    curve_authorized_dir: Path | None = None
    #: A remote daemon (client side): ``tcp://host:port``, reached with CurveZMQ only, with this
    #: client's secret key file and the daemon's public key (z85, or a ``.pub`` file).
    connect: str | None = None
    key_file: Path | None = None
    server_key: str | None = None
    #: Extra settings owned by subsystems (pages, scheduler, ...), validated by them.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def instance(self) -> str:
        return instance_name(self.runtime_dir)

    def endpoint(self, name: str) -> str:
        if self.connect:
            return tcp_endpoint(self.connect, name)
        return f"ipc://{self.runtime_dir / name}"

    def actor_endpoint(self, actor_id: str) -> str:
        return f"ipc://{self.runtime_dir / ACTORS_DIR / actor_id}"

    def check(self) -> Config:
        """Validate cross-field rules; returns self.

        Raises:
            ConfigError: with the offending key and what is allowed.
        """
        if len(str(self.runtime_dir.absolute())) + _ACTOR_SOCKET_ROOM > MAX_IPC_PATH:
            raise ConfigError(
                f"runtime_dir {str(self.runtime_dir)!r} is too long for unix socket addresses "
                f"(at most {MAX_IPC_PATH - _ACTOR_SOCKET_ROOM} characters); choose a shorter directory"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise ConfigError(f"overflow must be one of {OVERFLOW_POLICIES}, not {self.overflow!r}")
        for name in ("grace", "spawn_timeout", "connect_timeout", "heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds")
        if self.mailbox_size < 1:
            raise ConfigError("mailbox_size must be >= 1")
        if self.prefork < 0:
            raise ConfigError("prefork must be >= 0")
        if self.topic_queue < 1:
            raise ConfigError("topic_queue must be >= 1")
        if self.gc_threshold < 0:
            raise ConfigError("gc_threshold must be >= 0 (0 keeps Python's default)")
        if self.tcp:
            raise ConfigError(
                'tcp is not a setting: the daemon listens on TCP with [network] listen = ["tcp://..."] '
                "(CurveZMQ only; plain TCP is never offered)"
            )
        if self.connect:
            if not self.connect.startswith("tcp://") or ":" not in self.connect[6:]:
                raise ConfigError(f"connect must be 'tcp://host:port', not {self.connect!r}")
            if self.key_file is None or not self.server_key:
                raise ConfigError(
                    "a TCP connection needs CurveZMQ keys: key= (this client's .key file, from `llmos keygen`) "
                    "and server_key= (the daemon's public key or its .pub file); plain TCP is never offered"
                )
        return self


#: Ports of a daemon listening at ``tcp://host:P``: control at P, then these offsets.
TCP_PORT_OFFSETS = {CONTROL_SOCKET: 0, EVENTS_SOCKET: 1, PUBLISH_SOCKET: 2}


def tcp_endpoint(base: str, name: str) -> str:
    """The TCP endpoint of the daemon socket ``name`` for a daemon listening at ``base`` (its control port)."""
    host, _, port = base.rpartition(":")
    try:
        return f"{host}:{int(port) + TCP_PORT_OFFSETS[name]}"
    except (KeyError, ValueError):
        raise ConfigError(f"no TCP endpoint for {name!r} at {base!r}") from None


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_PATH_KEYS = {"runtime_dir", "state_dir", "curve_secret_key_file", "curve_authorized_dir", "key_file"}


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _PATH_KEYS:
        return Path(str(value)).expanduser()
    if key == "preload":
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        return tuple(str(v) for v in value)
    default = _FIELDS[key].default
    try:
        if isinstance(default, bool) or key == "log_to_stderr":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid {type(default).__name__}") from exc
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file; keys of ``[daemon]`` and top-level keys are merged.

    Raises:
        ConfigError: unreadable file or invalid TOML.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    flat.update(data.get("daemon", {}))
    for section, values in data.items():
        if section != "daemon" and isinstance(values, dict):
            flat.setdefault("extra", {})[section] = values
    return flat


def load_config(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Config:
    """Build the one Config: flags > environment > config file > defaults.

    Args:
        flags: explicit settings (CLI flags, ``connect()`` arguments); None values are ignored.
        env: the environment to read (defaults to ``os.environ``).
        config_file: a TOML file; else ``$LLMOS_CONFIG`` if set.
    """
    env = os.environ if env is None else env
    settings: dict[str, Any] = {}
    path = config_file or env.get("LLMOS_CONFIG")
    if path:
        settings.update(read_config_file(Path(path)))
    unknown = set(settings) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        settings[key] = value
    flags = flags or {}
    # Directories: flags > environment > file > defaults (one daemon instance per shell).
    runtime_dir = flags.get("runtime_dir") or env.get("LLMOS_RUNTIME_DIR") or settings.get("runtime_dir")
    if runtime_dir:
        settings["runtime_dir"] = Path(runtime_dir).expanduser()
    elif flags.get("connect"):  # a remote daemon: no local directory is used
        settings["runtime_dir"] = Path("/nonexistent/llmos-remote")
    else:
        settings["runtime_dir"] = default_runtime_dir(env)
    state_dir = flags.get("state_dir") or env.get("LLMOS_STATE_DIR") or settings.get("state_dir")
    values = {k: _coerce(k, v) if k != "extra" else v for k, v in settings.items()}
    values["runtime_dir"] = Path(values["runtime_dir"]).absolute()
    values["state_dir"] = (
        Path(state_dir).expanduser() if state_dir else default_state_dir(values["runtime_dir"], env)
    ).absolute()
    return Config(**values).check()


def apply_gc_threshold(threshold: int) -> None:
    """Set the cyclic GC's generation-0 threshold (``Config.gc_threshold``) for this process."""
    if threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(threshold, gen1, gen2)
