"""The whole exception tree of llmos_actors.

Errors cross process boundaries as a string ``code`` plus the remote type,
message and traceback text (see ``_wire.codec``), never as pickled objects.
"""

from __future__ import annotations


class LlmosError(Exception):
    """Base of every llmos_actors error.

    A subclass that names its wire code (``class X(LlmosError, code="x")``) travels by it:
    the code is registered in ``WIRE_ERRORS``, where the decoder maps it back to the class
    (the first class to name a code keeps it). A subclass that names none travels as its base.
    """

    #: Wire code of this error kind; the decoder maps codes back to classes.
    code = "error"
    #: Traceback text from the process where the failure happened, when it was elsewhere.
    remote_traceback = ""

    def __init_subclass__(cls, code: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
            WIRE_ERRORS.setdefault(code, cls)


#: Every error class that may travel, by its ``code`` (filled as the classes are defined).
WIRE_ERRORS: dict[str, type[LlmosError]] = {LlmosError.code: LlmosError}


class ClosedError(LlmosError, code="closed"):
    """You closed this client or ref (as opposed to something breaking)."""


class DaemonUnavailable(LlmosError, ConnectionError, code="daemon_unavailable"):
    """No daemon answers at the runtime directory, or it went away."""


class ProtocolError(LlmosError, code="protocol"):
    """Malformed, oversized or version-mismatched message."""


class InvalidArgument(ProtocolError, ValueError, code="invalid_argument"):
    """An argument is of the wrong type or out of range.

    Raised by the same check (``_validate``) on whichever side of the wire sees
    the argument first, so a caller gets this one type whether the client or the
    daemon refused it.
    """


class ConfigError(LlmosError, ValueError, code="config"):
    """A configuration value, flag or config file is wrong."""


class ActorError(LlmosError, code="actor"):
    """Base of errors about one actor."""


class ActorNotFound(ActorError, LookupError, code="not_found"):
    """No actor with that name or id is known to the daemon."""


class NameTaken(ActorError, code="name_taken"):
    """A live actor already has that name."""


class ActorImportError(ActorError, ImportError, code="import"):
    """The daemon could not import the actor class named ``module:Class``."""


class MethodNotFound(ActorError, AttributeError, code="method_not_found"):
    """The actor has no public method of that name."""


class ActorDiedError(ActorError, code="died"):
    """The actor's process exited; the call cannot complete.

    Attributes:
        exitcode: the process exit status, or None if it was killed by a signal.
        signal: the number of the signal that killed it, or None.
        reason: a one-line human explanation (e.g. ``__init__`` raised ...).
        restarting: its supervisor is starting a new incarnation (calls with the
            ``wait_restart`` option wait for it; this call did not run to the end).
    """

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


class ResourceUnavailable(LlmosError, code="resource"):
    """A spawn asked for cores or GPUs the machine does not have or has given away."""


class CallTimeout(LlmosError, TimeoutError, code="timeout"):
    """The call's deadline passed before a reply came."""


class MailboxFull(LlmosError, code="mailbox_full"):
    """The actor's mailbox is full and its overflow policy is ``raise``."""


class SupervisorError(LlmosError, code="supervisor"):
    """A supervisor request was refused (unknown supervisor, bad strategy, it has failed)."""


class InvalidSupervisorArgument(InvalidArgument, SupervisorError, code="invalid_supervisor_argument"):
    """A supervisor's strategy or restart policy is not one of the known ones."""


class LockError(LlmosError, code="lock"):
    """A kernel sync object was misused: released by a non-holder, wrong kind or size, unknown name."""


class InvalidSyncArgument(InvalidArgument, LockError, code="invalid_sync_argument"):
    """A sync object's name, kind, count or parties is malformed (a ``LockError`` and a ``ValueError``)."""


class DeadlockError(LockError, code="deadlock"):
    """Granting this request would close a cycle of processes waiting on each other's mutexes.

    The request is refused (the requester does not wait), which breaks the cycle;
    ``llmos status`` lists the cycle.
    """


class PagesExhausted(LlmosError, MemoryError, code="pool_exhausted"):  # the wire code stays: older peers know it
    """The shared-memory pages had no room for an allocation, even after spilling and waiting."""


#: Deprecated name of ``PagesExhausted`` (the same class), kept for one release: "pool" now
#: means actor pools only.
PoolExhausted = PagesExhausted


class ObjectLost(LlmosError, LookupError, code="object_lost"):
    """No such object in the store: it was freed, its owner exited, or it is another daemon's."""


class PermissionDenied(LlmosError, PermissionError, code="permission_denied"):
    """The daemon refused the request: the requester's identity or role does not allow it (nothing changed)."""


class LimitExceeded(ResourceUnavailable, code="limit_exceeded"):
    """A request would exceed a configured limit; the message names the limit and its value (nothing changed)."""


class SnapshotError(LlmosError, code="snapshot"):
    """An actor's snapshot could not be taken, stored or restored (the previous one is kept)."""


class JournalError(LlmosError, code="journal"):
    """The daemon's journal cannot be opened or read (corrupt, truncated, or from a newer daemon)."""


class RemoteError(LlmosError, code="remote"):
    """The actor's method raised; carries the remote type, message and traceback.

    Attributes:
        remote_type: dotted name of the exception class raised remotely.
        remote_message: ``str()`` of the remote exception.
        remote_traceback: the formatted remote traceback text.
    """

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
