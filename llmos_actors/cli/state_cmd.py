"""``llmos state``: the daemon's durable state (journal, snapshots, detached objects).

llmos state info                    # journal file, counts, last recovery
llmos state export > backup.json    # while the daemon runs, too
llmos state import backup.json      # into a stopped daemon's state dir; it recovers at start
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import load_config
from ..errors import DaemonUnavailable
from .common import Exit, err, kernel_for, print_json

HELP = "export, import or describe the daemon's durable state"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("state", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", help="the daemon's state directory (default: $LLMOS_STATE_DIR or XDG state)")
    p.add_argument("--config", help="TOML config file (default: $LLMOS_CONFIG)")
    p.add_argument("action", choices=("info", "export", "import"))
    p.add_argument("file", nargs="?", help="import: the export to read (default: stdin)")
    p.add_argument("--replace", action="store_true", help="import: set the current journal aside first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._kernel.rundir import daemon_info
    from .._kernel.state.settings import set_aside
    from .._kernel.state.transfer import export_state, import_state

    config = load_config({"runtime_dir": args.runtime_dir, "state_dir": args.state_dir}, config_file=args.config)
    if args.action == "info":
        try:
            with kernel_for(args) as kernel:
                print_json(kernel.status().get("state", {}))
        except DaemonUnavailable:
            print_json({"running": False, "state_dir": str(config.state_dir)})
        return 0
    if args.action == "export":
        json.dump(export_state(config), sys.stdout)
        sys.stdout.write("\n")
        return 0
    if daemon_info(config).get("running"):
        err("stop the daemon first: import writes the journal it reads at start")
        return Exit.UNAVAILABLE
    text = Path(args.file).read_text() if args.file else sys.stdin.read()
    if args.replace:
        aside = set_aside(config)
        if aside is not None:
            print(f"previous state moved to {aside}", file=sys.stderr)
    print_json(import_state(config, json.loads(text)))
    return 0
