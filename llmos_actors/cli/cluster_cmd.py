"""``llmos cluster up|down|status``: llmos daemons on every node of a Ray cluster.

up: start (or keep) a daemon on every alive Ray node, and on nodes that join later;
down: stop them all; status: the node table. --address picks the Ray cluster
(default: auto, the one this machine belongs to).
"""

from __future__ import annotations

import argparse
import json

from ..errors import DaemonUnavailable
from .common import Exit, err

HELP = "run llmos on every node of a Ray cluster (up, down, status)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--address", default="auto", help="the Ray cluster (GCS address host:port; default: auto)")
    p.add_argument("--json", action="store_true", help="print the node table as JSON")
    p.set_defaults(func=run)


def _print(nodes: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(nodes, indent=2, default=str))
        return
    print(f"{'NODE':<14} {'STATE':<10} {'ENDPOINT':<28} {'PID':>8}  RESTARTS")
    for n in nodes:
        endpoint, pid = n.get("endpoint", ""), n.get("pid") or ""
        print(f"{n['node_id'][:12]:<14} {n['state']:<10} {endpoint:<28} {pid!s:>8}  {n.get('restarts', 0)}")


def run(args: argparse.Namespace) -> int:
    try:
        import ray
    except ImportError:
        err('llmos cluster needs Ray: pip install "llmos-actors[cluster]"')
        return Exit.USAGE
    from .. import cluster
    from ..cluster.control import registry

    try:
        if args.action == "up":
            _print(cluster.up(args.address), args.json)
        elif args.action == "down":
            print(f"stopped {cluster.down(args.address)} daemon(s)")
        else:
            import ray

            _print(ray.get(registry(args.address).node_table.remote()), args.json)
    except DaemonUnavailable as exc:
        err(str(exc))
        return Exit.UNAVAILABLE
    return 0
