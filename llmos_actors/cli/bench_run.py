"""What ``llmos bench`` runs (see ``bench_cmd``): select the cases, open the daemon, measure, report."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..bench import actors as bench_actors
from ..bench.cases import UnknownCase, select
from ..bench.context import BenchContext
from ..bench.progress import Progress
from ..bench.ray_session import RaySession
from ..bench.registry import CASES, MODEL_PREFIXES
from ..bench.report import build_doc, format_table
from ..bench.runner import run_cases
from ..bench.workload import FULL, QUICK
from ..client import Kernel
from .common import Exit, err, kernel_for, table

#: The benchmark's own daemon takes messages up to this size (the 256 MiB tensor cases).
MAX_MESSAGE_BYTES = 1 << 30
#: ... and its fork server preloads what the actors use, as a deployment would (config ``preload``).
PRELOAD = bench_actors.PRELOAD


def _list() -> int:
    table(
        ((c.name, c.unit, c.stat, ", ".join(c.peers) or "-", c.what) for c in CASES.values()),
        ("CASE", "UNIT", "STAT", "PEERS", "MEASURES"),
    )
    return Exit.OK


@contextlib.contextmanager
def _daemon(args: argparse.Namespace) -> Iterator[tuple[Kernel, str]]:
    """A connected kernel on the daemon to measure, and how to name it in the report."""
    if args.runtime_dir:
        with kernel_for(args) as kernel:
            yield kernel, str(kernel.config.runtime_dir)
        return
    from ..testing import start_daemon

    with start_daemon(max_message_bytes=MAX_MESSAGE_BYTES, preload=PRELOAD) as handle:
        yield handle.connect(), "own (temporary runtime dir)"


def run_bench(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    try:
        cases = select(args.cases or ([p + "*" for p in MODEL_PREFIXES] if args.llm else []))
        if not args.cases and not args.llm:  # the LLM cases load a real model: only when asked for
            cases = [c for c in cases if not c.name.startswith(MODEL_PREFIXES)]
    except UnknownCase as exc:
        err(str(exc))
        return Exit.USAGE
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        err("--plot needs matplotlib: pip install 'llmos-actors[plot]'")
        return Exit.USAGE
    timing = QUICK if args.quick else FULL
    progress = Progress(enabled=not args.no_progress)
    workdir = Path(tempfile.mkdtemp(prefix="llmos-bench-", dir="/tmp"))  # short: ipc paths are limited
    load_start = os.getloadavg()[0]
    ray = RaySession(args.ray_python, workdir / "ray-driver.log") if args.peers else None
    try:
        with _daemon(args) as (kernel, daemon_label):
            ctx = BenchContext(
                kernel, kernel.config, timing, workdir, status=kernel.status(), ray=ray, named=bool(args.cases)
            )
            try:
                results, elapsed = run_cases(ctx, cases, with_peers=args.peers, progress=progress.update)
            finally:
                progress.close()
                if ray is not None:
                    ray.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = build_doc(
        results,
        timing=timing,
        quick=args.quick,
        elapsed_s=elapsed,
        peers=args.peers,
        daemon=daemon_label,
        ray_version=ray.version if ray is not None else "",
        load=(load_start, os.getloadavg()[0]),
    )
    _output(doc, args)
    failed = [c["name"] for c in doc["cases"] if c["llmos"]["status"] == "error"]
    if failed:
        err(f"{len(failed)} case(s) failed: {', '.join(failed)}")
        return Exit.ERROR
    return Exit.OK


def _output(doc: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json == "-":
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(doc))
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
            print(f"\nwrote {args.json}")
    if args.plot:
        from ..bench.plot import write_plot

        write_plot(doc, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
