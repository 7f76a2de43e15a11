"""Check CUDA tensors by CUDA IPC handle on a GPU machine (exit 0: works; 2: no GPU here).

    .venv/bin/python benchmarks/gpu_cuda_ipc.py

Starts a daemon in a temp dir, spawns an actor on GPU 0, sends it CUDA tensors of
1/64/256 MiB (float32) and checks that it sees the same values on the same device
without a host copy (its storage is an IPC mapping of ours: the values agree, and its
writes are visible here, as with torch.multiprocessing), and times a transfer per size.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import llmos_actors as llmos
from llmos_actors.testing import start_daemon

MIB = 1 << 20


class GpuReader(llmos.Actor):
    def describe(self, t) -> dict:
        return {"device": str(t.device), "sum": float(t.sum()), "ptr": t.data_ptr(), "is_cuda": t.is_cuda}

    def read_last(self, t) -> float:
        return float(t[-1])

    def fill(self, t, value: float) -> None:
        t.fill_(value)
        torch.cuda.synchronize()


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return 2
    ok = True
    with start_daemon() as d:
        kernel = d.connect()
        reader = kernel.spawn(GpuReader, gpus=[0])
        for mib in (1, 64, 256):
            t = torch.arange(mib * MIB // 4, dtype=torch.float32, device="cuda")
            seen = reader.call("describe", t)
            good = seen["is_cuda"] and seen["sum"] == float(t.sum())
            ok &= good
            samples = []
            for i in range(20):
                t[-1] = i
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                assert reader.call("read_last", t) == i
                samples.append(time.perf_counter() - t0)
            print(
                f"{mib:4d} MiB: {'ok' if good else 'WRONG'}  p50 {statistics.median(samples) * 1e3:.3f} ms per transfer"
            )
        shared = torch.zeros(MIB, device="cuda")
        reader.call("fill", shared, 3.0)  # CUDA IPC memory is shared both ways
        torch.cuda.synchronize()
        both_ways = float(shared.min()) == 3.0
        print(f"writes by the receiver visible to the sender: {both_ways}")
        ok &= both_ways
        kernel.kill(reader)
    print("CUDA IPC: OK" if ok else "CUDA IPC: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
