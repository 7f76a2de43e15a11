"""Results as a JSON document (with the machine and the date), and the report tool for stored runs.

Tables are printed from the document (``tables``), so ``--json`` and the screen can
never disagree. Every number in it was measured in the run the document describes.
``python -m llmos_actors.bench.report FILE.json`` prints a stored run, ``--markdown``
as Markdown, ``--plot`` draws its chart, ``--write-docs docs/bench.md`` regenerates
that page's results section (``docpage``).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

from .._version import __version__
from .docpage import DocPageError, check_doc, write_docs
from .payload import PAYLOAD_BYTES
from .runner import CaseResult, Result
from .tables import SCHEMA, fmt, format_markdown, format_table
from .workload import Timing

__all__ = ["SCHEMA", "build_doc", "fmt", "format_markdown", "format_table", "machine_facts", "main"]


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


def main(argv: list[str] | None = None) -> int:
    """Print a stored run (``--json`` output) as the table, or as Markdown with ``--markdown``;
    ``--plot FILE.png`` draws its chart again; ``--write-docs PAGE.md`` regenerates the page's
    results section from it."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m llmos_actors.bench.report", description=main.__doc__)
    ap.add_argument("file", help="a JSON file written by llmos bench --json")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (as in docs/bench.md)")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the run's bar chart into this file")
    ap.add_argument(
        "--write-docs",
        metavar="PAGE.md",
        help="replace the generated results section of this page (docs/bench.md) with this run's",
    )
    args = ap.parse_args(argv)
    try:
        with open(args.file) as fh:
            doc = json.load(fh)
        check_doc(doc)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and DocPageError are ValueErrors
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    if not args.write_docs:
        print(format_markdown(doc) if args.markdown else format_table(doc))
    plotted = _plot(doc, args.plot) if args.plot else None
    if args.write_docs:
        page_dir = os.path.dirname(os.path.abspath(args.write_docs))
        try:
            path = write_docs(
                doc,
                args.write_docs,
                json_name=os.path.relpath(os.path.abspath(args.file), page_dir),
                plot_name=None if plotted is None else os.path.relpath(os.path.abspath(plotted), page_dir),
            )
        except DocPageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote the results section of {path}")
    return 2 if args.plot and plotted is None else 0


def _plot(doc: dict[str, Any], path: str) -> Any:
    """Draw the chart; None (the reason printed) when matplotlib is missing."""
    from .plot import PlotUnavailable, write_plot

    try:
        plotted = write_plot(doc, path)
    except PlotUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    print(f"wrote {plotted}")
    return plotted


if __name__ == "__main__":
    raise SystemExit(main())
