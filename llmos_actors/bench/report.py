"""Results as a JSON document (with the machine and the date) and as a table.

The table is printed from the document, so ``--json`` and the screen can never
disagree. Every number in it was measured in the run the document describes.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from importlib import metadata
from typing import Any

from .. import __version__
from .payload import PAYLOAD_BYTES
from .runner import CaseResult, Result
from .workload import Timing

SCHEMA = 1


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """Where the numbers come from: cores, CPU, memory, OS, interpreter, library versions."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_gib: float | None = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "mem_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for pkg in ("pyzmq", "msgpack", "numpy", "uvloop", "torch"):
        facts[pkg] = _version(pkg)
    try:
        import zmq

        facts["libzmq"] = zmq.zmq_version()
    except ImportError:  # pragma: no cover - a dependency
        pass
    return facts


def _result_doc(r: Result) -> dict[str, Any]:
    doc: dict[str, Any] = {"who": r.who, "status": r.status}
    if r.peer:
        doc["peer"] = r.peer
    if r.reason:
        doc["reason"] = r.reason
    if r.note:
        doc["note"] = r.note
    if r.stat is not None:
        doc.update(dataclasses.asdict(r.stat))
    if r.ratio is not None:
        doc["llmos_advantage"] = r.ratio
    return doc


