"""Attaching a process to the daemon's pages: the HELLO on the pages channel and what it hands over.

The daemon answers HELLO with its pool's description and two descriptors, the page region
and the note ring; both are mapped here and the descriptors closed (the mappings keep the
memory), so an attached process holds no descriptor but its channel socket.
"""

from __future__ import annotations

import mmap
import os
import socket
import sys
import warnings
from pathlib import Path

import numpy as np

from . import channel as C
from .layout import PageRegion
from .ring import Ring


def attach_channel(runtime_dir: Path, timeout: float) -> tuple[socket.socket, PageRegion, Ring, dict]:
    """Connect to the daemon's pages channel and map what its HELLO reply brings.

    Raises:
        OSError / ValueError: no daemon there, or an answer that is not a pool (nothing stays open).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    fds: list[int] = []
    try:
        sock.connect(str(runtime_dir / C.SOCKET_NAME))
        sock.sendall(C.frame(C.HELLO, {"pid": os.getpid()}))
        data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 4)
        reader = C.FrameReader()
        frames = reader.feed(data)
        while not frames:
            more = sock.recv(1 << 16)
            if not more:
                raise ConnectionError("the daemon closed the pages channel")
            frames = reader.feed(more)
        info = frames[0]
        if not fds or type(info) is not dict or "pool_id" not in info:
            raise ConnectionError(f"unexpected hello reply: {info!r:.200}")
        if len(fds) < 2:
            raise ConnectionError("the daemon sent no note ring")
        region = PageRegion(fds[0])
        ring = Ring(mmap.mmap(fds[1], Ring.size()))
    except BaseException:
        sock.close()
        raise
    finally:
        for fd in fds:
            os.close(fd)  # the mappings keep the memory; no descriptor stays open
    return sock, region, ring, info


def quiet_readonly_warning() -> None:
    """torch warns (once per process) when a tensor views read-only memory, which ours do on
    purpose: take that one warning here, silenced, so user code never sees it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.from_numpy(np.frombuffer(b"\0" * 8, dtype=np.uint8))
