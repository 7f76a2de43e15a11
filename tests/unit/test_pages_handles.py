"""Page handle geometry: extents of strided views and the checks a decoder applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmos_actors import ProtocolError
from llmos_actors._pages import handles
from llmos_actors._wire.codec import EXT_PAGES, Codec


def test_extent_of_strided_and_negative_views():
    assert handles.extent([4, 3], [12, 4], 4) == (0, 48)
    assert handles.extent([4], [-8], 8) == (-24, 8)
    assert handles.extent([0, 5], [20, 4], 4) == (0, 0)
    assert handles.extent([3], [0], 4) == (0, 4)  # broadcast: one element, three times


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(100.0).reshape(10, 10)[::-1, ::3],
        lambda: np.asfortranarray(np.ones((4, 5), np.int16)),
        lambda: torch.arange(60.0).view(3, 4, 5).permute(2, 0, 1)[1:],
        lambda: torch.ones(10).expand(4, 10),
    ],
)
def test_describe_matches_the_array(make):
    x = make()
    v = handles.describe(x)
    handles.check_view(v.kind, v.shape, v.strides, v.itemsize, v.first, v.span)
    if isinstance(x, np.ndarray):
        byte_bounds = getattr(np, "byte_bounds", None) or np.lib.array_utils.byte_bounds  # numpy 1 / 2
        low, high = byte_bounds(x)
        assert (v.low, v.span) == (low, high - low)
    else:
        assert v.low == x.data_ptr() and v.span <= x.untyped_storage().nbytes()


@pytest.mark.parametrize(
    "shape, strides, first, span, message",
    [
        ([10], [4], 0, 36, "reaches outside"),
        ([10], [-4], 0, 40, "strides"),  # torch: no negative strides
        ([2, 2], [4], 0, 16, "equal length"),
        ([3], [6], 0, 16, "multiples of the item size"),
        (["3"], [4], 0, 16, "ints"),
    ],
)
def test_check_view_refuses_views_outside_their_bytes(shape, strides, first, span, message):
    with pytest.raises(ProtocolError, match=message):
        handles.check_view("t", shape, strides, 4, first, span)


def test_plain_codec_refuses_page_handles_clearly():
    import msgpack

    body = msgpack.packb([msgpack.ExtType(EXT_PAGES, msgpack.packb([1, 2, 3]))])
    with pytest.raises(ProtocolError, match="no page pool attached"):
        Codec().unpack(body)
