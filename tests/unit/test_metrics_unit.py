"""Metrics pieces without processes: settings, histograms, percentiles, sparklines, the label cap."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from llmos_actors._kernel.metrics_http import metrics_settings, parse_listen
from llmos_actors._kernel.peer_uid import loopback_host, loopback_peer_uid, proc_address
from llmos_actors._kernel.proctable import ActorRecord, ProcessTable
from llmos_actors._runtime.timings import BUCKETS, CallTimings, metrics_enabled
from llmos_actors.cli.spark import sparkline
from llmos_actors.cli.stats_cmd import percentile, window
from llmos_actors.errors import ConfigError


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "localhost:0", "[::1]:9464", "127.0.0.5:80"])
def test_loopback_addresses_are_accepted(listen: str) -> None:
    host, port = parse_listen(listen, allow_remote=False)
    assert port in (0, 80, 9464) and host in ("127.0.0.1", "localhost", "::1", "127.0.0.5")


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "192.168.1.4:9464", "[::]:9464", "10.0.0.1:1"])
def test_other_addresses_need_allow_remote(listen: str) -> None:
    with pytest.raises(ConfigError, match="allow_remote"):
        metrics_settings({"metrics": {"listen": listen}})
    assert metrics_settings({"metrics": {"listen": listen, "allow_remote": True}})["port"] > 0


@pytest.mark.parametrize(
    "section",
    [{"listen": "9464"}, {"listen": "example.com:80"}, {"listen": "127.0.0.1:99999"}, {"max_actors": 0},
     {"admin": "yes"}, {"colour": "blue"}, {"interval": 0}, {"timings": 1}],
)  # fmt: skip
def test_bad_metrics_settings_are_refused(section: dict) -> None:
    with pytest.raises(ConfigError):
        metrics_settings({"metrics": section})


def test_off_by_default_and_timings_follow_listen() -> None:
    assert metrics_settings({})["listen"] is None
    assert not metrics_enabled({})
    assert metrics_enabled({"metrics": {"listen": "127.0.0.1:0"}})
    assert metrics_enabled({"metrics": {"timings": True}})
    assert not metrics_enabled({"metrics": {"listen": "127.0.0.1:0", "timings": False}})


def test_histogram_snapshot_is_cumulative_with_the_right_count() -> None:
    t = CallTimings()
    for v in (0.000001, 0.00002, 0.003, 0.003, 42.0):
        t.run.observe(v)
    snap = t.snapshot()["run"]
    assert snap["le"] == list(BUCKETS) and snap["count"] == 5
    assert snap["counts"][0] == 1 and snap["counts"][BUCKETS.index(0.005)] == 4 and snap["counts"][-1] == 4
    assert snap["sum"] == pytest.approx(42.006021)


def test_percentiles_interpolate_within_a_bucket() -> None:
    snap = {"le": [0.001, 0.01, 0.1], "counts": [50, 90, 100], "sum": 1.0, "count": 100}
    assert percentile(snap, 0.5) == pytest.approx(0.001)
    assert percentile(snap, 0.7) == pytest.approx(0.001 + 0.009 * 0.5)
    assert percentile(snap, 0.99) == pytest.approx(0.01 + 0.09 * 0.9)
    assert percentile({"le": [1.0], "counts": [0], "count": 0, "sum": 0}, 0.5) is None
    later = {"le": [0.001, 0.01, 0.1], "counts": [50, 190, 200], "sum": 3.0, "count": 200}
    assert window(later, snap) == {"le": [0.001, 0.01, 0.1], "counts": [0, 100, 100], "count": 100, "sum": 2.0}


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 4], 6) == "  ▁▃▅█"
    assert sparkline([], 3) == "   "
    assert sparkline([0, 0], 2) == "▁▁"
    assert sparkline([50], 1, top=100) == "▅"


class _Daemon:
    """Only what ``KernelCollector.split`` reads: a real process table."""

    def __init__(self, table: ProcessTable) -> None:
        self.table = table


def test_the_label_cap_prefers_live_actors_and_counts_the_folded() -> None:
    pytest.importorskip("prometheus_client")
    from llmos_actors._kernel.metrics import KernelCollector

    table = ProcessTable(keep_exited=1000)
    for i in range(1000):
        record = ActorRecord(id=f"a{i:04d}", name=f"n{i}", cls="m:C", request={}, endpoint="")
        record.created = float(i)
        table.add(record)
        if i % 10:
            table.mark_exited(record)
        else:
            record.state = "running"
    collector = KernelCollector(_Daemon(table), max_actors=150)
    own, folded = collector.split()
    assert len(own) == 150 and len(folded) == 850
    assert all(r.live for r in own[:100]) and not any(r.live for r in folded)
    assert [r.created for r in own[100:103]] == [999.0, 998.0, 997.0]  # then the most recent exits
    assert collector.folded_total == 850
    collector.split()
    assert collector.folded_total == 850  # the same actors are not counted twice


def test_proc_addresses_are_written_as_the_kernel_writes_them() -> None:
    little = sys.byteorder == "little"
    assert proc_address("127.0.0.1", 9464) == ("0100007F:24F8" if little else "7F000001:24F8", False)
    v6, is_v6 = proc_address("::1", 80)
    assert is_v6 and v6 == ("00000000" * 3 + ("01000000" if little else "00000001") + ":0050")


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_uid_of_a_loopback_peer_comes_from_the_kernel(family: int, host: str) -> None:
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        server.listen(1)
        with socket.socket(family) as client:
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            with accepted:
                assert loopback_peer_uid(accepted.getpeername(), accepted.getsockname()) == os.geteuid()
                # Not the row of a connection that does not exist, nor of a peer off loopback.
                assert loopback_peer_uid((host, 1), accepted.getsockname()) is None
                assert loopback_peer_uid(("10.1.2.3", 40000), ("10.1.2.4", 9464)) is None
                assert loopback_peer_uid(None, accepted.getsockname()) is None


def test_a_closed_connection_row_gives_no_uid(tmp_path: Path) -> None:
    """TIME_WAIT rows belong to no one (uid 0): only established connections count."""
    peer, local = proc_address("127.0.0.1", 40000)[0], proc_address("127.0.0.1", 9464)[0]
    table = tmp_path / "tcp"
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = f"   0: {peer} {local} {{st}} 00000000:00000000 00:00000000 00000000  {{uid}}        0 123 1\n"
    table.write_text(header + row.format(st="06", uid=0))
    assert loopback_peer_uid(("127.0.0.1", 40000), ("127.0.0.1", 9464), (str(table), str(table))) is None
    table.write_text(header + row.format(st="01", uid=1234))
    assert loopback_peer_uid(("127.0.0.1", 40000), ("127.0.0.1", 9464), (str(table), str(table))) == 1234


@pytest.mark.parametrize(
    "host,ok",
    [("127.0.0.1:9464", True), ("localhost:9464", True), ("LOCALHOST", True), ("[::1]:9464", True),
     ("127.8.9.10", True), ("attacker.example:9464", False), ("10.0.0.1:9464", False), ("", False),
     (None, False), ("[::ffff:10.0.0.1]:80", False), ("localhost.attacker.example", False)],
)  # fmt: skip
def test_only_loopback_host_headers_may_carry_admin_actions(host: str | None, ok: bool) -> None:
    assert loopback_host(host) is ok
