"""Tensor passing through the page pool, in the peers' format (run beside shared/peers/peers_tensor.py).

    .venv/bin/python benchmarks/pages_tensor.py [--repeats 7] [--sizes-mib 1,64,256] [--json out.json]

A float32 tensor goes from this process to an actor that reads its last element and
replies with it; one row per case and size: ms per transfer (median, min, max over
repeats; each repeat the mean of 20 / 3 / 1 transfers at 1 / 64 / 256 MiB, as the peers
do), and the empty call for scale. Cases:

  pool    tensor allocated in the pool (kernel.empty): travels as a page handle, O(1)
  copied  ordinary tensor: copied into the pool once per send, then a handle
  memcpy  one torch copy_ of the same size into an already-touched tensor (the floor for copied)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from llmos_actors._pages.bench import TensorReader
from llmos_actors.testing import start_daemon

MIB = 1 << 20
BATCH = {1: 20, 64: 3, 256: 1}


def timings(one, repeats: int) -> list[float]:
    one()
    return [one() for _ in range(repeats)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sizes-mib", default="1,64,256")
    ap.add_argument("--json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes_mib.split(",")]
    rows = []
    with start_daemon(pages={"size": "2GiB"}) as d:
        kernel = d.connect()
        reader = kernel.spawn(TensorReader)

        def calls() -> float:
            t0 = time.perf_counter()
            for _ in range(200):
                reader.call("ping")
            return (time.perf_counter() - t0) / 200

        rows.append(("empty call", 0, timings(calls, args.repeats)))
        for mib in sizes:
            k = BATCH.get(mib, 1)
            n = mib * MIB // 4
            src = torch.ones(n)
            dst = torch.empty(n)
            dst.zero_()
            for case, t in (("pool", kernel.empty(n).fill_(1.0)), ("copied", torch.ones(n))):

                def one(t=t, k=k) -> float:
                    t0 = time.perf_counter()
                    for i in range(k):
                        t[-1] = i
                        assert reader.call("read_last", t) == i
                    return (time.perf_counter() - t0) / k

                rows.append((case, mib, timings(one, args.repeats)))

            def memcpy(k=k, src=src, dst=dst) -> float:
                t0 = time.perf_counter()
                for _ in range(k):
                    dst.copy_(src)
                return (time.perf_counter() - t0) / k

            rows.append(("memcpy", mib, timings(memcpy, args.repeats)))
    empty = statistics.median(rows[0][2])
    print(f"{'case':<12}{'size':>8}{'median ms':>12}{'min':>10}{'max':>10}{'GB/s':>10}{'x empty call':>14}")
    out = []
    for case, mib, secs in rows:
        med = statistics.median(secs)
        gbps = mib * MIB / med / 1e9 if mib else 0.0
        print(
            f"{case:<12}{(str(mib) + ' MiB') if mib else '-':>8}{med * 1e3:>12.3f}{min(secs) * 1e3:>10.3f}"
            f"{max(secs) * 1e3:>10.3f}{gbps:>10.2f}{med / empty:>14.2f}"
        )
        out.append({"case": case, "mib": mib, "median_s": med, "samples_s": secs})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
