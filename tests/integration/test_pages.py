"""Shared-memory pages end to end: zero copy, semantics, lifetime, reclaim, bad handles."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import zmq
from page_actors import PageUser, address, mapping_of

import llmos_actors as llmos
from llmos_actors._wire.codec import EXT_PAGES
from llmos_actors.testing import shm_files, start_daemon, wait_for

MIB = 1 << 20


def pages(kernel) -> dict:
    return kernel.status()["pages"]


def in_our_pool(x) -> bool:
    return "memfd:llmos-" in mapping_of(address(x))


def settle(kernel, used: int, timeout: float = 10.0) -> None:
    """Wait until the pool's used bytes are back to ``used`` (releases travel asynchronously)."""
    gc.collect()
    wait_for(lambda: pages(kernel)["used_bytes"] <= used, timeout, what=f"pool used bytes back to {used}")


# ---------------------------------------------------------------------------- zero copy
def test_pool_tensor_arrives_without_copy(kernel):
    u = kernel.spawn(PageUser)
    t = kernel.empty((256, 1024), torch.float32)
    t.copy_(torch.arange(t.numel(), dtype=torch.float32).view(256, 1024))
    seen = u.call("where", t)
    assert "memfd:llmos-" in seen["mapping"] and "-pool" in seen["mapping"]
    assert seen["shape"] == [256, 1024] and seen["requires_grad"] is False
    assert u.call("total", t) == float(t.sum())
    back = u.call("echo", t)  # and back again: the reply is a handle too
    assert in_our_pool(back) and torch.equal(back, t)


