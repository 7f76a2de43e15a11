"""``llmos daemon``: run the kernel daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import load_config
from ..errors import ConfigError, JournalError
from .common import Exit, err

HELP = "run the kernel daemon in the foreground"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help=HELP, description=__doc__)
    p.add_argument("--config", help="TOML config file (default: $LLMOS_CONFIG, else built-in defaults)")
    p.add_argument("--state-dir", help="where logs and exit records go (default: $LLMOS_STATE_DIR or XDG state)")
    p.add_argument("--grace", type=float, help="seconds an actor gets between SIGTERM and SIGKILL")
    p.add_argument("--preload", help="comma-separated modules the fork server imports (default: numpy,torch)")
    p.add_argument("--log-level", default="INFO", help="daemon log level (default: INFO)")
    p.add_argument(
        "--fresh", action="store_true", help="start empty: set the journal and snapshots aside (state dir/previous-*)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._kernel.daemon import run_daemon
    from .._kernel.rundir import AlreadyRunning, daemon_info

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    flags = {"runtime_dir": args.runtime_dir, "state_dir": args.state_dir, "grace": args.grace, "preload": args.preload}
    config = load_config(flags, config_file=args.config)
    from .._kernel.state.settings import set_aside

    try:
        if args.fresh and not daemon_info(config).get("running"):
            aside = set_aside(config)
            if aside is not None:
                logging.getLogger("llmos_actors").warning("--fresh: the previous state is in %s", aside)
        return run_daemon(config, lambda: load_config(flags, config_file=args.config))
    except JournalError as exc:
        err(str(exc))
        return Exit.ERROR
    except AlreadyRunning as exc:
        err(str(exc))
        return Exit.UNAVAILABLE
    except ConfigError as exc:
        err(f"configuration: {exc}")
        return Exit.USAGE
