"""Where a client connects, and whether it may trust what it finds there.

Local daemons: the runtime directory must be a real directory (not a symlink), not
writable by others, and owned by us, by root, or created under a root-owned parent
that nobody else can write (``/run/llmos`` made by systemd for a dedicated service user).
A client checks this before it sends a byte there: a directory squatted by another
user could otherwise answer with forged replies and read spawn arguments and tensors.

Remote daemons: ``tcp://host:port`` with this client's CurveZMQ key and the daemon's
public key; nothing else is offered.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .config import CONTROL_SOCKET, Config, load_config
from .errors import ConfigError, DaemonUnavailable


def config_for(
    target: str | os.PathLike[str] | None,
    config: Config | None,
    *,
    key: str | os.PathLike[str] | None = None,
    server_key: str | None = None,
) -> Config:
    """The Config of ``connect(target, config=..., key=..., server_key=...)``."""
    if config is not None:
        return config
    if isinstance(target, str) and target.startswith("tcp://"):
        return load_config({"connect": target, "key_file": key, "server_key": server_key})
    if key is not None or server_key is not None:
        raise ConfigError("key= and server_key= are for TCP daemons: connect('tcp://host:port', key=..., ...)")
    return load_config({"runtime_dir": target} if target else None)


def check_runtime_dir(path: Path) -> None:
    """Refuse a runtime directory another user could have made or could change.

    Raises:
        DaemonUnavailable: it does not exist.
        ConfigError: a symlink, not a directory, writable by others, or owned by a stranger.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise DaemonUnavailable(
            f"no llmos daemon at {path}; start one with `llmos daemon` or point LLMOS_RUNTIME_DIR / "
            "--runtime-dir at a running one"
        ) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"runtime_dir {path} is not a directory (a symlink or a file): refusing to use it")
    if st.st_mode & 0o022:
        raise ConfigError(f"runtime_dir {path} is writable by others (mode {st.st_mode & 0o777:o}): refusing to use it")
    if st.st_uid in (os.geteuid(), 0):
        return
    parent = os.lstat(path.parent)
    if parent.st_uid == 0 and not parent.st_mode & 0o022:
        return  # made by root (e.g. systemd's RuntimeDirectory for a service user)
    raise ConfigError(
        f"runtime_dir {path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}) nor root: refusing to use it"
    )


def check_reachable(config: Config) -> None:
    """Before connecting: a local daemon's directory is trustworthy and has a control socket.

    Raises:
        DaemonUnavailable / ConfigError: as ``check_runtime_dir``, or no control socket there.
    """
    if config.connect:
        return
    path = Path(config.runtime_dir)
    check_runtime_dir(path)
    if not (path / CONTROL_SOCKET).exists():
        raise DaemonUnavailable(
            f"no llmos daemon at {config.runtime_dir} (no {CONTROL_SOCKET} socket); "
            "start one with `llmos daemon` or point LLMOS_RUNTIME_DIR / --runtime-dir at a running one"
        )
