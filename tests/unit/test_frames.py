"""Receiving multipart messages: small parts copied, buffers left in zmq's memory."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from llmos_actors._rpc.frames import recv_message


@pytest.fixture
def pair():
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://frames")
    b.connect("inproc://frames")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def test_parts_after_the_copied_ones_arrive_as_writable_frames(pair):
    a, b = pair
    big = np.arange(1 << 16, dtype=np.float32)
    a.send_multipart([b"head", b"body", big], copy=False)
    parts = recv_message(b, 0, 2)
    assert parts[:2] == [b"head", b"body"]
    assert isinstance(parts[2], zmq.Frame)
    view = parts[2].buffer
    assert not view.readonly
    assert (np.frombuffer(view, dtype=np.float32) == big).all()


def test_nothing_to_read_raises_again(pair):
    _, b = pair
    with pytest.raises(zmq.Again):
        recv_message(b, zmq.NOBLOCK, 2)
