"""A load generator for the priority case: keeps low-priority calls in flight to one actor.

    python -m llmos_actors.bench.flood RUNTIME_DIR ACTOR_ID [WINDOW] [WORK_SECONDS]

Runs in its own process (so its client work does not share the measuring
process's GIL), prints ``ready`` once its window is full, and stops when its
standard input closes.
"""

from __future__ import annotations

import select
import sys

import llmos_actors as llmos


def main(argv: list[str]) -> int:
    runtime_dir, actor_id = argv[0], argv[1]
    window = int(argv[2]) if len(argv) > 2 else 200
    work = float(argv[3]) if len(argv) > 3 else 0.0002
    with llmos.connect(runtime_dir) as kernel:
        low = kernel.lookup(actor_id).options(priority=0)
        in_flight = [low.ask("work", work) for _ in range(window)]
        print("ready", flush=True)
        while True:
            if select.select([sys.stdin], [], [], 0)[0]:
                return 0  # the parent closed our stdin: stop
            head = in_flight.pop(0)
            try:
                head.result(timeout=30)
            except llmos.LlmosError:
                return 0
            in_flight.append(low.ask("work", work))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
