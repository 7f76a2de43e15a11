"""``llmos ps``: the process table: every actor, where it runs and how it is doing.

``--tree`` shows the supervision tree: supervisors (strategy, limits, restarts,
state) with their children in start order, then the standalone actors.
"""

from __future__ import annotations

import argparse

from .common import human_bytes, kernel_for, print_json, table
from .llm_devices import device_stats, print_devices

HELP = "list actors (pid, core, priority, state, exit)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ps", help=HELP, description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--live", action="store_true", help="hide exited actors")
    p.add_argument("--tree", action="store_true", help="show the supervision tree")
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


def _stat(row: dict, key: str) -> int | None:
    return (row.get("stats") or {}).get(key) if row["state"] != "exited" else None


def build_tree(rows: list[dict], supervisors: list[dict]) -> list[dict]:
    """Supervisors as nested dicts (``children``: supervisors and actor rows, in start order), then standalone rows."""
    by_id = {r["id"]: r for r in rows}
    nodes = {s["id"]: dict(s, kind="supervisor") for s in supervisors}

    def expand(node: dict) -> dict:
        children = []
        for child in node["children"]:
            if child in nodes:
                children.append(expand(nodes[child]))
            elif child in by_id:
                children.append(dict(by_id[child], kind="actor"))
        return dict(node, children=children)

    roots = [expand(n) for n in nodes.values() if not n.get("parent")]
    supervised = {c for n in supervisors for c in n["children"]}
    standalone = [dict(r, kind="actor") for r in rows if r["id"] not in supervised]
    return roots + standalone


def tree_lines(items: list[dict]) -> list[tuple]:
    """One table row per supervisor or actor, the first column drawn as a tree."""
    out: list[tuple] = []
    for item in items:
        _walk(item, "", "", out)
    return out


def _walk(item: dict, head: str, tail: str, out: list[tuple]) -> None:
    if item["kind"] == "supervisor":
        policy = f"{item['strategy']}, {item['intensity']} in {item['period']:g}s"
        if item.get("reason"):
            policy += f"; {item['reason']}"
        label = f"[{item['name'] or item['id']}]"
        out.append((head + label, item["id"], "-", item["state"], item["restarts"], "-", "-", policy))
    else:
        policy = "; ".join(x for x in (item.get("restart", ""), _note(item)) if x)
        active, queued = _stat(item, "active"), _stat(item, "queued")
        out.append(
            (
                head + (item["name"] or "-"),
                item["id"],
                item["pid"],
                item["state"],
                item["restarts"],
                active,
                queued,
                policy,
            )
        )
    kids = item.get("children") or []
    for j, kid in enumerate(kids):
        last = j == len(kids) - 1
        _walk(kid, tail + ("└─ " if last else "├─ "), tail + ("   " if last else "│  "), out)


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        rows = kernel.ps(exited=not args.live)
        supervisors = kernel.supervisors() if args.tree else []
        devices = device_stats(kernel, rows)
    for row in rows:  # LLM devices: tokens/s, batch, KV use
        if row["id"] in devices:
            row["device"] = devices[row["id"]]
    if args.tree:
        tree = build_tree(rows, supervisors)
        if args.json:
            print_json(tree)
        else:
            table(tree_lines(tree), ("TREE", "ID", "PID", "STATE", "RST", "ACT", "QUE", "POLICY / EXIT"))
        return 0
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
                _stat(r, "active"),
                _stat(r, "queued"),
                r.get("restarts") or 0,
                _note(r),
            )
            for r in rows
        ),
        (
            "NAME",
            "ID",
            "PID",
            "STATE",
            "CPUS",
            "CORE",
            "PRIO",
            "NICE",
            "CPU%",
            "RSS",
            "DONE",
            "ACT",
            "QUE",
            "RST",
            "NOTE",
        ),
    )
    print_devices(rows, devices)
    return 0
