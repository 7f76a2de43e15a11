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
from .client import AsyncKernel, Kernel, connect, connect_async
from .cluster import ClusterKernel  # also registers connect("ray://...")
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
    "Actor",
    "ActorDiedError",
    "ActorError",
    "ActorImportError",
    "ActorNotFound",
    "ActorRef",
    "AsyncActorRef",
    "AsyncBarrier",
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
    "LlmosError",
    "LockError",
    "MailboxFull",
    "MethodNotFound",
    "Monitor",
    "Mutex",
    "NameTaken",
    "ObjectLost",
    "ObjectRef",
    "PagesExhausted",
    "Pool",
    "PoolDispatcher",
    "PoolExhausted",
    "PermissionDenied",
    "LimitExceeded",
    "ProtocolError",
    "RemoteError",
    "ResourceUnavailable",
    "RestartPolicy",
    "Semaphore",
    "StreamCall",
    "Subscription",
    "Supervisor",
    "SupervisorError",
    "__version__",
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
    "zeros",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