def build_doc(
    results: list[CaseResult],
    *,
    timing: Timing,
    quick: bool,
    elapsed_s: float,
    peers: bool,
    daemon: str,
    ray_version: str = "",
    load: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The JSON document of one run.

    ``load``: the 1-minute load average before and after the run; on a shared
    machine it says how much else was running.
    """
    return {
        "schema": SCHEMA,
        "tool": "llmos bench",
        "llmos_actors": __version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "settings": {
            "quick": quick,
            "timing": dataclasses.asdict(timing),
            "peers": peers,
            "daemon": daemon,
            "payload_bytes": PAYLOAD_BYTES,
            "ray": ray_version or None,
        },
        "elapsed_s": round(elapsed_s, 1),
        "load_average": None if load is None else {"start": round(load[0], 2), "end": round(load[1], 2)},
        "cases": [
            {
                "name": cr.case.name,
                "unit": cr.case.unit,
                "stat": cr.case.stat,
                "higher_is_better": cr.case.higher_is_better,
                "what": cr.case.what,
                **({"ray_meaning": cr.case.ray} if cr.case.ray else {}),
                "llmos": _result_doc(cr.ours),
                "peers": [_result_doc(p) for p in cr.peers],
            }
            for cr in results
        ],
    }


# ---------------------------------------------------------------------------- table


def fmt(v: float | None) -> str:
    """A number with sensible precision: 12,345 · 123 · 12.3 · 1.23 · 0.0123."""
    if v is None:
        return "-"
    if v == 0 or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(x: float) -> str:
    """An advantage: two decimals, or two significant digits when that would print 0.00."""
    return f"{x:.2f}" if x >= 0.01 else f"{x:.2g}"


HEADERS = ("CASE", "WHO", "VALUE", "UNIT", "MEDIAN", "MIN-MAX", "N", "LLMOS x")


def table_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for case in doc["cases"]:
        name = case["name"]
        for i, r in enumerate([case["llmos"], *case["peers"]]):
            label = name if i == 0 else ""
            if r["status"] != "ok":
                rows.append((label, r["who"], f"{r['status']}: {r.get('reason', '')}", "", "", "", "", ""))
                continue
            adv = r.get("llmos_advantage")
            rows.append(
                (
                    label,
                    r["who"],
                    fmt(r["value"]),
                    case["unit"],
                    fmt(r["median"]),
                    f"{fmt(r['min'])}-{fmt(r['max'])}",
                    str(r["n"]),
                    "" if adv is None else fmt_ratio(adv),
                )
            )
    return rows


def format_table(doc: dict[str, Any]) -> str:
    """The results as aligned text, with a header line (date, machine) and a legend."""
    rows = table_rows(doc)
    widths = [len(h) for h in HEADERS]
    for row in rows:
        for i, cell in enumerate(row):
            if not cell.startswith(("skipped:", "error:")):
                widths[i] = max(widths[i], len(cell))
    numeric = {2, 4, 5, 6, 7}

    def line(cells: tuple[str, ...]) -> str:
        if cells[2].startswith(("skipped:", "error:")):
            return f"{cells[0].ljust(widths[0])}  {cells[1].ljust(widths[1])}  {cells[2]}".rstrip()
        out = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    m = doc["machine"]
    s = doc["settings"]
    head = (
        f"llmos bench {doc['date']}  {'quick' if s['quick'] else 'full'} run, {doc['elapsed_s']} s  |  "
        f"{m['nproc']} cores ({m['cpu_model']}), {m['mem_gib']} GiB, Python {m['python']}"
        + (f", Ray {s['ray']}" if s.get("ray") else "")
    )
    out = [head]
    load = doc.get("load_average")
    if load:
        out.append(
            f"1-min load average {load['start']:.1f} before the run, {load['end']:.1f} after (this run included), "
            f"on {m['nproc']} cores"
        )
        if load["start"] > 0.5 * (m["nproc"] or 1):
            out.append(
                "warning: other processes were busy on this machine: absolute numbers are low and noisy; "
                "ratios (contestants take turns) hold better"
            )
    out += ["", line(HEADERS), *(line(r) for r in rows)]
    out += [
        "",
        "VALUE: the case's statistic (median of the samples, or the named percentile); MIN-MAX over N samples.",
        "LLMOS x: llmos's advantage over that peer, measured in this run "
        "(rates: llmos/peer, times: peer/llmos; > 1: llmos ahead).",
    ]
    return "\n".join(out)


def format_markdown(doc: dict[str, Any]) -> str:
    """The results as a Markdown table (the README's), one row per case.

    ``python -m llmos_actors.bench.report docs/bench.json`` prints it for a stored run;
    the header line carries that run's date, machine and load, so a stored result
    never reads as a live one.
    """
    m, s = doc["machine"], doc["settings"]
    load = doc.get("load_average") or {}
    lines = [
        f"Measured {doc['date']} ({'quick' if s['quick'] else 'full'} run, {doc['elapsed_s']} s) on "
        f"{m['nproc']} cores ({m['cpu_model']}), {m['mem_gib']} GiB, Python {m['python']}, "
        f"pyzmq {m.get('pyzmq')} (libzmq {m.get('libzmq')}), torch {m.get('torch')}"
        + (f", Ray {s['ray']}" if s.get("ray") else "")
        + (f"; 1-min load average {load['start']:.1f} when it started" if load else "")
        + ".",
        "",
        "| case | unit | llmos: median (min-max) | peers in the same run: median (llmos advantage) |",
        "|---|---|---:|---|",
    ]
    for case in doc["cases"]:
        ours = case["llmos"]
        stat = "" if case["stat"] == "median" else f" {case['stat']}"
        if ours["status"] != "ok":
            lines.append(f"| `{case['name']}` | {case['unit']} | {ours['status']}: {ours.get('reason', '')} | |")
            continue
        value = f"**{fmt(ours['value'])}**{stat} ({fmt(ours['min'])}-{fmt(ours['max'])})"
        peers = []
        for p in case["peers"]:
            if p["status"] == "ok":
                adv = p.get("llmos_advantage")
                peers.append(f"{p['who']} {fmt(p['value'])}" + (f" ({fmt_ratio(adv)}x)" if adv is not None else ""))
            else:
                peers.append(f"{p['who']}: {p['status']}")
        lines.append(f"| `{case['name']}` | {case['unit']} | {value} | {' · '.join(peers) or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print a stored run (``--json`` output) as the table, or as Markdown with ``--markdown``;
    ``--plot FILE.png`` draws its chart again."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m llmos_actors.bench.report", description=main.__doc__)
    ap.add_argument("file", help="a JSON file written by llmos bench --json")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (as in the README)")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the run's bar chart into this file")
    args = ap.parse_args(argv)
    with open(args.file) as fh:
        doc = json.load(fh)
    print(format_markdown(doc) if args.markdown else format_table(doc))
    if args.plot:
        from .plot import PlotUnavailable, write_plot

        try:
            print(f"wrote {write_plot(doc, args.plot)}")
        except PlotUnavailable as exc:
            print(f"error: {exc}")
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