def test_ordinary_arrays_are_copied_into_the_pool_once(kernel):
    u = kernel.spawn(PageUser)
    t = torch.arange(MIB // 4, dtype=torch.float32)
    a = np.arange(MIB // 8, dtype=np.float64)
    assert not in_our_pool(t)
    assert "memfd:llmos-" in u.call("where", t)["mapping"]
    assert "memfd:llmos-" in u.call("where", a)["mapping"]
    back = u.call("echo", a)  # the actor sends back a pool array it was given: shared read-only
    assert np.array_equal(back, a) and in_our_pool(back) and not back.flags.writeable
    assert u.call("write", t, 7.0) == 7.0  # a copied-in tensor belongs to its receiver: writable
    assert float(t[0]) == 0.0


def test_small_values_travel_inline(kernel):
    u = kernel.spawn(PageUser)
    seen = u.call("where", torch.ones(16))
    assert "memfd" not in seen["mapping"]
    assert u.call("total", np.ones(100)) == 100.0


@pytest.mark.parametrize(
    "make",
    [
        lambda k: k.empty((128, 512), torch.float32)[:, ::2],  # non-contiguous view of a pool tensor
        lambda k: k.empty((512, 256), torch.float64).T,
        lambda k: k.empty(1 << 17, torch.bfloat16),
        lambda k: k.empty(1 << 17, torch.bool),
        lambda k: k.empty((128, 128, 8), torch.complex64)[1:, :, 3],
        lambda k: torch.arange(1 << 16, dtype=torch.int64).view(256, 256)[::3, 1::2],  # ordinary, strided
        lambda k: k.np_empty((300, 400), np.float32)[::-1, ::2],  # numpy negative strides
        lambda k: np.asfortranarray(np.ones((300, 300), np.int16)),
    ],
)
def test_dtypes_shapes_strides_round_trip(kernel, make):
    u = kernel.spawn(PageUser)
    x = make(kernel)
    if isinstance(x, torch.Tensor):
        x.copy_(torch.randn(x.shape).to(x.dtype) if x.is_floating_point() or x.is_complex() else torch.ones_like(x))
        back = u.call("echo", x)
        assert back.dtype == x.dtype and back.shape == x.shape and torch.equal(back, x)
        if llmos.in_pages(x, kernel=kernel):
            assert x.numel() * x.element_size() >= 64 * 1024  # not inline: a handle
            assert back.stride() == x.stride()  # travelled as it is
    else:
        x[...] = np.random.default_rng(0).integers(0, 100, x.shape)
        back = u.call("echo", x)
        assert back.dtype == x.dtype and back.shape == x.shape and np.array_equal(back, x)


# ---------------------------------------------------------------------------- semantics
def test_read_only_share_is_enforced(kernel):
    u = kernel.spawn(PageUser)
    t = kernel.full(MIB // 4, 1.0)
    a = kernel.np_zeros(MIB // 8)
    with pytest.raises(llmos.RemoteError, match="read-only"):
        u.call("write", a, 5.0)  # numpy: the array says so
    with pytest.raises(llmos.ActorDiedError) as info:
        u.call("write", t, 99.0)  # torch has no read-only tensors: the mapping is read-only
    assert info.value.signal == signal.SIGSEGV
    assert float(t.max()) == 1.0 and float(a.max()) == 0.0  # ours never changed
    v = kernel.spawn(PageUser)
    assert v.call("write", t.clone(), 99.0) == 99.0  # an ordinary tensor is copied: the actor's own


def test_writable_share_and_move(kernel):
    u = kernel.spawn(PageUser)
    t = kernel.zeros(MIB // 4)
    u.call("fill", llmos.share(t), 7.0)
    assert float(t.min()) == 7.0 == float(t.max())  # the actor wrote into our pages
    with pytest.raises(TypeError, match="writable share needs memory in the pool"):
        u.call("fill", llmos.share(torch.zeros(MIB)), 1.0)
    m = kernel.full(MIB // 4, 2.0)
    assert u.call("write", llmos.move(m), 5.0) == 5.0
    assert m.numel() == 0  # given away


def test_received_tensor_forwards_without_copy(kernel):
    u = kernel.spawn(PageUser)
    v = kernel.spawn(PageUser)
    t = kernel.full(MIB // 4, 1.0)
    back = u.call("echo", t)
    assert "memfd:llmos-" in v.call("where", back)["mapping"]  # forwarded as the same pages
    t[0] = 5.0  # the sender may still write (its own pages): receivers see it
    assert float(back[0]) == 5.0 and v.call("total", back) == float(t.sum())
    with pytest.raises(TypeError, match="received read-only"):
        v.call("fill", llmos.share(back), 0.0)


def test_returned_pool_tensor_outlives_its_allocator(kernel):
    u = kernel.spawn(PageUser)
    t = u.call("make", MIB)
    assert in_our_pool(t)
    kernel.kill(u, force=True)  # the actor that allocated it is gone; we still hold the pages
    filler = [kernel.full(MIB, -1.0) for _ in range(4)]  # new allocations never reuse them
    assert torch.equal(t, torch.arange(MIB, dtype=torch.float32))
    del filler


# ---------------------------------------------------------------------------- lifetime
def test_pages_freed_when_the_last_holder_drops_them(kernel):
    base = pages(kernel)["used_bytes"]
    u = kernel.spawn(PageUser)
    t = kernel.empty(16 * MIB // 4)
    u.call("hold", t)
    del t
    gc.collect()
    assert pages(kernel)["used_bytes"] >= 16 * MIB  # the actor still maps it
    u.call("drop")
    settle(kernel, base)


def test_pages_reclaimed_when_holder_is_killed(kernel):
    base = pages(kernel)["used_bytes"]
    u = kernel.spawn(PageUser)
    u.call("alloc_hold", 32 * MIB // 4)
    t = kernel.empty(8 * MIB // 4)
    u.call("hold", t)  # and a block we sent it
    del t
    gc.collect()
    assert pages(kernel)["used_bytes"] >= 40 * MIB
    kernel.kill(u, force=True)  # SIGKILL: no chance to release anything itself
    settle(kernel, base)
    assert pages(kernel)["processes_reclaimed"] >= 1


def test_pages_reclaimed_when_a_client_process_is_killed(kernel, daemon):
    base = pages(kernel)["used_bytes"]
    script = textwrap.dedent(
        f"""
        import sys, llmos_actors as llmos
        k = llmos.connect({str(daemon.runtime_dir)!r})
        t = k.empty({24 * MIB // 4})
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        assert pages(kernel)["used_bytes"] >= 24 * MIB
        proc.kill()
        proc.wait(10)
        settle(kernel, base)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


@pytest.mark.parametrize("how", ["stop", "sigterm", "sigkill"])
def test_pool_is_gone_after_daemon_exit(how):
    with start_daemon() as d:
        k = d.connect()
        u = k.spawn(PageUser)
        u.call("alloc_hold", MIB)
        t = k.full(MIB, 1.0)
        u.call("hold", t)
        instance = d.config.instance
        assert processes_mapping(instance), "the pool should be mapped while the daemon runs"
        del t
        k.close()
        d.kernels.clear()
        if how == "sigterm":
            d.process.send_signal(signal.SIGTERM)
        elif how == "sigkill":
            d.process.send_signal(signal.SIGKILL)
        if how != "stop":
            d.process.wait(30)
    gc.collect()
    assert not shm_files(instance)
    assert not (d.runtime_dir / "pages").exists()
    wait_for(lambda: not processes_mapping(instance), 10, what="no process maps the pool any more")


def processes_mapping(instance: str) -> list[int]:
    """Pids whose memory maps still include this daemon instance's pool."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"memfd:llmos-{instance}-pool" in (entry / "maps").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# ---------------------------------------------------------------------------- bad input
def _forge(kernel, **changes):
    t = kernel.empty(MIB // 4)
    codec = kernel._core.codec
    arrays = codec.arrays
    payload = arrays.encode(t, [])[1]
    fields = ["pool_id", "kind", "dtype", "shape", "strides", "start", "pages", "gen", "base_off", "span", "first"]
    for key, value in changes.items():
        payload[fields.index(key)] = value(payload[fields.index(key)]) if callable(value) else value
    return t, msgpack.ExtType(EXT_PAGES, msgpack.packb(payload))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gen": lambda g: g + 1}, "stale or forged"),
        ({"start": lambda s: s + 3}, "stale or forged"),
        ({"start": 10**9}, "outside the pool"),
        ({"span": lambda n: n + 64 * MIB}, "outside its pages"),
        ({"base_off": 10**8}, "outside its pages"),
        ({"shape": [10**7]}, "reaches outside"),
        ({"strides": [-4]}, "strides"),
        ({"pool_id": 12345}, "another pool"),
        ({"dtype": "not_a_dtype"}, "not a torch dtype"),
    ],
)
def test_forged_handles_are_protocol_errors(kernel, changes, message):
    t, ext = _forge(kernel, **changes)
    with pytest.raises(llmos.ProtocolError, match=message):
        kernel._core.codec.unpack(msgpack.packb([ext]))
    u = kernel.spawn(PageUser)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(u.address.endpoint)
        head = {"v": 1, "kind": "call", "id": 5, "method": "total", "prio": None, "deadline": None}
        s.send_multipart([msgpack.packb(head), msgpack.packb([[ext], {}])])
        reply_head, body = s.recv_multipart()[:2]
        reply = msgpack.unpackb(body)
        assert msgpack.unpackb(reply_head)["kind"] == "err" and reply["code"] == "protocol"
        assert message.split()[0] in reply["message"]
    finally:
        s.close()
        ctx.term()
    assert u.call("total", np.ones(4)) == 4.0  # still serving
    del t


# ---------------------------------------------------------------------------- object store
def test_put_get_free_and_refs_travel(kernel):
    a = np.arange(MIB // 8, dtype=np.float64)
    ref = kernel.put(a)
    assert isinstance(ref, llmos.ObjectRef) and ref.nbytes == a.nbytes
    got = kernel.get(ref)
    assert np.array_equal(got, a) and in_our_pool(got) and not got.flags.writeable
    u = kernel.spawn(PageUser)
    assert u.call("get_total", ref) == float(a.sum())
    t = kernel.full(MIB, 2.0)
    tref = kernel.put(t)  # a pool tensor is stored without a copy
    assert torch.equal(kernel.get(tref), t)
    kernel.free(ref)
    with pytest.raises(llmos.ObjectLost):
        kernel.get(ref)
    kernel.free(tref)


def test_put_get_plain_values(kernel):
    value = {"prompt": "hi", "tokens": [1, 2, 3], "score": 0.5, "none": None, 7: b"\x00raw"}
    ref = kernel.put(value)
    assert kernel.get(ref) == value
    u = kernel.spawn(PageUser)
    assert u.call("get_value", ref) == value  # another process reads it too
    assert kernel.get(kernel.put(0)) == 0
    with pytest.raises(TypeError, match="cannot send an object of type"):
        kernel.put(object())
    kernel.free(ref)
    with pytest.raises(llmos.ObjectLost):
        kernel.get(ref)


def test_the_owner_reads_its_small_values_without_the_daemon(kernel):
    from llmos_actors._pages import owned
    from llmos_actors.pages import _client

    own = _client(kernel).own_values
    small, big = {"k": list(range(10))}, b"x" * (owned.MAX_VALUE + 1)
    small_ref, big_ref = kernel.put(small), kernel.put(big)
    assert own.find(small_ref.id) is not None and own.find(big_ref.id) is None
    assert kernel.get(big_ref) == big  # read from the pool
    u = kernel.spawn(PageUser)
    with pytest.raises(llmos.PermissionDenied):
        u.call("free", small_ref)  # another process may read it, never free it (docs/security.md)
    assert u.call("get_value", small_ref) == small
    assert kernel.get(small_ref) == small
    kernel.free(small_ref)  # the owner frees it: the pool's copy and its own go
    assert own.find(small_ref.id) is None
    with pytest.raises(llmos.ObjectLost):
        u.call("get_value", small_ref)
    kernel.free(big_ref)


def test_objects_die_with_their_owner_unless_detached(kernel):
    u = kernel.spawn(PageUser)
    owned = u.call("put", 1 << 16)
    detached = u.call("put", 1 << 16, True)
    assert float(kernel.get(owned).sum()) == float(np.arange(1 << 16).sum())
    kernel.kill(u, force=True)
    wait_for(lambda: _lost(kernel, owned), 10, what="the owner's object to go")
    assert float(kernel.get(detached).sum()) == float(np.arange(1 << 16).sum())
    kernel.free(detached)


def _lost(kernel, ref) -> bool:
    try:
        kernel.get(ref)
    except llmos.ObjectLost:
        return True
    return False


def test_async_kernel_put_get(daemon):
    import asyncio

    async def main():
        async with llmos.connect_async(config=daemon.config) as k:
            ref = await k.put(np.ones(MIB // 8))
            got = await k.get(ref)
            await k.free(ref)
            return float(got.sum())

    assert asyncio.run(main()) == MIB // 8


# ---------------------------------------------------------------------------- pool pressure
@pytest.fixture(scope="module")
def small_pool():
    """A daemon whose pool holds 16 MiB: spill and exhaustion are quick to reach."""
    settings = {"size": "16MiB", "chunk_size": "1MiB", "alloc_timeout": 0.3}
    with start_daemon(grace=2.0, pages=settings) as d:
        yield d


def test_spill_to_disk_and_restore(small_pool):
    k = small_pool.connect()
    arrays = [np.full(6 * MIB // 8, float(i)) for i in range(3)]
    refs = [k.put(a) for a in arrays]  # 18 MiB into a 16 MiB pool: the oldest is spilled
    st = pages(k)
    assert st["spills"] >= 1 and st["objects_spilled"] >= 1
    for a, ref in zip(arrays, refs, strict=True):
        assert np.array_equal(k.get(ref), a)  # read back (and others spilled to make room)
    st = pages(k)
    assert st["restores"] >= 1 and list((small_pool.config.state_dir / "spill").glob("*.bin"))
    out = subprocess.run(
        [sys.executable, "-m", "llmos_actors.cli", "--runtime-dir", str(small_pool.runtime_dir), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "spills=" in out.stdout and "restores=" in out.stdout
    for ref in refs:
        k.free(ref)


def test_pool_exhausted_after_a_bounded_wait(small_pool):
    k = small_pool.connect()
    held = [k.empty(4 * MIB // 4) for _ in range(3)]
    with pytest.raises(llmos.PoolExhausted, match=r"need 8\.0 MiB.*largest free run.*held by 1 process"):
        k.empty(8 * MIB // 4)
    with pytest.raises(llmos.PoolExhausted, match="larger than the whole pool"):
        k.empty(64 * MIB // 4)
    del held
    gc.collect()
    assert k.empty(8 * MIB // 4).numel() == 2 * MIB  # room again once released
    u = k.spawn(PageUser)
    with pytest.raises(llmos.PoolExhausted, match="larger than the whole pool"):
        u.call("ordinary", 32 * MIB // 4)  # a reply that cannot be copied in is an error reply, not a hang
    assert u.call("total", np.ones(3)) == 3.0


def test_free_memory_is_given_back_beyond_trim_above():
    with start_daemon(pages={"size": "256MiB", "trim_above": 0}) as d:
        k = d.connect()
        t = k.full(64 * MIB // 4, 1.0)  # touched: 64 MiB resident
        assert pages(k)["resident_bytes"] >= 64 * MIB
        del t
        gc.collect()
        wait_for(lambda: pages(k)["resident_bytes"] < 16 * MIB, 10, what="free pages given back")
        assert pages(k)["trimmed_bytes"] >= 60 * MIB


def test_pages_disabled_falls_back_to_inline():
    with start_daemon(pages={"enabled": False}) as d:
        k = d.connect()
        u = k.spawn(PageUser)
        assert u.call("total", torch.ones(MIB)) == MIB
        with pytest.raises(llmos.LlmosError, match="no shared-memory pool"):
            k.empty(10)


# ---------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_cuda_tensor_by_ipc_handle(kernel):
    u = kernel.spawn(PageUser, gpus=[0])
    t = torch.arange(1 << 20, dtype=torch.float32, device="cuda")
    assert u.call("total", t) == float(t.sum())


def test_forked_child_gets_its_own_channel(kernel):
    t = kernel.full(MIB, 1.0)  # attached in the parent
    ours = pages(kernel)["holders"]
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's holds are not ours; it allocates through its own channel
        code = 1
        try:
            # numpy here: torch's OpenMP pool is not usable in a forked child (a torch limitation)
            x = llmos.np_full(MIB, 2.0, kernel=kernel)
            os.write(to_parent_w, b"ok" if float(t[0]) == 1.0 and float(x[-1]) == 2.0 else b"no")
            os.read(to_child_r, 1)
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(to_parent_r, 2) == b"ok"
        assert pages(kernel)["holders"] >= ours + 1  # the child holds pages of its own
        os.write(to_child_w, b"x")
    finally:
        _, status = os.waitpid(pid, 0)
        for fd in (to_parent_r, to_parent_w, to_child_r, to_child_w):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    wait_for(lambda: pages(kernel)["holders"] <= ours, 10, what="the child's pages reclaimed")


def test_client_attaches_to_a_restarted_daemon():
    import shutil

    from llmos_actors.testing import short_tmpdir

    base = short_tmpdir()
    try:
        rdir = base / "rt"
        with start_daemon(rdir) as first:
            k = first.connect()
            old = k.full(MIB, 1.0)
        with start_daemon(rdir) as second:  # same runtime dir, a new pool
            k2 = second.connect()
            t = k2.full(MIB, 2.0)  # the process's client notices and attaches to the new pool
            assert in_our_pool(t) and pages(k2)["used_bytes"] >= 4 * MIB
            u = k2.spawn(PageUser)
            assert u.call("total", old) == float(old.sum())  # the old pool's tensor: copied in
            del t, old
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_full_note_ring_is_drained_not_bypassed(kernel):
    client = kernel._core.codec.arrays.client
    t = kernel.full(MIB, 1.0)
    before = pages(kernel)
    client.lock.acquire()
    try:
        for _ in range(1000):  # ~2 MB of notes through a 256 KiB ring: it fills many times
            client._note("release", -1, 0, 1, "x" * 2000)  # a release of no block: ignored
    finally:
        client._unlock()
    u = kernel.spawn(PageUser)
    assert u.call("total", t) == float(t.sum())  # notes after the flood still arrive in order
    after = pages(kernel)
    assert after["bad_frames"] == before["bad_frames"]
