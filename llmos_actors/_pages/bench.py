"""Benchmark cases of the page pool, as plain functions of a connected kernel.

Each returns seconds per operation (the median over ``repeats`` batches), so that
``llmos bench`` and pytest-benchmark can share them:

    tensor_pass(kernel, nbytes, pooled=True)   sender -> actor that reads one element, per transfer
    empty_call(kernel)                         the same round trip with no argument (the baseline)
    put_seconds(kernel, nbytes)                one ``kernel.put`` of a fresh numpy array
    get_seconds(kernel)                        one ``kernel.get`` of a small stored object

``bench`` wiring: ``tensor_pass_{1MiB,64MiB,256MiB}`` (pool and copied),
``single_client_put_gigabytes`` (nbytes / put_seconds) and ``single_client_get_calls``
(1 / get_seconds).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ..actor import Actor

MIB = 1 << 20


class TensorReader(Actor):
    """The receiving end: reads one element of what it is sent (so nothing is copied)."""

    def read_last(self, t: Any) -> float:
        return float(t[-1])

    def ping(self) -> None:
        return None


def _batch(nbytes: int) -> int:
    return 20 if nbytes <= MIB else (3 if nbytes <= 64 * MIB else 1)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def tensor_pass(kernel: Any, nbytes: int, *, pooled: bool = True, repeats: int = 7, reader: Any = None) -> float:
    """Seconds per transfer of a float32 tensor of ``nbytes`` to an actor that reads one element.

    Args:
        pooled: the tensor was allocated in the pool (``kernel.empty``), so it travels as it is;
            else it is an ordinary tensor, copied into the pool once per send.
        reader: a ``TensorReader`` ref to reuse (default: one spawned and killed here).
    """
    import torch

    own = reader is None
    ref = kernel.spawn(TensorReader) if own else reader
    try:
        n = nbytes // 4
        t = kernel.empty(n, torch.float32) if pooled else torch.empty(n, dtype=torch.float32)
        t.fill_(1.0)
        k = _batch(nbytes)

        def one() -> float:
            t0 = time.perf_counter()
            for i in range(k):
                t[-1] = i
                if ref.call("read_last", t) != i:
                    raise AssertionError("the reader saw the wrong value")
            return (time.perf_counter() - t0) / k

        one()  # warm: first touches, connections, mappings
        return _median([one() for _ in range(repeats)])
    finally:
        if own:
            kernel.kill(ref, force=True)


def empty_call(kernel: Any, *, repeats: int = 7, calls: int = 200, reader: Any = None) -> float:
    """Seconds per empty synchronous call to an actor (the floor under ``tensor_pass``)."""
    own = reader is None
    ref = kernel.spawn(TensorReader) if own else reader
    try:

        def one() -> float:
            t0 = time.perf_counter()
            for _ in range(calls):
                ref.call("ping")
            return (time.perf_counter() - t0) / calls

        one()
        return _median([one() for _ in range(repeats)])
    finally:
        if own:
            kernel.kill(ref, force=True)


def put_seconds(kernel: Any, nbytes: int, *, repeats: int = 5) -> float:
    """Seconds per ``kernel.put`` of an ordinary numpy array of ``nbytes`` (one copy into the pool)."""
    import numpy as np

    arr = np.ones(nbytes // 8, dtype=np.float64)
    samples = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        ref = kernel.put(arr)
        samples.append(time.perf_counter() - t0)
        kernel.free(ref)
    return _median(samples[1:])


def get_seconds(kernel: Any, *, calls: int = 500, repeats: int = 5) -> float:
    """Seconds per ``kernel.get`` of a small stored array (a daemon round trip and a mapping)."""
    import numpy as np

    ref = kernel.put(np.arange(1024, dtype=np.float32))
    try:

        def one() -> float:
            t0 = time.perf_counter()
            for _ in range(calls):
                kernel.get(ref)
            return (time.perf_counter() - t0) / calls

        one()
        return _median([one() for _ in range(repeats)])
    finally:
        kernel.free(ref)


def run_all(kernel: Any, sizes_mib: tuple[int, ...] = (1, 64, 256), *, repeats: int = 7) -> dict[str, float]:
    """Every case, side by side in one run: ``{case: seconds}`` (GB/s and calls/s computed)."""
    reader = kernel.spawn(TensorReader)
    out: dict[str, float] = {}
    try:
        out["empty_call"] = empty_call(kernel, reader=reader, repeats=repeats)
        for mib in sizes_mib:
            out[f"tensor_pass_{mib}MiB_pool"] = tensor_pass(kernel, mib * MIB, reader=reader, repeats=repeats)
            out[f"tensor_pass_{mib}MiB_copied"] = tensor_pass(
                kernel, mib * MIB, pooled=False, reader=reader, repeats=repeats
            )
        put = put_seconds(kernel, 256 * MIB)
        out["put_256MiB"] = put
        out["single_client_put_gigabytes"] = 256 * MIB / put / 1e9
        get = get_seconds(kernel)
        out["get_small"] = get
        out["single_client_get_calls"] = 1 / get
    finally:
        kernel.kill(reader, force=True)
    return out
