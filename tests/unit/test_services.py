"""How actor events reach the daemon's services: every service hears them, in order; one failing does not
cost the others the event; the first service with an opinion decides a restart."""

from __future__ import annotations

import logging

import pytest

from llmos_actors._kernel.service import Service, Services


class Recorder(Service):
    def __init__(self, name: str, heard: list, *, restart: bool | None = None, broken: bool = False) -> None:
        self.name = name
        self.heard = heard
        self.restart = restart
        self.broken = broken

    def on_new_record(self, record):
        self.heard.append((self.name, "new", record))

    def decide_restart(self, record):
        self.heard.append((self.name, "decide", record))
        return self.restart

    def on_actor_notice(self, record, notice):
        self.heard.append((self.name, "notice", notice["event"]))

    def on_actor_exit(self, record):
        if self.broken:
            raise RuntimeError("a bug in one service")
        self.heard.append((self.name, "exit", record))

    def client_gone(self, ident):
        self.heard.append((self.name, "gone", ident))


def test_events_reach_every_service_in_order(caplog):
    heard: list = []
    services = Services()
    first = services.add(Recorder("first", heard, broken=True))
    services.add(Recorder("second", heard, restart=True))
    services.add(Recorder("third", heard, restart=False))
    assert list(services) == services.items and services.items[0] is first
    services.record_created("a1")
    assert services.decide_restart("a1") is True  # "second" decided; "third" was not asked
    services.actor_notice("a1", {"event": "exited"})
    with caplog.at_level(logging.ERROR):
        services.actor_exited("a1")
    services.client_gone(b"c")
    assert heard == [
        ("first", "new", "a1"),
        ("second", "new", "a1"),
        ("third", "new", "a1"),
        ("first", "decide", "a1"),
        ("second", "decide", "a1"),
        ("first", "notice", "exited"),
        ("second", "notice", "exited"),
        ("third", "notice", "exited"),
        ("second", "exit", "a1"),
        ("third", "exit", "a1"),
        ("first", "gone", b"c"),
        ("second", "gone", b"c"),
        ("third", "gone", b"c"),
    ]
    assert "first: exit hook failed" in caplog.text
    assert [s.name for s in reversed(services)] == ["third", "second", "first"]


def test_any_service_may_refuse_a_spawn():
    class Limit(Service):
        def check_spawn(self, request):
            if request.get("cpus", 0) > 2:
                raise ValueError("at most 2 cpus")
            request.setdefault("priority", 4)

    services = Services()
    services.add(Service())
    services.add(Limit())
    request = {"cpus": 1}
    services.check_spawn(request)
    assert request == {"cpus": 1, "priority": 4}
    with pytest.raises(ValueError, match="at most 2"):
        services.check_spawn({"cpus": 3})


def test_nobody_decides_means_no_restart():
    assert Services().decide_restart("a1") is False
    services = Services()
    services.add(Service())
    assert services.decide_restart("a1") is False
