"""What every peer shares: its child processes (started clean with ``spawn``), and stopping them.

A peer's servers run in child processes (see ``peer_servers``) that ``close`` stops, then joins,
and kills if they do not stop.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from typing import Any

from .context import BenchContext
from .ours import MIB

MP = multiprocessing.get_context("spawn")  # children start clean: no threads, no zmq context
#: Seconds a peer's child may take to start (the ones that import torch take ~1 s).
START_TIMEOUT = 120.0
#: Seconds to wait for any single reply from a peer's child.
REPLY_TIMEOUT = 60.0

_names = itertools.count()


def unique_addr(ctx: BenchContext, stem: str) -> str:
    return ctx.ipc(f"{stem}-{next(_names)}")


def shm_path() -> str:
    """A fresh /dev/shm file name of this process (the shared-memory peers create it)."""
    return f"/dev/shm/llmos-bench-{os.getpid()}-{next(_names)}"


def stop_proc(proc: Any, timeout: float = 10.0) -> None:
    """Wait for our child to exit; kill it (by its own pid) if it does not."""
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout)


def start_curve_peer(target: Any, args: tuple, sock_type: int, keys: tuple[bytes, bytes, bytes]) -> tuple:
    """Start ``target(*args, ready)`` (a CURVE server that sends its port on ``ready``) and connect to it.

    ``keys`` is (server public, client public, client secret). Returns (process, zmq context,
    connected socket); raises when the server does not start in time.
    """
    import zmq

    server_public, client_public, client_secret = keys
    parent, child = MP.Pipe()
    proc = MP.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    if not parent.poll(REPLY_TIMEOUT):
        stop_proc(proc)
        raise TimeoutError(f"the CURVE server {target.__name__} did not start")
    port = parent.recv()
    zctx = zmq.Context()
    sock = zctx.socket(sock_type)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(REPLY_TIMEOUT * 1000))
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, client_public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, client_secret)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return proc, zctx, sock


def stop_reader(conn: Any, proc: Any) -> None:
    """Tell a child reading ``conn`` to finish (``None``), wait for it, close our end."""
    try:
        with contextlib.suppress(OSError):
            conn.send(None)
        stop_proc(proc)
    finally:
        conn.close()


def recv_reply(conn: Any, what: str) -> Any:
    if not conn.poll(REPLY_TIMEOUT):
        raise TimeoutError(f"{what} gave no reply within {REPLY_TIMEOUT:.0f} s")
    return conn.recv()


def tensor_source(mib: int) -> Any:
    import torch

    return torch.ones(mib * MIB // 4, dtype=torch.float32)  # pages touched
