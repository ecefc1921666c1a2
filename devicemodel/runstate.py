"""Whether the VM runs, is paused, or is stopping, and the exit status the process ends with.

Any thread may ask the VM to stop (the guest through isa-debug-exit, the vCPU loop when
the guest is dead, the main thread on Ctrl-C). The first request decides the status.

Pausing is QEMU's vm_stop()/vm_start(): ``pause(reason)`` asks every vCPU loop to park
outside KVM_RUN, and ``wait_parked()`` returns once they all have, so that the monitor
or the gdbstub can look at and change vCPU state; ``resume()`` lets them go on. The
status names are QEMU's RunState names (``query-status``, ``info status``).

Holding is QEMU's pause_all_vcpus() without a change of run state: ``hold()`` parks the
vCPUs for a moment (a system reset, a monitor command that reads vCPU state) and
``release()`` lets them go on unless the VM is paused.
"""

from __future__ import annotations

import threading
from typing import Optional

RUNNING, PAUSED, PRELAUNCH, DEBUG, SHUTDOWN = "running", "paused", "prelaunch", "debug", "shutdown"


class RunState:
    def __init__(self, vcpus: int = 1) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._status: Optional[int] = None
        self._paused_as: Optional[str] = None   # the reason while paused, else None
        self._parked = 0
        self._holds = 0
        self._kept = frozenset()   # vCPU indices kept parked while the VM runs (a debugger's step)
        self.vcpus = vcpus

    def request_exit(self, status: int) -> None:
        """Ask the VM to stop; the process will exit with ``status`` unless a request came first."""
        with self._lock:
            if self._status is None:
                self._status = status
            self._stop.set()
            self._changed.notify_all()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def exit_status(self) -> Optional[int]:
        """The status of the first request; None while nobody asked the VM to stop."""
        return self._status

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a stop is requested (or ``timeout`` passes); True if it was."""
        return self._stop.wait(timeout)

    # -- pausing ------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """QEMU's RunState name."""
        if self._stop.is_set():
            return SHUTDOWN
        return self._paused_as or RUNNING

    @property
    def pause_requested(self) -> bool:
        """Whether the vCPUs should park (the VM is paused or held)."""
        return self._paused_as is not None or self._holds > 0

    def _must_park(self, index: Optional[int] = None) -> bool:
        return ((self._paused_as is not None or self._holds > 0 or index in self._kept)
                and not self._stop.is_set())

    def hold(self) -> None:
        """Park the vCPUs without changing the run state (nested holds count)."""
        with self._lock:
            self._holds += 1
            self._changed.notify_all()

    def release(self) -> None:
        with self._lock:
            self._holds -= 1
            self._changed.notify_all()

    def pause(self, reason: str = PAUSED) -> bool:
        """Ask the vCPUs to park; False if the VM was already paused. The caller kicks
        the vCPUs out of KVM_RUN and may then ``wait_parked()``."""
        with self._lock:
            if self._paused_as is not None:
                return False
            self._paused_as = reason
            self._kept = frozenset()    # kept parked only until the VM pauses again
            self._changed.notify_all()
            return True

    def resume(self) -> bool:
        """Let the vCPUs run again; False if the VM was not paused."""
        with self._lock:
            if self._paused_as is None:
                return False
            self._paused_as = None
            self._changed.notify_all()
            return True

    def wait_parked(self, timeout: Optional[float] = None) -> bool:
        """Block until every vCPU loop has parked (or the VM stops); False on timeout."""
        with self._lock:
            return self._changed.wait_for(
                lambda: self._stop.is_set() or self._parked == self.vcpus or not self._must_park(),
                timeout)

    def keep_parked(self, indices) -> None:
        """Keep these vCPUs parked even while the VM runs (a debugger stepping one vCPU
        while the others stay stopped), until the VM pauses again."""
        with self._lock:
            self._kept = frozenset(indices)
            self._changed.notify_all()

    def park_while_paused(self, index: Optional[int] = None) -> None:
        """Called by a vCPU loop outside KVM_RUN: sleep while the VM is paused or held
        (or this vCPU, ``index``, is kept parked)."""
        with self._lock:
            if not self._must_park(index):
                return
            self._parked += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._must_park(index))
            self._parked -= 1
