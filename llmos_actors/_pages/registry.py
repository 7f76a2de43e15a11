"""Which ``PageClient`` serves a daemon in this process, and which daemon's pages are the default.

The page region is mapped once per process and daemon, so the registry is per process by nature;
this module is light (no numpy) so that importing the client API stays fast.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import PageClient

_clients: dict[str, PageClient] = {}
_lock = threading.Lock()
_default: list[str] = []


def client_for(runtime_dir: Path | str) -> PageClient:
    """This process's client for the daemon at ``runtime_dir`` (made on first use, not attached)."""
    from .client import PageClient

    key = str(runtime_dir)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = PageClient(Path(runtime_dir))
        if not _default:
            _default.append(key)
        return client


@atexit.register
def _close_all() -> None:
    """At exit, close the channels quietly (the daemon reclaims our holds when we are gone)."""
    with _lock:
        clients = list(_clients.values())
    for client in clients:
        sock = client.sock
        if sock is not None:
            client.sock = None
            sock.close()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for client in _clients.values():
        client.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def note_kernel(runtime_dir: Path | str) -> None:
    """A kernel handle connected to ``runtime_dir``: the default pages, if none were chosen yet."""
    with _lock:
        if not _default:
            _default.append(str(runtime_dir))


def set_default(runtime_dir: Path | str) -> None:
    """The pages ``llmos.empty()`` and friends use when given no kernel (actors: their daemon's)."""
    with _lock:
        _default[:] = [str(runtime_dir)]


def default_client() -> PageClient | None:
    with _lock:
        key = _default[0] if _default else None
    return client_for(key) if key is not None else None
