"""Page memory a process was not given, or was given read-only, cannot be mapped or written by it.

Enforced by the kernel, not by the client library: each slab is a memfd handed out only over
the pages channel, and sealed (``F_SEAL_FUTURE_WRITE``) before a read-only receiver gets it.
The attacks here use the raw system calls a hostile process of the same user would.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import subprocess
import sys
import textwrap

import pytest
from page_actors import PageUser

import llmos_actors as llmos
from llmos_actors._pages import channel as C
from llmos_actors._pages.registry import client_for

MIB = 1 << 20
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _received(kernel):
    """A tensor an actor allocated and sent us read-only, and where it lies."""
    u = kernel.spawn(PageUser)
    t = u.call("make", MIB // 4)
    assert float(t[5]) == 5.0
    client = client_for(kernel.config.runtime_dir)
    block, readonly, _offset = client.locate(t.data_ptr(), t.numel() * 4)
    assert readonly, "a read-only share is mapped from the read-only view"
    return u, t, client, block.start // client.region.slab_pages


def test_a_reader_cannot_make_its_mapping_writable(kernel):
    _u, t, client, slab = _received(kernel)
    page = t.data_ptr() & ~(mmap.PAGESIZE - 1)
    assert libc.mprotect(page, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE) == -1
    assert ctypes.get_errno() == errno.EACCES
    # The slab's own descriptor (we were given a page of it, so the daemon hands it over) ...
    with client.lock:
        reply = client._request(C.MAP, slab, False)
        fds, client.fds = client.fds, []
    assert reply["slab"] == slab and len(fds) == 1
    fd = fds[0]
    try:
        with pytest.raises(PermissionError):  # ... cannot be mapped writable: sealed
            mmap.mmap(fd, mmap.PAGESIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)
        reopened = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)  # same user: the reopen itself works ...
        try:
            with pytest.raises(PermissionError):  # ... and still cannot write
                mmap.mmap(reopened, mmap.PAGESIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            with pytest.raises(PermissionError):
                os.pwrite(reopened, b"x", 0)
        finally:
            os.close(reopened)
    finally:
        os.close(fd)
    with client.lock:
        refused = client._request(C.MAP, slab, True)  # nor will the daemon map it writable for us
    assert refused["error"] == "sealed"
    assert float(t[5]) == 5.0
    assert kernel.status()["pages"]["slabs_sealed"] >= 1


STRANGER = textwrap.dedent(
    """
    import json, mmap, os, socket, sys
    from llmos_actors._pages import channel as C

    rd, slab = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.path.join(rd, C.SOCKET_NAME))

    def ask(*parts):
        sock.sendall(C.frame(*parts))
        reader, frames, fds = C.FrameReader(), [], []
        while not frames:
            data, more, _f, _a = socket.recv_fds(sock, 1 << 16, 4)
            fds += more
            frames = reader.feed(data)
        return frames[0], fds

    info, fds = ask(C.HELLO, {})
    out = {"pool": "pool_id" in info, "fds": len(fds)}
    try:
        mmap.mmap(fds[0], mmap.PAGESIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        out["header"] = "writable"
    except PermissionError:
        out["header"] = "refused"
    for writable in (False, True):
        reply, got = ask(C.MAP, slab, writable)
        out[f"map_{writable}"] = [reply.get("error"), len(got)]
    print(json.dumps(out))
    """
)


def test_a_process_given_no_page_cannot_map_any(kernel):
    _u, _t, _client, slab = _received(kernel)
    out = subprocess.run(
        [sys.executable, "-c", STRANGER, str(kernel.config.runtime_dir), str(slab)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["pool"] and result["fds"] == 2  # it may attach (same user) ...
    assert result["header"] == "refused"  # ... never write the page table ...
    assert result["map_False"] == ["denied", 0] and result["map_True"] == ["denied", 0]  # ... nor map a slab


def test_moves_out_of_sealed_pages_arrive_as_private_copies(kernel):
    u, t, _client, _slab = _received(kernel)
    mine = kernel.full(MIB // 4, 2.0)
    assert u.call("total", mine) == 2.0 * (MIB // 4)  # read-only to u: our slab is sealed now
    moved = kernel.full(MIB // 4, 1.0)
    assert u.call("write", llmos.move(moved), 5.0) == 5.0  # still writable for u (its own copy)
    with pytest.raises(TypeError, match="never shared read-only"):
        u.call("fill", llmos.share(mine), 1.0)
    assert float(mine.max()) == 2.0 and float(t[5]) == 5.0


def test_an_allocation_spanning_more_slabs_than_one_answer_carries(kernel):
    """One answer carries at most MAX_FDS descriptors; the owner maps the rest of its slabs by asking."""
    import torch

    t = llmos.empty(1, dtype=torch.float32, kernel=kernel)  # this kernel's page region, attached
    region = kernel._core.codec.arrays.client.region
    n = (C.MAX_FDS + 3) * region.slab_pages * region.page_size // 4
    t = llmos.empty(n, dtype=torch.float32, kernel=kernel)
    t[:8], t[-8:] = 1.0, 2.0  # both ends are mapped writable here
    u = kernel.spawn(PageUser)
    assert u.call("total", t[-8:]) == 16.0 and u.call("total", t[:8]) == 8.0  # and readable there
    del t
