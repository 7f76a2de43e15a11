"""Every case and peer in one place: importing this registers those that live in their own modules.

``cases.CASES`` and ``peers.PEERS`` hold the core ones; the LLM device's, the agents', TCP +
CurveZMQ and the cross-node cases add themselves when imported. Whatever lists or runs cases
(``llmos bench``, the pytest-benchmark suite, the registry's tests) imports them from here.
"""

from __future__ import annotations

from . import agents_cases, cluster_cases, llm_cases, tcp_cases
from .cases import CASES
from .peers import PEERS

#: Case-name prefixes of the cases that load a real model (run with ``--llm`` or by name).
MODEL_PREFIXES = (llm_cases.PREFIX, agents_cases.PREFIX)

__all__ = ["CASES", "MODEL_PREFIXES", "PEERS", "cluster_cases", "tcp_cases"]
