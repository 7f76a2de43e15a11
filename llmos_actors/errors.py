"""The whole exception tree of llmos_actors.

Errors cross process boundaries as a string ``code`` plus the remote type,
message and traceback text (see ``_wire.codec``), never as pickled objects.
"""

from __future__ import annotations


class LlmosError(Exception):
    """Base of every llmos_actors error."""

    #: Wire code of this error kind; the decoder maps codes back to classes.
    code = "error"
    #: Traceback text from the process where the failure happened, when it was elsewhere.
    remote_traceback = ""


class ClosedError(LlmosError):
    """You closed this client or ref (as opposed to something breaking)."""

    code = "closed"


class DaemonUnavailable(LlmosError, ConnectionError):
    """No daemon answers at the runtime directory, or it went away."""

    code = "daemon_unavailable"


class ProtocolError(LlmosError):
    """Malformed, oversized or version-mismatched message."""

    code = "protocol"


class InvalidArgument(ProtocolError, ValueError):
    """An argument is of the wrong type or out of range.

    Raised by the same check (``_validate``) on whichever side of the wire sees
    the argument first, so a caller gets this one type whether the client or the
    daemon refused it.
    """

    code = "invalid_argument"


class ConfigError(LlmosError, ValueError):
    """A configuration value, flag or config file is wrong."""

    code = "config"


class ActorError(LlmosError):
    """Base of errors about one actor."""

    code = "actor"


class ActorNotFound(ActorError, LookupError):
    """No actor with that name or id is known to the daemon."""

    code = "not_found"


class NameTaken(ActorError):
    """A live actor already has that name."""

    code = "name_taken"


class ActorImportError(ActorError, ImportError):
    """The daemon could not import the actor class named ``module:Class``."""

    code = "import"


class MethodNotFound(ActorError, AttributeError):
    """The actor has no public method of that name."""

    code = "method_not_found"


class ActorDiedError(ActorError):
    """The actor's process exited; the call cannot complete.

    Attributes:
        exitcode: the process exit status, or None if it was killed by a signal.
        signal: the number of the signal that killed it, or None.
        reason: a one-line human explanation (e.g. ``__init__`` raised ...).
        restarting: its supervisor is starting a new incarnation (calls with the
            ``wait_restart`` option wait for it; this call did not run to the end).
    """

    code = "died"

    def __init__(
        self,
        message: str = "actor died",
        *,
        exitcode: int | None = None,
        signal: int | None = None,
        reason: str = "",
        actor: str = "",
        restarting: bool = False,
    ) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal
        self.reason = reason
        self.actor = actor
        self.restarting = restarting

    def __reduce__(self):  # keep copy/deepcopy working with keyword-only fields
        return (_rebuild_died, (str(self), self.exitcode, self.signal, self.reason, self.actor, self.restarting))


def _rebuild_died(message, exitcode, signal, reason, actor, restarting=False):
    return ActorDiedError(message, exitcode=exitcode, signal=signal, reason=reason, actor=actor, restarting=restarting)


class ResourceUnavailable(LlmosError):
    """A spawn asked for cores or GPUs the machine does not have or has given away."""

    code = "resource"


class CallTimeout(LlmosError, TimeoutError):
    """The call's deadline passed before a reply came."""

    code = "timeout"


class MailboxFull(LlmosError):
    """The actor's mailbox is full and its overflow policy is ``raise``."""

    code = "mailbox_full"


class SupervisorError(LlmosError):
    """A supervisor request was refused (unknown supervisor, bad strategy, it has failed)."""

    code = "supervisor"


class InvalidSupervisorArgument(InvalidArgument, SupervisorError):
    """A supervisor's strategy or restart policy is not one of the known ones."""

    code = "invalid_supervisor_argument"


class LockError(LlmosError):
    """A kernel sync object was misused: released by a non-holder, wrong kind or size, unknown name."""

    code = "lock"


class InvalidSyncArgument(InvalidArgument, LockError):
    """A sync object's name, kind, count or parties is malformed (a ``LockError`` and a ``ValueError``)."""

    code = "invalid_sync_argument"


class DeadlockError(LockError):
    """Granting this request would close a cycle of processes waiting on each other's mutexes.

    The request is refused (the requester does not wait), which breaks the cycle;
    ``llmos status`` lists the cycle.
    """

    code = "deadlock"


class PagesExhausted(LlmosError, MemoryError):
    """The shared-memory pages had no room for an allocation, even after spilling and waiting."""

    code = "pool_exhausted"  # the wire code stays: older peers know it


#: Deprecated name of ``PagesExhausted`` (the same class), kept for one release: "pool" now
#: means actor pools only.
PoolExhausted = PagesExhausted


class ObjectLost(LlmosError, LookupError):
    """No such object in the store: it was freed, its owner exited, or it is another daemon's."""

    code = "object_lost"


class PermissionDenied(LlmosError, PermissionError):
    """The daemon refused the request: the requester's identity or role does not allow it (nothing changed)."""

    code = "permission_denied"


class LimitExceeded(ResourceUnavailable):
    """A request would exceed a configured limit; the message names the limit and its value (nothing changed)."""

    code = "limit_exceeded"


class RemoteError(LlmosError):
    """The actor's method raised; carries the remote type, message and traceback.

    Attributes:
        remote_type: dotted name of the exception class raised remotely.
        remote_message: ``str()`` of the remote exception.
        remote_traceback: the formatted remote traceback text.
    """

    code = "remote"

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback

    def __reduce__(self):
        return (RemoteError, (self.remote_type, self.remote_message, self.remote_traceback))

    def __str__(self) -> str:
        text = f"{self.remote_type}: {self.remote_message}"
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text


#: Every error class that may travel by its ``code``.
WIRE_ERRORS: dict[str, type[LlmosError]] = {
    cls.code: cls
    for cls in (
        LlmosError,
        ClosedError,
        DaemonUnavailable,
        ProtocolError,
        InvalidArgument,
        ConfigError,
        ActorError,
        ActorNotFound,
        NameTaken,
        ActorImportError,
        MethodNotFound,
        ActorDiedError,
        ResourceUnavailable,
        CallTimeout,
        MailboxFull,
        SupervisorError,
        InvalidSupervisorArgument,
        LockError,
        InvalidSyncArgument,
        DeadlockError,
        PagesExhausted,
        ObjectLost,
        PermissionDenied,
        LimitExceeded,
        RemoteError,
    )
}
