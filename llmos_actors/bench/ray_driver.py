"""The Ray side of ``llmos bench``: a Ray driver that runs workloads on request.

Run as a script by ``ray_session.RaySession``, with any interpreter that has
Ray (``--ray-python``), so it imports nothing from llmos_actors: standard
library, msgpack, ray, and numpy or torch for the cases that move arrays.

Protocol: one JSON object per line. Requests on stdin, replies on the original
stdout (fd 1 is pointed at stderr, so whatever Ray prints cannot corrupt it).
The first reply says whether ``ray.init`` worked. Then:

    {"op": "open", "id": 1, "kind": "calls_sync", "params": {...}} -> {"ok": true, "ops": 100, "note": "..."}
    {"op": "round", "id": 1}                                        -> {"ok": true, "secs": 0.081}
    {"op": "close", "id": 1}                                        -> {"ok": true}
    {"op": "quit"}                                                  -> (ray.shutdown(), exit)

Each round is timed here, so the pipe to the parent is never in the measurement.
Ray stays on loopback and offline: the parent sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(else Ray binds the default route's address) and ``RAY_USAGE_STATS_ENABLED=0``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any

import msgpack

MIB = 1 << 20


def _touch_packed(raw: bytes) -> bytes:
    d = msgpack.unpackb(raw)
    d["op"] = "ret"
    return msgpack.packb(d)


def define_actors(ray: Any) -> dict[str, Any]:
    """Ray actor classes, created after ``ray.init`` (they pickle by value from this script)."""

    @ray.remote(num_cpus=0)
    class Echo:
        def echo(self, raw: bytes) -> bytes:
            return _touch_packed(raw)

        def ping(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0)
    class Caller:
        def drive(self, servers: list, calls: int, window: int, raw: bytes) -> int:
            n = len(servers)
            done = 0
            while done < calls:
                batch = min(window, calls - done)
                for reply in ray.get([servers[i % n].echo.remote(raw) for i in range(batch)]):
                    msgpack.unpackb(reply)
                done += batch
            return done

    @ray.remote(num_cpus=0)
    class Reader:
        def last(self, t: Any) -> float:
            return float(t[-1])

    return {"Echo": Echo, "Caller": Caller, "Reader": Reader}


class Driver:
    """Opens workloads by kind; each has ``ops``, ``note``, ``round()`` and ``close()``."""

    def __init__(self, ray: Any, payload: dict) -> None:
        self.ray = ray
        self.payload = payload
        self.cls = define_actors(ray)
        self.workloads: dict[int, Any] = {}

    def request(self, seq: int) -> bytes:
        d = dict(self.payload)
        d["seq"] = seq
        return msgpack.packb(d)

    # -- workloads ---------------------------------------------------------------------
    def open(self, kind: str, params: dict) -> Any:
        return getattr(self, f"_open_{kind}")(**params)

    def _open_calls_sync(self, per_round: int) -> Any:
        ray, drv = self.ray, self
        actor = self.cls["Echo"].remote()
        ray.get(actor.ping.remote())

        class W:
            ops = per_round
            note = "ray.get(actor.echo.remote(97 B msgpack bytes)) in a loop"
            seq = 0

            def round(self) -> None:
                for _ in range(per_round):
                    self.seq += 1
                    if msgpack.unpackb(ray.get(actor.echo.remote(drv.request(self.seq))))["seq"] != self.seq:
                        raise RuntimeError("reply out of order")

            def close(self) -> None:
                ray.kill(actor)

        return W()

    def _open_calls_async(self, window: int, n_actors: int = 1, max_concurrency: int = 1) -> Any:
        ray = self.ray
        opts = {"max_concurrency": max_concurrency} if max_concurrency > 1 else {}
        actors = [self.cls["Echo"].options(**opts).remote() for _ in range(n_actors)]
        ray.get([a.ping.remote() for a in actors])
        raw = self.request(0)
        conc = f", max_concurrency={max_concurrency}" if opts else ""

        class W:
            ops = window
            note = f"{window} x actor.echo.remote() then ray.get(all), {n_actors} actor(s){conc}"

            def round(self) -> None:
                n = len(actors)
                for reply in ray.get([actors[i % n].echo.remote(raw) for i in range(window)]):
                    msgpack.unpackb(reply)

            def close(self) -> None:
                for a in actors:
                    ray.kill(a)

        return W()

    def _open_nn_calls(self, n: int, calls: int, window: int) -> Any:
        ray = self.ray
        servers = [self.cls["Echo"].remote() for _ in range(n)]
        callers = [self.cls["Caller"].remote() for _ in range(n)]
        ray.get([a.ping.remote() for a in servers])
        raw = self.request(0)
        ray.get([c.drive.remote(servers, 1, 1, raw) for c in callers])

        class W:
            ops = n * calls
            note = f"{n} Caller actors x {n} Echo actors, {window} in flight per caller"

            def round(self) -> None:
                ray.get([c.drive.remote(servers, calls, window, raw) for c in callers])

            def close(self) -> None:
                for a in servers + callers:
                    ray.kill(a)

        return W()

    def _open_spawn(self) -> Any:
        ray, echo = self.ray, self.cls["Echo"]

        class W:
            ops = 1
            note = "Echo.remote() -> first call returns; actors kept until the end"
            actors: list = []

            def round(self) -> None:
                a = echo.remote()
                ray.get(a.ping.remote())
                self.actors.append(a)

            def close(self) -> None:
                for a in self.actors:
                    ray.kill(a)

        return W()

    def _open_tensor_arg(self, mib: int, per_round: int) -> Any:
        import torch

        ray = self.ray
        reader = self.cls["Reader"].remote()
        ray.get(reader.last.remote(torch.ones(4)))
        t = torch.ones(mib * MIB // 4, dtype=torch.float32)
        zero_copy = os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "0") == "1"

        class W:
            ops = per_round
            note = "ray.get(actor.last.remote(tensor))" + (" (zero-copy env)" if zero_copy else "")

            def round(self) -> None:
                for i in range(per_round):
                    t[-1] = i
                    if ray.get(reader.last.remote(t)) != i:
                        raise RuntimeError("stale tensor")

            def close(self) -> None:
                ray.kill(reader)

        return W()

    def _open_put_gigabytes(self) -> Any:
        import numpy as np

        ray = self.ray
        arr = np.zeros(100 * MIB, dtype=np.int64)

        class W:
            ops = arr.nbytes / 1e9
            note = "ray.put(np.zeros(100 Mi, int64)) = 0.8 GB per put"

            def round(self) -> None:
                ray.put(arr)

            def close(self) -> None:
                pass

        return W()

    def _open_get_calls(self, per_round: int) -> Any:
        ray = self.ray
        ref = ray.put(0)

        class W:
            ops = per_round
            note = "ray.get(ref) in a loop, ref = ray.put(0) by this driver (its owner)"

            def round(self) -> None:
                for _ in range(per_round):
                    ray.get(ref)

            def close(self) -> None:
                pass

        return W()

    # -- protocol ----------------------------------------------------------------------
    def handle(self, msg: dict) -> dict:
        op = msg["op"]
        if op == "open":
            w = self.open(msg["kind"], msg.get("params") or {})
            self.workloads[msg["id"]] = w
            return {"ok": True, "ops": w.ops, "note": w.note}
        if op == "round":
            w = self.workloads[msg["id"]]
            t0 = time.perf_counter()
            w.round()
            return {"ok": True, "secs": time.perf_counter() - t0}
        if op == "close":
            w = self.workloads.pop(msg["id"], None)
            if w is not None:
                w.close()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--payload-hex", required=True)
    args = ap.parse_args()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # Ray's own prints go to stderr; fd `out` carries only the protocol
    sys.stdout = sys.stderr

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        import ray
    except ImportError as exc:
        reply({"ok": False, "error": f"ray is not installed for {sys.executable} ({exc})"})
        return 0
    try:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:
        reply({"ok": False, "error": f"ray.init() failed: {type(exc).__name__}: {exc}"})
        return 0
    try:
        driver = Driver(ray, msgpack.unpackb(bytes.fromhex(args.payload_hex)))
        reply({"ok": True, "ray": ray.__version__, "python": sys.version.split()[0]})
        for line in sys.stdin:
            msg = json.loads(line)
            if msg.get("op") == "quit":
                break
            try:
                reply(driver.handle(msg))
            except Exception as exc:
                traceback.print_exc()
                reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
