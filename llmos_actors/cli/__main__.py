"""The ``llmos`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ActorNotFound, DaemonUnavailable, LlmosError
from . import (
    bench_cmd,
    call_cmd,
    chat_cmd,
    cluster_cmd,
    daemon_cmd,
    keygen_cmd,
    kill_cmd,
    logs_cmd,
    ps_cmd,
    serve_openai_cmd,
    snapshot_cmd,
    spawn_cmd,
    state_cmd,
    stats_cmd,
    status_cmd,
    top_cmd,
    topics_cmd,
)
from .common import Exit, err

#: Subcommand modules, in the order ``llmos --help`` lists them.
COMMANDS = [
    daemon_cmd,
    status_cmd,
    ps_cmd,
    spawn_cmd,
    call_cmd,
    cluster_cmd,
    kill_cmd,
    logs_cmd,
    topics_cmd,
    top_cmd,
    stats_cmd,
    bench_cmd,
    keygen_cmd,
    snapshot_cmd,
    state_cmd,
    chat_cmd,
    serve_openai_cmd,
]

EPILOG = """examples:
  llmos daemon                                # run the kernel in the foreground
  llmos spawn mymodule:Counter --name c --cpus 1 --args '[10]'
  llmos call c incr 5                          # -> 15
  llmos ps                                     # where everything runs
  llmos logs c -f
  llmos sub sys.actor.                         # the daemon's events, as JSON lines
  llmos pub news.today '{"headline": "hi"}'
  llmos kill c
  llmos stats c --watch                        # c's latency percentiles, live
  llmos bench --quick --peers                  # throughput here vs pyzmq, multiprocessing, Ray
  llmos spawn llmos_actors.llm:LLM --name llm --cpus 0,1   # an LLM device (SmolLM2 by default)
  llmos chat llm                               # talk to it; llmos serve-openai --llm llm for HTTP
environment: LLMOS_RUNTIME_DIR picks the daemon instance (same as --runtime-dir)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmos",
        description="llmos-actors: a kernel daemon for pinned, supervised actor processes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runtime-dir",
        default=os.environ.get("LLMOS_RUNTIME_DIR"),
        help="the daemon instance's runtime directory (default: $LLMOS_RUNTIME_DIR, else the user's)",
    )
    parser.add_argument("--connect", metavar="tcp://HOST:PORT", help="a remote daemon (CurveZMQ; needs --key)")
    parser.add_argument("--key", metavar="FILE", help="this client's secret key file (llmos keygen)")
    parser.add_argument("--server-key", metavar="KEY", help="the remote daemon's public key, or its .pub file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return Exit.USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except DaemonUnavailable as exc:
        err(str(exc))
        return Exit.UNAVAILABLE
    except ActorNotFound as exc:
        err(str(exc))
        return Exit.NOT_FOUND
    except (LlmosError, TypeError, ValueError) as exc:
        err(f"{type(exc).__name__}: {exc}")
        return Exit.ERROR
    except BrokenPipeError:
        return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
