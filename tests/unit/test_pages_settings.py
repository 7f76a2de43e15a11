"""The [pages] config section, pool sizing against /dev/shm, and the note ring."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from llmos_actors import ConfigError
from llmos_actors._pages.channel import FrameReader, frame
from llmos_actors._pages.ring import Ring
from llmos_actors._pages.settings import GIB, MIB, PagesSettings, parse_size, region_size, settings_from


def test_parse_size():
    assert parse_size("512MiB", "size") == 512 * MIB
    assert parse_size("2G", "size") == 2 * GIB
    assert parse_size(4096, "size") == 4096
    for bad in ("lots", True, "5 parsecs", -1.5):
        with pytest.raises(ConfigError):
            parse_size(bad, "size")


def test_settings_from_config_validates():
    s = settings_from({"pages": {"size": "1GiB", "page_size": "64KiB", "alloc_timeout": 2}}, Path("/state"))
    assert s.size == GIB and s.alloc_timeout == 2.0 and s.spill_dir == Path("/state/spill")
    with pytest.raises(ConfigError, match="unknown \\[pages\\] keys: colour"):
        settings_from({"pages": {"colour": "red"}}, Path("/s"))
    with pytest.raises(ConfigError, match="page_size"):
        settings_from({"pages": {"page_size": 3000}}, Path("/s"))
    with pytest.raises(ConfigError, match="too small"):
        settings_from({"pages": {"size": "1MiB"}}, Path("/s"))
    with pytest.raises(ConfigError, match="enabled"):
        settings_from({"pages": {"enabled": "yes"}}, Path("/s"))


def test_configured_pool_larger_than_dev_shm_is_refused_clearly():
    s = PagesSettings(size=8 * GIB).check()
    with pytest.raises(ConfigError, match=r"exceeds this host's shared memory: /dev/shm is 64\.0 MiB.*shm-size"):
        region_size(s, shm=lambda: 64 * MIB, available=lambda: 16 * GIB)


def test_automatic_size_and_small_dev_shm_note():
    size, note = region_size(PagesSettings(), shm=lambda: 24 * GIB, available=lambda: 20 * GIB)
    assert size == 5 * GIB and not note
    size, note = region_size(PagesSettings(), shm=lambda: 64 * MIB, available=lambda: 20 * GIB)
    assert size == 32 * MIB and "/dev/shm is 64.0 MiB" in note and "PoolExhausted" in note


def test_ring_wraps_and_refuses_when_full():  # the client then asks the daemon to drain it
    mm = mmap.mmap(-1, Ring.size(256))
    producer, consumer = Ring(mm), Ring(mm)
    reader = FrameReader()
    got = []
    for i in range(100):
        f = frame("release", i, 1, 1)
        assert producer.write(f)
        got += reader.feed(consumer.read())
    assert [m[1] for m in got] == list(range(100))
    while producer.write(frame("x" * 20)):
        pass
    assert not producer.write(frame("x" * 20))
    assert reader.feed(consumer.read()) and producer.write(frame("y"))
    producer.close()
    consumer.close()
