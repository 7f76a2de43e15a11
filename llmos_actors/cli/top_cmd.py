"""``llmos top``: a live view of the actors — where they run, how busy, how deep their mailboxes."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import deque

from .common import human_bytes, kernel_for, print_json, table
from .spark import sparkline

HELP = "live view of actors: pid, core, priority, CPU%%, RSS, queue per priority level, calls/s (with sparklines)"
#: Refreshes of history each sparkline shows.
SPARK_WIDTH = 16
CLEAR = "\x1b[H\x1b[2J"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top", help=HELP, description=HELP)
    p.add_argument("-n", "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit (after one interval, for rates)")
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    p.set_defaults(func=run)


def _levels(stats: dict) -> str:
    levels = stats.get("levels") or []
    return "/".join(str(n) for n in reversed(levels)) if any(levels) else "-"


def frame(
    rows: list[dict], rates: dict[str, float], status: dict, history: dict[str, dict[str, deque]] | None = None
) -> list[str]:
    """One screen; ``history`` (per actor id: recent ``calls`` and ``cpu`` values) adds the sparklines."""
    history = history or {}
    blank = {"calls": (), "cpu": ()}
    lines: list[str] = []
    sched = status.get("scheduler", {})
    topics = status.get("topics", {})
    lines.append(
        f"llmos top  {time.strftime('%H:%M:%S')}  actors {len(rows)}  "
        f"load {'high' if sched.get('loaded') else 'normal'}  "
        f"topics: {topics.get('delivered', 0)} delivered, {topics.get('dropped', 0)} dropped"
    )
    out: list[str] = []
    table(
        (
            (
                r["name"] or r["id"],
                r["pid"],
                r.get("core"),
                ",".join(map(str, r["cpus"])) if r.get("cpus") else "any",
                r["priority"],
                r["nice"],
                f"{r['cpu_percent']:.0f}" if r.get("cpu_percent") is not None else None,
                human_bytes(r.get("rss")),
                _levels(r.get("stats") or {}),
                (r.get("stats") or {}).get("active"),
                f"{rates.get(r['id'], 0.0):.0f}",
                sparkline(history.get(r["id"], blank)["calls"], SPARK_WIDTH),
                sparkline(history.get(r["id"], blank)["cpu"], SPARK_WIDTH, top=100.0),
                r.get("sched", ""),
            )
            for r in rows
        ),
        (
            "NAME",
            "PID",
            "CORE",
            "CPUS",
            "PRIO",
            "NICE",
            "CPU%",
            "RSS",
            "QUEUE 7/../0",
            "ACTIVE",
            "CALLS/S",
            "CALLS/S HISTORY",
            "CPU HISTORY",
            "SCHEDULER",
        ),
        out.append,
    )
    lines.extend(out)
    for decision in (sched.get("decisions") or [])[-3:]:
        lines.append(
            f"  {time.strftime('%H:%M:%S', time.localtime(decision['time']))} "
            f"{decision['action']} {decision['target']}: {decision['reason']}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        if args.json:
            print_json({"actors": kernel.ps(exited=False), "status": kernel.status()})
            return 0
        previous: dict[str, tuple[float, int]] = {}
        history: dict[str, dict[str, deque]] = {}
        while True:
            rows = kernel.ps(exited=False)
            now = time.monotonic()
            rates = {}
            for r in rows:
                done = (r.get("stats") or {}).get("done", 0) + (r.get("stats") or {}).get("failed", 0)
                if r["id"] in previous:
                    t0, d0 = previous[r["id"]]
                    rates[r["id"]] = max(0.0, (done - d0) / max(1e-6, now - t0))
                previous[r["id"]] = (now, done)
                h = history.setdefault(r["id"], {"calls": deque(maxlen=SPARK_WIDTH), "cpu": deque(maxlen=SPARK_WIDTH)})
                if r["id"] in rates:
                    h["calls"].append(rates[r["id"]])
                h["cpu"].append(r.get("cpu_percent") or 0.0)
            for gone in set(history) - {r["id"] for r in rows}:
                del history[gone]
            lines = frame(rows, rates, kernel.status(), history)
            width = shutil.get_terminal_size((160, 40)).columns
            text = "\n".join(line[:width] for line in lines)
            if args.once:
                if len(previous) and not rates and rows:
                    time.sleep(args.interval)  # a second sample, so calls/s means something
                    continue
                print(text)
                return 0
            sys.stdout.write(CLEAR + text + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)  # the refresh period of a live view
