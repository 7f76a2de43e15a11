"""A client that stays up while its daemon is killed: calls made meanwhile, and its pool handle."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from pathlib import Path

import pytest
from state_daemons import daemon_at

from llmos_actors import DaemonUnavailable, connect
from llmos_actors.client import Kernel
from llmos_actors.errors import LlmosError
from llmos_actors.testing import DaemonHandle, wait_for

#: How much later than its budget a call may fail on a loaded machine (it must not wait for its deadline).
SLACK = 15.0


def client_of(handle: DaemonHandle, reconnect_timeout: float) -> Kernel:
    extra = {**handle.config.extra, "client": {"reconnect_timeout": reconnect_timeout}}
    return connect(config=dataclasses.replace(handle.config, extra=extra))


def kill9_and_see_it(handle: DaemonHandle, client: Kernel) -> None:
    handle.process.kill()
    handle.process.wait(10)
    wait_for(lambda: client._core.link.lost, 20, what="the client noticing its daemon is gone")


def _try(ref: object, method: str) -> object:
    try:
        return ref.options(timeout=1.0).call(method)  # type: ignore[attr-defined]
    except LlmosError:
        return None


def test_calls_while_the_daemon_is_down_fail_at_once_or_when_the_retry_budget_is_spent(rdir: Path) -> None:
    budget = 3.0
    with daemon_at(rdir) as d:
        client = client_of(d, budget)
        try:
            keep = client.spawn("state_actors:Keeper", 5, name="keep", restart="permanent")
            assert keep.call("get")["n"] == 5
            kill9_and_see_it(d, client)
            t0 = time.monotonic()
            # A plain call fails at once, not at its deadline.
            with pytest.raises(DaemonUnavailable, match="is down"):
                keep.options(timeout=60.0).call("get")
            with pytest.raises(DaemonUnavailable, match="is down"):
                keep.ask("get")
            assert time.monotonic() - t0 < SLACK
            # One that waits for restarts, and a daemon request, wait within the budget, then fail.
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                waiting = pool.submit(keep.options(wait_restart=True).call, "get")
                control = pool.submit(client.ps)
                for fut in (waiting, control):
                    with pytest.raises(DaemonUnavailable, match="reconnect_timeout"):
                        fut.result(budget + SLACK)
            assert time.monotonic() - t0 < budget + SLACK
            # Once the budget is spent, a new request fails at once too.
            t1 = time.monotonic()
            with pytest.raises(DaemonUnavailable, match="reconnect_timeout"):
                client.ps()
            assert time.monotonic() - t1 < SLACK
            # The daemon is back: the same ref works again (its actor was brought back).
            with daemon_at(rdir):
                got = wait_for(lambda: _try(keep, "get"), 60, what="keep answers again")
                assert got["n"] == 5
        finally:
            client.close()


def test_requests_made_while_the_daemon_is_down_succeed_once_it_is_back(rdir: Path) -> None:
    with daemon_at(rdir) as d:
        client = client_of(d, 120.0)
        try:
            keep = client.spawn("state_actors:Keeper", 7, name="keep", restart="permanent")
            keep.call("incr", 1)
            client.snapshot(keep)
            kill9_and_see_it(d, client)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                call = pool.submit(keep.options(wait_restart=True, timeout=120.0).call, "get")
                spawn = pool.submit(client.spawn, "state_actors:Plain", name="later")
                with daemon_at(rdir):
                    assert call.result(120)["n"] == 8
                    assert spawn.result(120).call("ping")
        finally:
            client.close()


def test_a_pool_handle_survives_a_daemon_restart(rdir: Path) -> None:
    with daemon_at(rdir) as d:
        client = client_of(d, 120.0)
        try:
            pool = client.pool("state_actors:Plain", size=2, name="pl")
            assert pool.call("ping")
            before = pool.dispatcher.id
            kill9_and_see_it(d, client)
            with daemon_at(rdir) as d2:
                k = d2.kernels[0]
                [row] = k.status()["scheduler"]["pools"]
                assert row["name"] == "pl"
                assert k.lookup("pl").id == before  # the dispatcher came back with its id
                assert wait_for(lambda: _try(pool, "ping"), 60, what="the pool answers again")
                pool.stop()
        finally:
            client.close()
