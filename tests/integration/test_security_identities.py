"""Identities come from the transport: sync holders, stored objects and the pages socket.

Each test plays the attacker of the review: a second client naming the first one's
holder, guessing its object ids, freeing what it was given.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from page_actors import PageUser

import llmos_actors as llmos
from llmos_actors._pages.objref import ObjectRef


def test_a_client_cannot_release_anothers_mutex(daemon):
    with daemon.connect() as a, daemon.connect() as b:
        m = a.mutex("guarded")
        assert m.acquire(timeout=5)
        try:
            # b names a's holder exactly as a's library does ({pid, owner}); the daemon ignores it.
            rows = {r["name"]: r for r in a._control("sync_list")}
            holder = rows["guarded"]["holder"]
            assert str(os.getpid()) in str(holder)
            with pytest.raises(llmos.LockError):
                b._control("sync_release", "mutex", "guarded", {"pid": os.getpid(), "owner": str(holder)})
            for owner in ("", "main", str(holder).split("/")[-1]):
                with pytest.raises(llmos.LockError):
                    b._control("sync_release", "mutex", "guarded", {"pid": os.getpid(), "owner": owner})
            assert b._control("sync_acquire", "mutex", "guarded", None, {"pid": os.getpid(), "owner": ""}, 0) is False
        finally:
            m.release()


def test_the_holder_pid_is_the_kernels_not_the_clients(daemon):
    with daemon.connect() as k:
        assert k._control("sync_acquire", "mutex", "pid-one", None, {"pid": 1, "owner": "x"}, 0) is True
        row = next(r for r in k._control("sync_list") if r["name"] == "pid-one")
        assert f"{os.getpid()}" in str(row["holder"]) and not str(row["holder"]).startswith("1 ")
    # The handle closed: what it held is free again (it would have waited for pid 1 forever).
    with daemon.connect() as k2:
        assert k2._control("sync_acquire", "mutex", "pid-one", None, {"pid": os.getpid(), "owner": "y"}, 5) is True


def test_object_ids_cannot_be_guessed(kernel):
    ref = kernel.put(np.arange(100_000, dtype=np.float64))
    prefix, counter, _tail = ref.id.rsplit("-", 2)
    for guess in (f"{prefix}-{counter}", f"{prefix}-{int(counter) - 1}", f"{prefix}-{counter}-0000000000000000"):
        with pytest.raises(llmos.ObjectLost):
            kernel.get(ObjectRef(guess, ref.nbytes))
    assert kernel.get(ref)[-1] == 99_999
    kernel.free(ref)


def test_others_may_read_what_they_were_given_never_free_it(kernel):
    actor = kernel.spawn(PageUser)
    mine = kernel.put(np.arange(100_000, dtype=np.float64))
    assert actor.call("get_total", mine) == float(np.arange(100_000).sum())
    with pytest.raises(llmos.LlmosError, match="only it may free"):
        actor.call("free", mine)
    assert kernel.get(mine)[-1] == 99_999  # still there
    theirs = actor.call("put", 100_000)
    with pytest.raises(llmos.PermissionDenied):
        kernel.free(theirs)
    actor.call("free", theirs)  # its owner may
    kernel.free(mine)
    kernel.kill(actor)


def test_sockets_are_the_daemons_users_alone(daemon):
    rd = daemon.runtime_dir
    assert rd.stat().st_mode & 0o777 == 0o700
    for name in ("control", "events", "publish"):
        assert (rd / name).stat().st_mode & 0o077 == 0, name


def test_transfer_tokens_cannot_be_guessed(daemon, kernel):
    from llmos_actors._pages.registry import client_for

    client = client_for(daemon.runtime_dir)
    seen: list[tuple[int, int]] = []
    original = client.sent

    def spy(block, fanout):
        token = original(block, fanout)
        seen.append(token)
        return token

    client.sent = spy
    try:
        actor = kernel.spawn(PageUser)
        for _ in range(3):
            assert actor.call("total", np.ones(200_000)) == 200_000.0
    finally:
        del client.sent
    seqs = [seq for _pid, seq in seen]
    assert len(seqs) >= 3 and len(set(seqs)) == len(seqs)
    assert all(abs(b - a) > 1_000_000 for a, b in itertools.pairwise(seqs))
    kernel.kill(actor)
