"""``llmos stats NAME``: an actor's latency percentiles (queue wait and run time), once or live.

The numbers come from the histograms the actor sends with its heartbeat, which it
records while the daemon serves metrics (``[metrics] listen``) or with
``[metrics] timings = true``. ``--watch`` shows each interval's percentiles.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque

from .common import Exit, err, kernel_for, print_json, table
from .spark import sparkline

HELP = "an actor's latency percentiles (queue wait, run time); --watch for a live view"
CLEAR = "\x1b[H\x1b[2J"
QUANTILES = (0.5, 0.9, 0.99)
KINDS = (("run", "run"), ("queue wait", "queue_wait"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help=HELP, description=HELP)
    p.add_argument("name", help="the actor's name or id")
    p.add_argument("--watch", action="store_true", help="refresh every interval with that interval's percentiles")
    p.add_argument("-n", "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--json", action="store_true", help="print the percentiles since start as JSON and exit")
    p.set_defaults(func=run)


def percentile(snap: dict, q: float) -> float | None:
    """The ``q`` quantile of a histogram snapshot (cumulative counts), interpolated within its bucket."""
    counts, bounds, total = snap.get("counts") or [], snap.get("le") or [], snap.get("count") or 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0
    for bound, cum in zip(bounds, counts, strict=False):
        if cum >= rank:
            inside = cum - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cum
    return bounds[-1] if bounds else None  # in the +Inf bucket: at least the last bound


def window(now: dict, before: dict | None) -> dict:
    """The histogram of what happened between two snapshots."""
    if not before or before.get("le") != now.get("le"):
        return now
    return {
        "le": now["le"],
        "counts": [a - b for a, b in zip(now["counts"], before["counts"], strict=True)],
        "count": now["count"] - before["count"],
        "sum": now["sum"] - before["sum"],
    }


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def summary(timings: dict, before: dict | None = None) -> dict:
    out = {}
    for label, key in KINDS:
        snap = window(timings[key], (before or {}).get(key))
        out[label] = {
            "count": snap["count"],
            "mean": snap["sum"] / snap["count"] if snap["count"] else None,
            **{f"p{round(q * 100)}": percentile(snap, q) for q in QUANTILES},
        }
    return out


def _find(kernel: object, name: str) -> dict | None:
    for row in kernel.ps(exited=True):  # type: ignore[attr-defined]
        if name in (row["name"], row["id"]):
            return row
    return None


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        row = _find(kernel, args.name)
        if row is None:
            err(f"no actor named {args.name!r}")
            return Exit.NOT_FOUND
        timings = (row.get("stats") or {}).get("timings")
        if not timings:
            err(
                f"{args.name}: no latency histograms yet: actors record them while the daemon serves metrics "
                '([metrics] listen = "127.0.0.1:9464") or with [metrics] timings = true (first report after 1 s)'
            )
            return Exit.ERROR
        if args.json or not args.watch:
            result = summary(timings)
            if args.json:
                print_json({"actor": row["name"] or row["id"], **result})
            else:
                print("\n".join(_lines(row, result, "since start", None)))
            return Exit.OK
        before, p99s = timings, deque[float](maxlen=30)
        while True:
            time.sleep(args.interval)  # the refresh period of a live view
            row = _find(kernel, args.name) or row
            now = (row.get("stats") or {}).get("timings") or before
            result = summary(now, before)
            p99s.append(result["run"]["p99"] or 0.0)
            before = now
            sys.stdout.write(CLEAR + "\n".join(_lines(row, result, f"last {args.interval:g} s", p99s)) + "\n")
            sys.stdout.flush()


def _lines(row: dict, result: dict, span: str, p99s: deque | None) -> list[str]:
    lines = [f"llmos stats {row['name'] or row['id']}  {time.strftime('%H:%M:%S')}  {row['state']}  ({span})"]
    rows = [
        (label, r["count"], human_seconds(r["mean"]), *(human_seconds(r[f"p{round(q * 100)}"]) for q in QUANTILES))
        for label, r in result.items()
    ]
    table(rows, ("", "COUNT", "MEAN", "P50", "P90", "P99"), lines.append)
    if p99s is not None:
        lines.append(f"run p99 history  {sparkline(p99s, 30)}  (max {human_seconds(max(p99s) if p99s else None)})")
    return lines
