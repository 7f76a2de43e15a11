"""``llmos bench``: throughput and latency of llmos-actors, measured beside its peers in one run.

The pieces, each with one job:

- ``payload``  the message every call case sends (the same bytes for us and every peer)
- ``workload`` what a measurable thing looks like (rounds of operations) and the timing loops
- ``actors``   the actor classes the cases spawn (importable by ``module:Class``)
- ``cases``    the registry: Ray's benchmark names where Ray has them, plus our own
- ``peers``    the same work done with raw pyzmq, multiprocessing, torch.multiprocessing
  (``peer_servers`` holds what runs in their child processes) and Ray (``ray_session``
  drives ``ray_driver.py`` in a subprocess)
- ``runner``   warm-up, repeats, statistics and ratios
- ``report``   the run's JSON document, and the tool that reads a stored one
  (``python -m llmos_actors.bench.report``); ``tables`` formats it as text or Markdown,
  ``docpage`` writes the Results section of ``docs/bench.md``
- ``plot``     the bar chart (matplotlib, optional)
- ``flood``, ``lockpair``  helper processes of the priority and mutex cases

Adding a case is one entry in ``cases.CASES`` (``docs/bench.md`` says how). The
pytest-benchmark suite in ``benchmarks/`` opens the same workloads.
"""

from __future__ import annotations
