"""The daemon's /metrics listener, scraped and parsed with prometheus_client after known workloads."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("aiohttp")

from prometheus_client.parser import text_string_to_metric_families

import llmos_actors as llmos
from llmos_actors.testing import DaemonHandle, start_daemon, wait_for
from tests.actors import Counter, SlowStop
from tests.metrics_actors import Reporter

METRICS = {"listen": "127.0.0.1:0"}


@pytest.fixture(scope="module")
def served_daemon() -> Iterator[DaemonHandle]:
    """One daemon serving metrics for the tests that only read (each uses its own actor names)."""
    with start_daemon(metrics=METRICS) as d:
        yield d


@pytest.fixture
def served(served_daemon: DaemonHandle) -> Iterator[tuple[llmos.Kernel, str]]:
    with served_daemon.connect() as kernel:
        yield kernel, kernel.status()["metrics"]["url"]


def scrape(url: str) -> dict[str, list]:
    """Samples by name: ``{sample name: [(labels, value), ...]}``."""
    text = urllib.request.urlopen(url + "metrics", timeout=10).read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("llmos_"), family.name
        assert family.documentation, f"{family.name} has no HELP text"
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: dict, metric: str, /, **labels: str) -> float | None:
    for got, v in samples.get(metric, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def scrape_until(url: str, metric: str, expected: float, **labels: str) -> dict:
    """Scrape until ``metric{labels}`` reads ``expected`` (heartbeats bring counts once a second)."""
    found: list[dict] = []

    def ready() -> bool:
        found[:] = [scrape(url)]
        return value(found[0], metric, **labels) == expected

    wait_for(ready, timeout=15, interval=0.1, what=f"{metric}{labels} == {expected}")
    return found[0]


def test_counters_and_histograms_match_a_known_workload(served: tuple[llmos.Kernel, str]) -> None:
    kernel, url = served
    c = kernel.spawn(Counter, name="counted")
    for _ in range(40):
        c.call("incr")
    for _ in range(7):
        with pytest.raises(llmos.MethodNotFound):
            c.call("no_such_method")
    s = scrape_until(url, "llmos_actor_calls_total", 47, name="counted")
    assert value(s, "llmos_actor_outcomes_total", name="counted", outcome="ok") == 40
    assert value(s, "llmos_actor_outcomes_total", name="counted", outcome="error") == 7
    assert value(s, "llmos_actor_outcomes_total", name="counted", outcome="expired") == 0
    # Every request waited in the mailbox; only the 40 that found a method ran.
    assert value(s, "llmos_actor_queue_wait_seconds_count", name="counted") == 47
    assert value(s, "llmos_actor_run_seconds_count", name="counted") == 40
    assert value(s, "llmos_actor_run_seconds_bucket", name="counted", le="+Inf") == 40
    buckets = [v for labels, v in s["llmos_actor_run_seconds_bucket"] if labels["name"] == "counted"]
    assert buckets == sorted(buckets), "buckets are cumulative"
    assert 0 < value(s, "llmos_actor_run_seconds_sum", name="counted") < 40 * 1.0
    assert value(s, "llmos_actor_up", name="counted") == 1
    # A method that spins 0.15 s: its run lands in the right bucket, its CPU time is seen.
    spinner = kernel.spawn(SlowStop, name="spinner")
    spinner.call("busy", 0.15)
    s = scrape_until(url, "llmos_actor_run_seconds_count", 1, name="spinner")
    assert value(s, "llmos_actor_run_seconds_bucket", name="spinner", le="0.1") == 0
    assert value(s, "llmos_actor_run_seconds_bucket", name="spinner", le="0.25") == 1
    assert 0.15 <= value(s, "llmos_actor_run_seconds_sum", name="spinner") < 0.25
    assert value(s, "llmos_actor_cpu_seconds_total", name="spinner") >= 0.02  # a shared machine gives less than wall
    assert value(s, "llmos_actors", state="running") >= 2
    assert value(s, "llmos_actor_rss_bytes", name="counted") > 1_000_000
    assert value(s, "llmos_daemon_rss_bytes") > 0
    assert value(s, "llmos_daemon_open_fds") > 0
    assert value(s, "llmos_daemon_loop_lag_seconds") is not None
    assert value(s, "llmos_topic_published_total") is not None
    assert value(s, "llmos_metrics_folded_actors") == 0
    # A kill is counted as the actor's exit; its counters stay until the table forgets it.
    kernel.kill(c)
    kernel.kill(spinner)
    s = scrape(url)
    assert value(s, "llmos_actor_up", name="counted") == 0
    assert value(s, "llmos_actor_calls_total", name="counted") == 47


def test_on_metrics_becomes_llm_metrics(served: tuple[llmos.Kernel, str]) -> None:
    kernel, url = served
    llm = kernel.spawn(Reporter, name="llm")
    llm.call("generate", 12)
    s = scrape_until(url, "llmos_llm_tokens_total", 12, name="llm")
    assert value(s, "llmos_llm_batch_size", name="llm") == 3
    assert value(s, "llmos_llm_kv_blocks_used", name="llm") == 5
    assert value(s, "llmos_llm_ttft_seconds_bucket", name="llm", le="0.1") == 2
    assert value(s, "llmos_llm_ttft_seconds_count", name="llm") == 2
    assert value(s, "llmos_custom_queue_len", name="llm") == 2
    assert not any("Bad" in name for name in s)
    with pytest.raises(llmos.MethodNotFound):
        llm.call("on_metrics")  # a hook, not a remote method
    kernel.kill(llm)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_labels_stay_bounded_with_a_thousand_short_lived_actors() -> None:
    cap, kept = 40, 150
    with start_daemon(metrics={**METRICS, "max_actors": cap}, keep_exited=kept) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        folded_seen = 0.0
        for i in range(1000):
            ref = kernel.spawn(Counter, name=f"short{i}")
            ref.call("incr")
            kernel.kill(ref)
            if i % 250 == 0:  # scrapes while the table churns: the cap holds at every one
                s = scrape(url)
                assert len({labels["name"] for labels, _ in s["llmos_actor_calls_total"]}) <= cap + 1
                folded_seen = value(s, "llmos_metrics_folded_actors_total") or 0.0
        s = scrape(url)
        names = {labels["name"] for labels, _ in s["llmos_actor_calls_total"]}
        assert len(names) == cap + 1 and "_overflow" in names
        # The table keeps ``kept`` exited actors; all but ``cap`` are summed under _overflow,
        # and their calls with them (each made one call: its last heartbeat says so).
        assert value(s, "llmos_metrics_folded_actors") == kept - cap
        assert value(s, "llmos_actor_calls_total", name="_overflow") == kept - cap
        assert sum(v for _, v in s["llmos_actor_calls_total"]) == kept
        assert value(s, "llmos_metrics_folded_actors_total") >= max(folded_seen, kept - cap)
        assert value(s, "llmos_metrics_actor_cap") == cap


def test_sync_waits_are_seen_while_they_last(served_daemon: DaemonHandle, served: tuple[llmos.Kernel, str]) -> None:
    kernel, url = served
    lock = kernel.mutex("metrics-m")
    assert lock.acquire()
    with served_daemon.connect() as other, ThreadPoolExecutor(1) as pool:
        theirs = other.mutex("metrics-m")
        waiting = pool.submit(theirs.acquire, True, 30.0)
        s = scrape_until(url, "llmos_sync_waiters", 1, kind="mutex")
        first = value(s, "llmos_sync_wait_seconds", kind="mutex")
        # Its wait grows while it lasts (scraped again once the daemon's clock has moved on).
        wait_for(lambda: value(scrape(url), "llmos_sync_longest_wait_seconds") > first, what="a longer wait")
        lock.release()
        assert waiting.result(timeout=10) is True
        pool.submit(theirs.release).result(timeout=10)  # the holder is that thread
    s = scrape(url)
    assert value(s, "llmos_sync_waiters", kind="mutex") == 0
    assert value(s, "llmos_sync_granted_total", kind="mutex") >= 2


def _request(url: str, method: str, path: str, headers: dict | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def test_listener_serves_nothing_but_get(served: tuple[llmos.Kernel, str]) -> None:
    kernel, url = served
    kernel.spawn(Counter, name="target")
    for path in ("/metrics", "/", "/api/state", "/static/app.js"):
        assert _request(url, "GET", path)[0] == 200
        assert _request(url, "HEAD", path)[0] == 200
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            status, headers = _request(url, method, path)
            assert status == 405, (method, path)
            assert headers.get("Allow") == "GET, HEAD"
    # Without the admin role the dashboard's actions are refused like any other write.
    assert _request(url, "POST", "/api/actors/target/kill", {"X-Llmos-Action": "1"})[0] == 405
    assert _request(url, "GET", "/static/../metrics_app.py")[0] == 404
    assert kernel.lookup("target").call("get") == 0  # still alive
    kernel.kill("target")


def test_admin_actions_need_the_role_and_the_header() -> None:
    with start_daemon(metrics={**METRICS, "admin": True}) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        kernel.spawn(Counter, name="victim")
        assert _request(url, "POST", "/api/actors/victim/kill")[0] == 403  # a cross-site form cannot add it
        assert _request(url, "POST", "/api/actors/victim/explode", {"X-Llmos-Action": "1"})[0] == 404
        assert _request(url, "POST", "/api/actors/victim/kill", {"X-Llmos-Action": "1"})[0] == 200
        wait_for(lambda: not any(r["name"] == "victim" and r["state"] != "exited" for r in kernel.ps()), what="killed")
        assert _request(url, "PUT", "/metrics")[0] == 405


def test_listener_is_off_by_default() -> None:
    with start_daemon() as d, d.connect() as kernel:
        assert "metrics" not in kernel.status()


def test_non_loopback_listen_fails_the_daemon_start() -> None:
    with pytest.raises(llmos.LlmosError, match="allow_remote"), start_daemon(metrics={"listen": "0.0.0.0:0"}):
        pass


def test_unreachable_port_means_refused() -> None:
    with start_daemon(metrics=METRICS) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "metrics", timeout=5)
