"""The llmos-actors demo: spawn pinned actors, call them, show where they run, stop cleanly.

    python clients/demo.py            # uses the daemon at the default runtime dir, starting one if needed

Run `llmos ps` in another terminal while it runs to see the process table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llmos_actors as llmos
from llmos_actors.config import load_config

from demo_actors import Coordinator, Worker


def start_daemon_if_needed(config: llmos.Config) -> subprocess.Popen | None:
    """Start `llmos daemon` on the default config unless one already answers."""
    try:
        llmos.connect(config=config).close()
        print(f"using the running daemon at {config.runtime_dir}")
        return None
    except llmos.DaemonUnavailable:
        pass
    print(f"starting llmos daemon at {config.runtime_dir} ...")
    cli = [sys.executable, "-m", "llmos_actors.cli", "--runtime-dir", str(config.runtime_dir)]
    proc = subprocess.Popen([*cli, "daemon", "--log-level", "WARNING"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with status {proc.returncode}")
        try:
            llmos.connect(config=config).close()
            return proc
        except llmos.DaemonUnavailable:
            time.sleep(0.1)  # waiting for another process to come up: poll with a deadline
    proc.kill()
    raise SystemExit("the daemon did not come up within 60 s")


def show(rows: list[dict]) -> None:
    print(f"  {'NAME':<12} {'ROLE':<10} {'PID':>7} {'PINNED':>7} {'CORE':>5} {'PRIO':>5} {'NICE':>5}")
    for r in rows:
        pinned = ",".join(map(str, r["pinned"]))
        print(
            f"  {r['name']:<12} {r['role']:<10} {r['pid']:>7} {pinned:>7} {r['core']:>5} {r['prio']:>5} {r['nice']:>5}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime-dir", help="daemon instance (default: $LLMOS_RUNTIME_DIR or the user's)")
    args = parser.parse_args()
    config = load_config({"runtime_dir": args.runtime_dir})
    daemon = start_daemon_if_needed(config)
    try:
        with llmos.connect(config=config) as kernel:
            cores = kernel.status()["inventory"]["cores"]
            print(f"\ncores available to the daemon: {cores}")
            # One worker pinned to each core; priorities differ so their nice values do too.
            workers = []
            for i, core in enumerate(cores[:4]):
                prio = 6 if i == 0 else 4 - i
                workers.append(
                    kernel.spawn(Worker, f"core-{core}", name=f"worker-{i}", cpus=[core], priority=max(prio, 0))
                )
            free = kernel.spawn(Worker, "auto", name="worker-auto", cpus="auto")
            workers.append(free)
            print(f"spawned {len(workers)} actors; spawn-to-ready p50 {kernel.status()['spawn_ms_p50']} ms\n")

            print("where each actor runs:")
            prios = {r["id"]: r["priority"] for r in kernel.ps()}
            show([{**w.call("where"), "prio": prios[w.id]} for w in workers])

            print("\nrequest/reply, pipelined (ask) across all workers:")
            started = time.perf_counter()
            results = [f.result() for f in [w.ask("work", 60_000) for w in workers]]
            for r in results:
                print(f"  {r['name']:<12} {r['primes']} primes in {r['ms']} ms")
            print(f"  all done in {(time.perf_counter() - started) * 1000:.0f} ms (in parallel, one process each)")

            print("\nactor-to-actor: a coordinator fans out to the workers it holds refs to:")
            coord = kernel.spawn(Coordinator, workers, name="coordinator")
            print("  " + ", ".join(f"{r['name']}={r['primes']}" for r in coord.call("fan_out", 20_000)))

            print("\none-way tells, then a call (per-sender FIFO):")
            for _ in range(1000):
                workers[0].tell("work", 10)
            print(f"  {workers[0].call('work', 10)['name']} processed 1000 tells before the call")

            print("\nthe asyncio client: 2000 concurrent calls")

            async def many() -> float:
                async with llmos.connect_async(config=config) as ak:
                    ref = await ak.lookup("worker-0")
                    t0 = time.perf_counter()
                    await asyncio.gather(*(ref.call("where") for _ in range(2000)))
                    return time.perf_counter() - t0

            elapsed = asyncio.run(many())
            print(f"  2000 calls in {elapsed * 1000:.0f} ms ({2000 / elapsed:,.0f} calls/s)")

            print("\npriorities: 30 low-priority jobs queued on worker-0, then one priority-7 call")
            low = [workers[0].options(priority=0).ask("work", 20_000) for _ in range(30)]
            started = time.perf_counter()
            workers[0].options(priority=7).call("where")
            waited = (time.perf_counter() - started) * 1000
            pending = sum(not f.done() for f in low)
            print(
                f"  the priority-7 call returned in {waited:.1f} ms (after the job already running), "
                f"ahead of {pending} queued low-priority jobs"
            )
            for f in low:
                f.result()

            print("\nzero-copy arrays: a 64 MiB array allocated in shared-memory pages, sent to an actor")
            big = kernel.np_zeros(16 << 20, dtype="float32")
            reader = workers[1 % len(workers)]
            reader.call("peek", big)  # the first array an actor receives attaches it to the pool
            big[-1] = 42.0
            started = time.perf_counter()
            seen = reader.call("peek", big)
            took = (time.perf_counter() - started) * 1000
            print(f"  the actor saw {seen['mib']} MiB, last element {seen['last']:.0f}, read-only={seen['read_only']}")
            print(f"  in {took:.2f} ms: a page handle travelled, not the bytes")
            del big

            print("\nsupervision: a restart='permanent' actor, killed with SIGKILL")
            phoenix = kernel.spawn(Worker, "supervised", name="phoenix", restart="permanent")
            before = phoenix.call("where")["pid"]
            os.kill(before, signal.SIGKILL)
            started = time.perf_counter()
            patient = phoenix.options(wait_restart=True, timeout=30)
            try:
                after = patient.call("where")["pid"]
            except llmos.ActorDiedError as exc:
                # Sent before anyone knew it had died: it may have reached the old process, so it
                # is not retried for us. `restarting` says a new incarnation is on its way.
                if not exc.restarting:
                    raise
                print(f"  a call that raced the kill: ActorDiedError ({exc.reason}), restarting={exc.restarting}")
                after = patient.call("where")["pid"]
            print(
                f"  pid {before} killed; pid {after} answered {(time.perf_counter() - started) * 1000:.0f} ms later "
                f"(same name, same ref)"
            )

            if "torch" in kernel.status()["fork_server"]["preloaded"]:
                total = workers[0].call("matmul", 64)
                print(f"\ntorch was pre-imported by the fork server: 64x64 matmul sum = {total:.0f}")

            print("\nerrors come back with the remote traceback:")
            try:
                workers[0].call("work", "not a number")
            except llmos.RemoteError as exc:
                print(f"  RemoteError: {exc.remote_type}: {exc.remote_message}")

            print("\nstopping the actors:")
            for ref in [coord, phoenix, *workers]:
                record = kernel.kill(ref)
                print(f"  {ref.name:<12} {record['reason']}")
    finally:
        if daemon is not None:
            print("\nstopping the daemon we started ...")
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            print(f"daemon exited with status {daemon.returncode}")
    print("demo finished cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
