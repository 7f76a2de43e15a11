"""``llmos bench``: measure llmos-actors on this machine, beside its peers, in one run.

Starts its own daemon in a temporary runtime directory, unless --runtime-dir (or
LLMOS_RUNTIME_DIR) names a running one: then it spawns and kills only its own
actors there. Cases carry Ray's `ray microbenchmark` names where Ray has them.
Every number printed was measured in this run; a case or peer that cannot run
here says why.
"""

from __future__ import annotations

import argparse

HELP = "measure throughput and latency, against raw pyzmq, multiprocessing and Ray"

EPILOG = """examples:
  llmos bench --quick                          # every case, about a minute
  llmos bench --peers --json out.json --plot docs/bench.png
  llmos bench --quick --peers 1_1_actor_calls_sync 'tensor_pass_*'
  llmos bench --peers --ray-python /path/to/venv-with-ray/bin/python
  llmos bench --llm --peers                    # the LLM device vs transformers (and vLLM, see docs/llm.md)
  llmos bench --list"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help=HELP, description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("cases", nargs="*", metavar="CASE", help="case names or shell patterns (default: every case)")
    p.add_argument("--quick", action="store_true", help="short windows and few samples (under a minute)")
    p.add_argument("--peers", action="store_true", help="also measure the peers, in this run, and print ratios")
    p.add_argument("--json", metavar="FILE", help="write the results, machine and date as JSON ('-': stdout)")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart of llmos vs the peers (needs matplotlib)")
    p.add_argument(
        "--ray-python", metavar="PYTHON", help="interpreter that has Ray, for the Ray peers (default: this one)"
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--llm", action="store_true", help="the LLM device's cases (llm_*: the real SmolLM2, minutes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The measuring code (cases, peers, Ray, the report) loads only when a benchmark runs, so that
    # every other ``llmos`` command (``llmos daemon`` first) starts without it.
    from .bench_run import run_bench

    return run_bench(args)
