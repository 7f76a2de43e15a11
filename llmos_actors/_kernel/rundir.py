"""The daemon's runtime directory: private (0700, ours), one daemon at a time, no stale sockets.

The instance lock is an ``flock`` on ``daemon.lock`` holding the daemon's pid; whoever holds
it owns the directory, so sockets left by a daemon that was SIGKILLed can be removed safely.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import Any

import psutil

from ..config import ACTORS_DIR, CONTROL_SOCKET, Config
from ..errors import ConfigError, LlmosError

LOCK_FILE = "daemon.lock"
#: Sockets the daemon binds in the runtime directory (besides one per actor under ``ACTORS_DIR``).
SOCKETS = (CONTROL_SOCKET, "events", "publish", "pages")


class AlreadyRunning(LlmosError):
    """Another daemon holds this runtime directory."""


def prepare_runtime_dir(path: Path) -> None:
    """Create the runtime dir with mode 0700, or check an existing one is ours and private.

    Checked without following links (``lstat``, ``O_NOFOLLOW``): a symlink planted in its
    place by another user is refused, never followed.

    Raises:
        ConfigError: a symlink, not a directory, or another user's.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    for directory in (path, path / ACTORS_DIR):
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            os.mkdir(directory, 0o700)
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"runtime_dir {directory} is not a directory (or is a symlink): {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise ConfigError(f"runtime_dir {directory} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()})")
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def take_lock(runtime_dir: Path) -> int:
    """Hold the instance lock (its descriptor; the file names our pid).

    Raises:
        AlreadyRunning: another daemon holds it.
    """
    fd = os.open(runtime_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another llmos daemon is running at {runtime_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release_lock(runtime_dir: Path, fd: int) -> None:
    try:
        (runtime_dir / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(fd)


def remove_stale_sockets(runtime_dir: Path) -> None:
    """Sockets left by a daemon that was SIGKILLed (we hold the lock, so it is gone)."""
    for name in SOCKETS:
        (runtime_dir / name).unlink(missing_ok=True)
    for path in (runtime_dir / ACTORS_DIR).glob("*"):
        path.unlink(missing_ok=True)


def remove_runtime_files(runtime_dir: Path) -> None:
    """What a daemon leaves when it stops: nothing but the directory (and its lock, released after)."""
    remove_stale_sockets(runtime_dir)
    try:
        (runtime_dir / ACTORS_DIR).rmdir()
    except OSError:
        pass


def daemon_info(config: Config) -> dict[str, Any]:
    """Whether a daemon holds ``config``'s runtime dir, and its pid (without connecting)."""
    path = config.runtime_dir / LOCK_FILE
    try:
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return {"running": False}
    return {"running": psutil.pid_exists(pid), "pid": pid}
