"""Inventory and placement decisions, without processes."""

from __future__ import annotations

import pytest

from llmos_actors._kernel.resources import Inventory, nice_for
from llmos_actors.errors import ResourceUnavailable


def inventory(cores=(0, 1, 2, 3), gpus=()):
    inv = Inventory(cores=list(cores), gpus=list(gpus))
    inv._gpu_ready.set()
    return inv


def test_nice_mapping():
    assert [nice_for(p) for p in range(8)] == [12, 9, 6, 3, 0, -3, -6, -9]
    assert nice_for(None) == 0


def test_explicit_auto_and_count():
    inv = inventory()
    assert inv.place("a", [2], None).cpus == [2]
    assert inv.place("b", "auto", None).cpus != [2]
    picked = inv.place("c", 2, None).cpus
    assert len(picked) == 2 and 2 not in picked
    assert inv.place("d", None, None).cpus is None


def test_exclusive_reservations():
    inv = inventory(cores=(0, 1))
    inv.place("a", [0], None, exclusive=True)
    with pytest.raises(ResourceUnavailable, match="reserved exclusively by actor a"):
        inv.place("b", [0], None)
    assert inv.place("c", "auto", None).cpus == [1]
    with pytest.raises(ResourceUnavailable, match="cannot reserve"):
        inv.place("d", [1], None, exclusive=True)
    with pytest.raises(ResourceUnavailable, match="only 1 of 2"):
        inv.place("e", 2, None)
    inv.release("a")
    assert inv.place("f", [0], None, exclusive=True).cpus == [0]


def test_gpus():
    inv = inventory(gpus=(0, 1))
    assert inv.place("a", None, [1]).gpus == [1]
    assert inv.child_env(inv.placements["a"]) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert inv.place("b", None, "auto").gpus == [0]  # least used
    assert inv.child_env(inv.place("c", None, None)) == {"CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(ResourceUnavailable, match="GPU"):
        inv.place("d", None, [5])
    none = inventory()
    with pytest.raises(ResourceUnavailable, match="no GPUs found"):
        none.place("e", None, "auto")
    assert none.child_env(none.place("f", None, None)) == {}


def test_unknown_core():
    with pytest.raises(ResourceUnavailable, match="may use cores 0,1,2,3"):
        inventory().place("a", [9], None)
