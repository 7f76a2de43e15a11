"""llmos-actors: an operating-system layer for LLM agents.

A kernel daemon forks actors as real OS processes pinned to cores and GPUs,
wires them with ZeroMQ and msgpack, and supervises and schedules them.
This module is the public face: everything users need is re-exported here.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from ._pages.api import empty, full, in_pool, move, np_empty, np_full, np_zeros, share, zeros
from ._pages.objref import ObjectRef
from .actor import Actor
from .client import AsyncKernel, Kernel, connect, connect_async
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
    LlmosError,
    MailboxFull,
    MethodNotFound,
    NameTaken,
    ObjectLost,
    PoolExhausted,
    ProtocolError,
    RemoteError,
    ResourceUnavailable,
)
from .pools import AsyncPool, Pool, PoolDispatcher
from .refs import ActorRef, AsyncActorRef, CallOptions
from .streams import AsyncStreamCall, StreamCall
from .topics import AsyncSubscription, Subscription, subscribe

__all__ = [
    "Actor",
    "ActorDiedError",
    "ActorError",
    "ActorImportError",
    "ActorNotFound",
    "ActorRef",
    "AsyncActorRef",
    "AsyncKernel",
    "AsyncPool",
    "AsyncStreamCall",
    "AsyncSubscription",
    "CallOptions",
    "CallTimeout",
    "ClosedError",
    "Config",
    "ConfigError",
    "DaemonUnavailable",
    "Kernel",
    "LlmosError",
    "MailboxFull",
    "MethodNotFound",
    "NameTaken",
    "ObjectLost",
    "ObjectRef",
    "Pool",
    "PoolDispatcher",
    "PoolExhausted",
    "ProtocolError",
    "RemoteError",
    "ResourceUnavailable",
    "StreamCall",
    "Subscription",
    "__version__",
    "connect",
    "connect_async",
    "empty",
    "full",
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
