"""Whether the VM runs, is paused, or is stopping, and the exit status the process ends with.

Any thread may ask the VM to stop (the guest through isa-debug-exit, the vCPU loop when
the guest is dead, the main thread on Ctrl-C). The first request decides the status.

A guest shutdown (ACPI power-off, or a reset or triple fault under -no-reboot) ends the
process with status 0, as in QEMU -- unless ``no_shutdown`` (QEMU's -no-shutdown): then
the vCPUs stop but the process stays until it is told to exit (Ctrl-C, SIGTERM).

Pausing is QEMU's vm_stop()/vm_start(): ``pause(reason)`` asks every vCPU loop to park
outside KVM_RUN, and ``wait_parked()`` returns once they all have, so that the monitor
or the gdbstub can look at and change vCPU state; ``resume()`` lets them go on. The
status names are QEMU's RunState names (``query-status``, ``info status``).
"""

from __future__ import annotations

import threading
from typing import Optional

RUNNING, PAUSED, PRELAUNCH, DEBUG, SHUTDOWN = "running", "paused", "prelaunch", "debug", "shutdown"


class RunState:
    def __init__(self, vcpus: int = 1, no_shutdown: bool = False) -> None:
        self.no_shutdown = no_shutdown
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()     # the vCPUs must stop
        self._exit = threading.Event()     # the process must end
        self._status: Optional[int] = None
        self._paused_as: Optional[str] = None   # the reason while paused, else None
        self._parked = 0
        self.vcpus = vcpus

    def request_exit(self, status: int) -> None:
        """Ask the VM to stop; the process will exit with ``status`` unless a request came first."""
        with self._lock:
            if self._status is None:
                self._status = status
            self._stop.set()
            self._exit.set()
            self._changed.notify_all()

    def guest_shutdown(self) -> None:
        """The guest turned the machine off: exit with 0, or with -no-shutdown only stop."""
        if self.no_shutdown:
            with self._lock:
                self._stop.set()
                self._changed.notify_all()
        else:
            self.request_exit(0)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def exit_requested(self) -> bool:
        return self._exit.is_set()

    @property
    def exit_status(self) -> Optional[int]:
        """The status of the first request; None while nobody asked the VM to stop."""
        return self._status

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a stop is requested (or ``timeout`` passes); True if it was."""
        return self._stop.wait(timeout)

    def wait_exit(self, timeout: Optional[float] = None) -> bool:
        """Block until the process is told to end (or ``timeout`` passes); True if it was."""
        return self._exit.wait(timeout)

    # -- pausing ------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """QEMU's RunState name."""
        if self._stop.is_set():
            return SHUTDOWN
        return self._paused_as or RUNNING

    @property
    def pause_requested(self) -> bool:
        return self._paused_as is not None

    def pause(self, reason: str = PAUSED) -> bool:
        """Ask the vCPUs to park; False if the VM was already paused. The caller kicks
        the vCPUs out of KVM_RUN and may then ``wait_parked()``."""
        with self._lock:
            if self._paused_as is not None:
                return False
            self._paused_as = reason
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
                lambda: self._stop.is_set() or self._parked == self.vcpus or self._paused_as is None,
                timeout)

    def park_while_paused(self) -> None:
        """Called by a vCPU loop outside KVM_RUN: sleep while the VM is paused."""
        with self._lock:
            if self._paused_as is None:
                return
            self._parked += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._paused_as is None or self._stop.is_set())
            self._parked -= 1
