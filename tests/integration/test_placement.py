"""Where actors run: core pinning, 'auto' placement, priority -> nice, GPUs, exclusivity."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

import llmos_actors as llmos

from actors import Probe

CORES = sorted(os.sched_getaffinity(0))


def test_pinned_to_requested_core(kernel):
    for core in CORES:
        p = kernel.spawn(Probe, cpus=[core])
        pid = p.call("where")["pid"]
        assert psutil.Process(pid).cpu_affinity() == [core]


def test_unpinned_gets_every_core(kernel):
    p = kernel.spawn(Probe)
    assert psutil.Process(p.call("where")["pid"]).cpu_affinity() == CORES


def test_auto_spreads_over_least_loaded_cores(kernel):
    refs = [kernel.spawn(Probe, cpus="auto") for _ in CORES]
    used = sorted(psutil.Process(r.call("where")["pid"]).cpu_affinity()[0] for r in refs)
    assert used == CORES  # one per core while they are equally idle


def test_core_count(kernel):
    p = kernel.spawn(Probe, cpus=len(CORES))
    assert psutil.Process(p.call("where")["pid"]).cpu_affinity() == CORES


def test_priority_sets_nice(kernel):
    low = kernel.spawn(Probe, priority=0)
    normal = kernel.spawn(Probe)
    assert psutil.Process(low.call("where")["pid"]).nice() == 12
    assert psutil.Process(normal.call("where")["pid"]).nice() == 0
    row = next(r for r in kernel.ps() if r["id"] == low.id)
    assert row["priority"] == 0 and row["nice"] == 12


def test_high_priority_lowers_nice_when_permitted(kernel):
    high = kernel.spawn(Probe, priority=7)
    nice = psutil.Process(high.call("where")["pid"]).nice()
    if os.geteuid() == 0:
        assert nice == -9
    else:
        assert nice == 0  # not permitted: stays, and ps says why
        row = next(r for r in kernel.ps() if r["id"] == high.id)
        assert "nice" in row["note"]


def test_core_outside_inventory_is_refused(kernel):
    with pytest.raises(llmos.ResourceUnavailable, match="may use cores"):
        kernel.spawn(Probe, cpus=[max(CORES) + 64])
    with pytest.raises(llmos.ResourceUnavailable):
        kernel.spawn(Probe, cpus=len(CORES) + 1)


def test_gpus_beyond_inventory_are_refused(kernel):
    gpus = kernel.status()["inventory"]["gpus"]
    with pytest.raises(llmos.ResourceUnavailable, match="GPU"):
        kernel.spawn(Probe, gpus=[len(gpus) + 3])


def test_without_gpus_cuda_env_untouched(kernel):
    if kernel.status()["inventory"]["gpus"]:
        pytest.skip("machine has GPUs")
    p = kernel.spawn(Probe)
    assert p.call("where")["cuda_visible"] == os.environ.get("CUDA_VISIBLE_DEVICES")


def test_exclusive_cores(kernel):
    core = CORES[-1]
    owner = kernel.spawn(Probe, cpus=[core], exclusive=True)
    with pytest.raises(llmos.ResourceUnavailable, match="reserved exclusively"):
        kernel.spawn(Probe, cpus=[core])
    assert kernel.status()["inventory"]["reserved_cores"] == [core]
    if len(CORES) > 1:
        other = kernel.spawn(Probe, cpus="auto")  # auto avoids reserved cores
        assert psutil.Process(other.call("where")["pid"]).cpu_affinity() != [core]
    kernel.kill(owner)
    again = kernel.spawn(Probe, cpus=[core])  # released on exit
    assert again.call("where")["cpus"] == [core]


def test_cannot_reserve_a_busy_core(kernel):
    core = CORES[0]
    kernel.spawn(Probe, cpus=[core])
    with pytest.raises(llmos.ResourceUnavailable, match="cannot reserve"):
        kernel.spawn(Probe, cpus=[core], exclusive=True)


def test_bad_spawn_options_are_local_errors(kernel):
    with pytest.raises(ValueError):
        kernel.spawn(Probe, priority=8)
    with pytest.raises(ValueError):
        kernel.spawn(Probe, cpus=[-1])
    with pytest.raises(ValueError):
        kernel.spawn(Probe, name="has spaces")
    with pytest.raises(ValueError):
        kernel.spawn(Probe, restart="sometimes")


def test_each_actor_in_its_own_process_group(kernel):
    p = kernel.spawn(Probe)
    info = p.call("where")
    assert info["pgid"] == info["pid"]
    assert info["torch_loaded"] is True  # pre-imported by the fork server


def test_fork_server_has_no_zmq_threads(daemon):
    zygote = next(
        p for p in psutil.Process(daemon.pid).children() if "llmos_actors._kernel.zygote" in " ".join(p.cmdline())
    )
    tasks = Path(f"/proc/{zygote.pid}/task")
    names = [(t / "comm").read_text().strip() for t in tasks.iterdir()]
    assert not any(n.startswith("ZMQbg") for n in names), names


def test_actors_run_with_the_configured_gc_threshold(kernel):
    # The default config raises generation 0's threshold (message decoding allocates a lot).
    assert kernel.spawn(Probe).call("where")["gc_threshold"] == kernel._core.config.gc_threshold == 50_000
