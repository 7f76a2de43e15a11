"""``llmos ps``: the process table: every actor, where it runs and how it is doing."""

from __future__ import annotations

import argparse

from .common import human_bytes, kernel_for, print_json, table

HELP = "list actors (pid, core, priority, state, exit)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ps", help=HELP, description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--live", action="store_true", help="hide exited actors")
    p.set_defaults(func=run)


def _cpus(row: dict) -> str:
    cpus = row.get("cpus")
    return ",".join(map(str, cpus)) if cpus else "any"


def _note(row: dict) -> str:
    ex = row.get("exit") or {}
    if row["state"] == "exited" and ex:
        return ex.get("reason", "")
    notes = [f"pool {row['pool']}"] if row.get("pool") else []
    if row.get("sched"):
        notes.append(row["sched"])
    return "; ".join(notes)


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        rows = kernel.ps(exited=not args.live)
    if args.json:
        print_json(rows)
        return 0
    rows.sort(key=lambda r: (r["state"] == "exited", r["created"]))
    table(
        (
            (
                r["name"] or "-",
                r["id"],
                r["pid"],
                r["state"],
                _cpus(r),
                r.get("core"),
                r["priority"],
                r["nice"],
                f"{r['cpu_percent']:.0f}" if r.get("cpu_percent") is not None else None,
                human_bytes(r.get("rss")),
                (r.get("stats") or {}).get("done"),
                (r.get("stats") or {}).get("queued"),
                _note(r),
            )
            for r in rows
        ),
        ("NAME", "ID", "PID", "STATE", "CPUS", "CORE", "PRIO", "NICE", "CPU%", "RSS", "DONE", "QUEUED", "NOTE"),
    )
    return 0
