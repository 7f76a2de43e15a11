"""Each client operation written once, run by a blocking or an asyncio flavour.

An operation is a generator method: it checks its arguments, yields the steps
that wait (a daemon request, an actor call, a thread job) and returns the
public result. The flavour drives it: ``Blocking`` performs each step and
blocks, ``Awaiting`` awaits each step. So ``Kernel.kill`` and
``AsyncKernel.kill`` are one definition (pyzmq's ``zmq.asyncio.Socket`` overrides
only what blocks in the same way), and the two surfaces cannot drift.

    class SupervisorOps(Surface):
        @operation
        def stop(self, *, grace=None):
            return (yield self._daemon("supervisor_stop", self.id, grace=grace, timeout=None))

    class Supervisor(SupervisorOps, Blocking): ...        # sup.stop() blocks
    class AsyncSupervisor(SupervisorOps, Awaiting): ...   # await sup.stop()
"""

from __future__ import annotations

from .flavours import Awaiting, Blocking, Surface, operation, twin
from .steps import Step, offload

__all__ = ["Awaiting", "Blocking", "Step", "Surface", "offload", "operation", "twin"]
