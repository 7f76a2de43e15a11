"""``llmos bench`` without a daemon: case selection, statistics, the runner's bookkeeping, output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_actors.bench import cases as cases_mod
from llmos_actors.bench.cases import CASES, Case, UnknownCase, select
from llmos_actors.bench.context import BenchContext
from llmos_actors.bench.peers import Peer
from llmos_actors.bench.progress import Progress
from llmos_actors.bench.ray_session import DRIVER
from llmos_actors.bench.report import build_doc, fmt, format_table
from llmos_actors.bench.runner import Runner, percentile
from llmos_actors.bench.workload import QUICK, Timing, Workload

#: Deterministic with self-timed rounds: one warm-up round, windows of 0.2 "seconds".
EXACT = Timing(warmup_s=0.0, window_s=0.2, repeats=3, samples=4, rounds=2)

RAY_NAMED = [
    "1_1_actor_calls_sync",
    "1_1_actor_calls_async",
    "1_1_actor_calls_concurrent",
    "1_n_actor_calls_async",
    "n_n_actor_calls_async",
    "single_client_put_gigabytes",
    "single_client_get_calls",
]
OURS_ONLY = [
    "tell_throughput",
    "pubsub_fanout_4",
    *(f"tensor_pass_{s}_{k}" for s in ("1MiB", "64MiB", "256MiB") for k in ("pool", "copied")),
    "spawn_latency_p50",
    "spawn_latency_p99",
    "priority_latency_p99_under_load",
    "restart_latency_p50",
    "pool_throughput_2",  # issue 6: a pool of 2 vs one actor
    "pool_grow_ms",  # issue 6: how fast a pool grows under a burst
    "mutex_cycles_2proc",  # issue 5: a kernel mutex vs multiprocessing.Lock
]


def test_every_case_of_the_issue_is_registered():
    assert set(RAY_NAMED + OURS_ONLY) <= set(CASES)
    for name in RAY_NAMED:
        assert CASES[name].ray, f"{name} should say what Ray's case of that name measures"


def test_select_by_name_and_pattern_in_registry_order():
    assert [c.name for c in select(["tell_throughput", "1_1_actor_calls_sync"])] == [
        "1_1_actor_calls_sync",
        "tell_throughput",
    ]
    assert {c.name for c in select(["tensor_pass_*_pool"])} == {
        "tensor_pass_1MiB_pool",
        "tensor_pass_64MiB_pool",
        "tensor_pass_256MiB_pool",
    }
    assert len(select([])) == len(CASES)


def test_unknown_case_names_the_known_ones():
    with pytest.raises(UnknownCase, match=r"no benchmark case 'nope'.*1_1_actor_calls_sync"):
        select(["1_1_actor_calls_sync", "nope"])


def test_percentile_matches_numpy_default():
    np = pytest.importorskip("numpy")
    xs = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0, 25, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_fmt_keeps_three_significant_figures_or_more():
    assert [fmt(v) for v in (123456.7, 123.4, 12.34, 1.234, 0.01234, None)] == [
        "123,457",
        "123",
        "12.3",
        "1.23",
        "0.0123",
        "-",
    ]


# ---------------------------------------------------------------------------- runner


class Fixed(Workload):
    """Each round "takes" ``secs`` (self-timed), so rates and ratios are exact."""

    def __init__(self, secs: float, log: list[str] | None = None, name: str = "", fail_after: int = -1) -> None:
        self.secs = secs
        self.ops = 10
        self.log = log if log is not None else []
        self.name = name
        self.rounds = 0
        self.fail_after = fail_after
        self.closed = False

    def round(self) -> float:
        if self.rounds == self.fail_after:
            raise RuntimeError("boom\nsecond line")
        self.rounds += 1
        self.log.append(self.name)
        return self.secs

    def close(self) -> None:
        self.closed = True


def _ctx(tmp_path: Path, timing: Timing = EXACT) -> BenchContext:
    return BenchContext(kernel=None, config=None, timing=timing, workdir=tmp_path)  # type: ignore[arg-type]


def test_runner_interleaves_contestants_and_computes_advantage(tmp_path: Path):
    log: list[str] = []
    opened: list[Fixed] = []

    def opener(secs: float, name: str):
        def open_(ctx, **params):
            w = Fixed(secs, log, name)
            opened.append(w)
            return w

        return open_

    peers = {
        "slow": Peer("slow", "slow peer", opener(0.2, "slow")),
        "fast": Peer("fast", "fast peer", opener(0.05, "fast")),
        "gone": Peer("gone", "missing peer", opener(1, "gone"), requires=lambda ctx: "not installed here"),
    }
    case = Case("c", "ops/s", "test", opener(0.1, "ours"), peers=("slow", "fast", "gone"))
    [result] = Runner(_ctx(tmp_path), [case], with_peers=True, peers=peers).run()
    assert result.ours.stat is not None
    assert result.ours.stat.value == pytest.approx(100.0)  # 10 ops / 0.1 s
    by_who = {p.who: p for p in result.peers}
    assert by_who["slow peer"].ratio == pytest.approx(2.0)
    assert by_who["fast peer"].ratio == pytest.approx(0.5)
    assert by_who["missing peer"].status == "skipped"
    assert by_who["missing peer"].reason == "not installed here"
    # One warm-up round each, then they take turns, one window each: 2, 1 and 4 rounds of 0.2 s.
    assert log == ["ours", "slow", "fast"] + (["ours"] * 2 + ["slow"] + ["fast"] * 4) * EXACT.repeats
    assert all(w.closed for w in opened)


def test_runner_records_failures_and_skips_without_stopping(tmp_path: Path):
    def broken(ctx, **params):
        raise OSError("cannot start")

    cases = [
        Case("fails", "ops/s", "t", lambda ctx: Fixed(0.1, fail_after=2)),
        Case("cannot_open", "ops/s", "t", broken),
        Case("not_here", "ops/s", "t", broken, requires=lambda ctx: "needs feature X"),
        Case("fine", "ops/s", "t", lambda ctx: Fixed(0.1)),
    ]
    out = {r.case.name: r.ours for r in Runner(_ctx(tmp_path), cases, with_peers=False).run()}
    assert out["fails"].status == "error" and out["fails"].reason == "RuntimeError: boom"
    assert out["cannot_open"].status == "error" and "cannot start" in out["cannot_open"].reason
    assert out["not_here"].status == "skipped" and out["not_here"].reason == "needs feature X"
    assert out["fine"].status == "ok"


def test_latency_cases_share_one_series(tmp_path: Path):
    opened = []

    def open_(ctx, **params):
        opened.append(1)
        return Fixed(0.002)

    p50 = Case("x_p50", "ms", "t", open_, kind="latency", stat="p50", measure="x")
    p99 = Case("x_p99", "ms", "t", open_, kind="latency", stat="p99", measure="x")
    r50, r99 = Runner(_ctx(tmp_path), [p50, p99], with_peers=False).run()
    assert len(opened) == 1
    assert r50.ours.stat is not None and r99.ours.stat is not None
    assert r50.ours.stat.value == pytest.approx(0.2)  # ms per op: 2 ms per round of 10 ops
    assert r50.ours.stat.n == EXACT.samples


def test_one_at_a_time_cases_alternate_in_blocks(tmp_path: Path):
    log: list[str] = []
    opened: list[Fixed] = []

    def opener(name: str):
        def open_(ctx, **params):
            w = Fixed(0.002, log, name)
            opened.append(w)
            return w

        return open_

    peers = {"other": Peer("other", "other", opener("peer"))}
    case = Case("x", "ms", "t", opener("ours"), kind="latency", peers=("other",), interleave=False)
    timing = Timing(warmup_s=0.0, window_s=0.2, repeats=3, samples=4, rounds=2, blocks=2)
    [result] = Runner(_ctx(tmp_path, timing), [case], with_peers=True, peers=peers).run()
    # Each block opens one contestant, warms it up (one round), takes half its samples, closes it.
    assert log == (["ours"] * 3 + ["peer"] * 3) * 2
    assert len(opened) == 4 and all(w.closed for w in opened)
    assert result.ours.stat is not None and result.ours.stat.n == 4
    assert result.peers[0].stat is not None and result.peers[0].stat.n == 4


def test_quick_leaves_out_slow_cases_unless_named(tmp_path: Path):
    slow = Case("slow", "ops/s", "t", lambda ctx: Fixed(0.1), quick=False)
    [r] = Runner(_ctx(tmp_path, QUICK), [slow], with_peers=False).run()
    assert r.ours.status == "skipped" and "--quick" in r.ours.reason
    ctx = _ctx(tmp_path, QUICK)
    ctx.named = True
    [r] = Runner(ctx, [slow], with_peers=False).run()
    assert r.ours.status == "ok"


# ---------------------------------------------------------------------------- output


def _doc(tmp_path: Path) -> dict:
    peers = {"p": Peer("p", "a peer", lambda ctx: Fixed(0.2))}
    cases = [
        Case("rate_case", "calls/s", "t", lambda ctx: Fixed(0.1), peers=("p",), ray="Ray's meaning"),
        Case("later", "ms", "t", lambda ctx: Fixed(0.1), requires=lambda ctx: "needs issue 99"),
    ]
    results = Runner(_ctx(tmp_path), cases, with_peers=True, peers=peers).run()
    return build_doc(results, timing=EXACT, quick=False, elapsed_s=1.0, peers=True, daemon="own")


def test_json_document_has_machine_date_and_every_sample(tmp_path: Path):
    doc = json.loads(json.dumps(_doc(tmp_path)))
    assert doc["machine"]["nproc"] and doc["date"].endswith("Z")
    first, later = doc["cases"]
    assert first["ray_meaning"] == "Ray's meaning"
    assert first["llmos"]["status"] == "ok" and len(first["llmos"]["samples"]) == EXACT.repeats
    assert first["peers"][0]["llmos_advantage"] == pytest.approx(2.0)
    assert later["llmos"] == {"who": "llmos", "status": "skipped", "reason": "needs issue 99"}


def test_table_shows_values_ratios_and_reasons(tmp_path: Path):
    text = format_table(_doc(tmp_path))
    lines = text.splitlines()
    assert any(line.startswith("rate_case") and "100" in line for line in lines)
    assert any("a peer" in line and line.rstrip().endswith("2.00") for line in lines)
    assert any(line.startswith("later") and "skipped: needs issue 99" in line for line in lines)


def test_markdown_has_one_row_per_case_with_the_run_it_comes_from(tmp_path: Path):
    from llmos_actors.bench.report import format_markdown

    text = format_markdown(_doc(tmp_path))
    assert text.startswith("Measured ") and "cores" in text.splitlines()[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `rate_case` | calls/s | **100**") and "a peer 50.0 (2.00x)" in rows[0]
    assert "skipped: needs issue 99" in rows[1]


def test_plot_writes_a_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    from llmos_actors.bench.plot import write_plot

    out = write_plot(_doc(tmp_path), tmp_path / "bench.png")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_progress_writes_one_line_per_step_when_not_a_terminal():
    stream = io.StringIO()
    p = Progress(stream)
    p.update(0, 2, "a")
    p.update(1, 2, "b")
    p.update(2, 2, "done")
    p.close()
    assert [line.split("]")[0] for line in stream.getvalue().splitlines()] == [
        "llmos bench: [1/2",
        "llmos bench: [2/2",
    ]


def test_ray_driver_reports_a_missing_ray_in_one_line():
    """The driver runs under any interpreter; without Ray it says so instead of crashing."""
    code = (
        "import runpy, sys; sys.modules['ray'] = None; "
        f"sys.argv = ['ray_driver', '--payload-hex', '80']; runpy.run_path({str(DRIVER)!r}, run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["ok"] is False and "ray is not installed" in reply["error"]


def test_n_actors_follows_ray_but_at_least_two():
    assert cases_mod.N_ACTORS >= 2
