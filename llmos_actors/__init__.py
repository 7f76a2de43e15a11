"""llmos-actors: an operating-system layer for LLM agents.

A kernel daemon forks actors as real OS processes pinned to cores and GPUs,
wires them with ZeroMQ and msgpack, and supervises and schedules them.
This module is the public face: everything users need is re-exported here.
"""

from __future__ import annotations

import logging

from ._pages.objref import ObjectRef
from ._spawnspec import RestartPolicy
from ._version import __version__
from .actor import Actor
from .agents import Agent, Blackboard, LLMPolicy, Policy, ScriptedPolicy, answer_approval, tool
from .client import AsyncKernel, Kernel, connect, connect_async
from .cluster import AsyncClusterKernel, ClusterKernel  # also registers connect("ray://...")
from .config import Config, load_config
from .errors import (
    ActorDiedError,
    ActorError,
    ActorImportError,
    ActorNotFound,
    CallTimeout,
    ClosedError,
    ConfigError,
    DaemonUnavailable,
    DeadlockError,
    InvalidArgument,
    InvalidSupervisorArgument,
    InvalidSyncArgument,
    JournalError,
    LimitExceeded,
    LlmosError,
    LockError,
    MailboxFull,
    MethodNotFound,
    NameTaken,
    ObjectLost,
    PagesExhausted,
    PermissionDenied,
    PoolExhausted,
    ProtocolError,
    RemoteError,
    ResourceUnavailable,
    SnapshotError,
    SupervisorError,
)
from .pages import empty, full, in_pages, in_pool, move, np_empty, np_full, np_zeros, share, zeros
from .pool_dispatcher import PoolDispatcher
from .pools import AsyncPool, Pool
from .refs import ActorRef, AsyncActorRef, CallOptions
from .streams import AsyncStreamCall, StreamCall
from .supervision import AsyncMonitor, AsyncSupervisor, DownNotice, Monitor, Supervisor
from .sync import (
    AsyncBarrier,
    AsyncCondition,
    AsyncEvent,
    AsyncMutex,
    AsyncSemaphore,
    Barrier,
    Condition,
    Event,
    Mutex,
    Semaphore,
)
from .topics import AsyncSubscription, Subscription, subscribe

__all__ = [
    "LLM",
    "Actor",
    "Agent",
    "ActorDiedError",
    "ActorError",
    "ActorImportError",
    "ActorNotFound",
    "ActorRef",
    "AsyncActorRef",
    "AsyncBarrier",
    "AsyncClusterKernel",
    "AsyncCondition",
    "AsyncEvent",
    "AsyncKernel",
    "AsyncMonitor",
    "AsyncMutex",
    "AsyncPool",
    "AsyncSemaphore",
    "AsyncStreamCall",
    "AsyncSubscription",
    "AsyncSupervisor",
    "Barrier",
    "Blackboard",
    "CallOptions",
    "CallTimeout",
    "ClosedError",
    "ClusterKernel",
    "Condition",
    "Config",
    "ConfigError",
    "DaemonUnavailable",
    "DeadlockError",
    "DownNotice",
    "Event",
    "InvalidArgument",
    "InvalidSupervisorArgument",
    "InvalidSyncArgument",
    "Kernel",
    "LLMPolicy",
    "LlmosError",
    "LockError",
    "MailboxFull",
    "MethodNotFound",
    "Monitor",
    "Mutex",
    "NameTaken",
    "JournalError",
    "ObjectLost",
    "SnapshotError",
    "ObjectRef",
    "PagesExhausted",
    "Policy",
    "Pool",
    "PoolDispatcher",
    "PoolExhausted",
    "PermissionDenied",
    "LimitExceeded",
    "ProtocolError",
    "RemoteError",
    "ResourceUnavailable",
    "RestartPolicy",
    "ScriptedPolicy",
    "Semaphore",
    "StreamCall",
    "Subscription",
    "Supervisor",
    "SupervisorError",
    "__version__",
    "answer_approval",
    "connect",
    "connect_async",
    "empty",
    "full",
    "in_pages",
    "in_pool",
    "load_config",
    "move",
    "np_empty",
    "np_full",
    "np_zeros",
    "share",
    "subscribe",
    "tool",
    "zeros",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> object:
    # The LLM device needs torch and transformers: imported when first asked for, so that
    # `import llmos_actors` stays light.
    if name == "LLM":
        from .llm import LLM

        return LLM
    raise AttributeError(f"module 'llmos_actors' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "LLM"})
