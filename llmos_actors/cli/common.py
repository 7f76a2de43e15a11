"""What every subcommand shares: exit codes, connecting, JSON output, tables."""

from __future__ import annotations

import argparse
import base64
import enum
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..client import Kernel, connect
from ..config import load_config


class Exit(enum.IntEnum):
    """Exit status of ``llmos`` commands."""

    OK = 0
    ERROR = 1  # the operation failed (remote error, actor died, ...)
    USAGE = 2  # bad arguments (argparse uses 2 as well)
    NOT_FOUND = 3  # no such actor
    UNAVAILABLE = 4  # no daemon answers at the runtime dir
    INTERRUPTED = 130


def kernel_for(args: argparse.Namespace) -> Kernel:
    """Connect to the daemon chosen by ``--runtime-dir`` / ``$LLMOS_RUNTIME_DIR``, or ``--connect`` (TCP)."""
    if getattr(args, "connect", None):
        return connect(args.connect, key=args.key, server_key=args.server_key)
    return connect(config=load_config({"runtime_dir": args.runtime_dir}, config_file=getattr(args, "config", None)))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode()}
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):  # numpy arrays and torch tensors
        return tolist()
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return repr(obj)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(obj, default=_json_default, indent=indent, sort_keys=indent is not None)


def print_json(obj: Any) -> None:
    print(dumps(obj, indent=2))


def parse_json_arg(text: str, what: str) -> Any:
    """A JSON value from the command line; a bare word that is not JSON is taken as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if text and all(ch.isalnum() or ch in "-_./:@" for ch in text):
            return text
        raise SystemExit(f"llmos: {what} is not valid JSON: {text!r}") from None


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], out: Callable[[str], None] = print) -> None:
    """Print an aligned plain-text table."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    out("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        out("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def err(message: str) -> None:
    print(f"llmos: {message}", file=sys.stderr)
