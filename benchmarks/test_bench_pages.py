"""pytest-benchmark cases of the page pool (``make bench-pytest``; skipped in the default run).

The case logic lives in ``llmos_actors._pages.bench`` so that ``llmos bench`` runs the same
code: tensor passing (pool-allocated and ordinary tensors, 1/64/256 MiB, float32), the
empty call they are compared with, ``put`` of 256 MiB and ``get`` of a small object.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmos_actors._pages.bench import TensorReader
from llmos_actors.testing import start_daemon

MIB = 1 << 20


@pytest.fixture(scope="module")
def bench():
    with start_daemon(pages={"size": "2GiB"}) as d:
        kernel = d.connect()
        reader = kernel.spawn(TensorReader)
        yield kernel, reader


def test_empty_call(benchmark, bench):
    _, reader = bench
    benchmark.pedantic(reader.call, args=("ping",), rounds=500, warmup_rounds=20)


@pytest.mark.parametrize("mib", [1, 64, 256])
@pytest.mark.parametrize("pooled", [True, False], ids=["pool", "copied"])
def test_tensor_pass(benchmark, bench, mib, pooled):
    kernel, reader = bench
    n = mib * MIB // 4
    t = kernel.empty(n, torch.float32) if pooled else torch.empty(n, dtype=torch.float32)
    t.fill_(1.0)
    step = iter(range(10**9))

    def one() -> None:
        i = next(step)
        t[-1] = i
        assert reader.call("read_last", t) == i

    benchmark.pedantic(one, rounds=100 if mib == 1 else 20, warmup_rounds=2)


def test_put_256MiB(benchmark, bench):
    kernel, _ = bench
    arr = np.ones(256 * MIB // 8)
    refs: list = []

    def free_previous() -> None:  # outside the timed region: each put gets the pages back
        while refs:
            kernel.free(refs.pop())

    benchmark.pedantic(lambda: refs.append(kernel.put(arr)), setup=free_previous, rounds=10, warmup_rounds=1)
    free_previous()


def test_get_small(benchmark, bench):
    kernel, _ = bench
    ref = kernel.put(np.arange(1024, dtype=np.float32))
    benchmark.pedantic(kernel.get, args=(ref,), rounds=1000, warmup_rounds=20)
    kernel.free(ref)
