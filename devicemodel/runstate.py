"""Whether the VM is still running, and the exit status the process ends with.

Any thread may ask the VM to stop (the guest through isa-debug-exit, the vCPU loop when
the guest is dead, the main thread on Ctrl-C). The first request decides the status.

A guest shutdown (ACPI power-off, or a reset or triple fault under -no-reboot) ends the
process with status 0, as in QEMU -- unless ``no_shutdown`` (QEMU's -no-shutdown): then
the vCPUs stop but the process stays until it is told to exit (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import threading
from typing import Optional


class RunState:
    def __init__(self, no_shutdown: bool = False) -> None:
        self.no_shutdown = no_shutdown
        self._lock = threading.Lock()
        self._stop = threading.Event()     # the vCPUs must stop
        self._exit = threading.Event()     # the process must end
        self._status: Optional[int] = None

    def request_exit(self, status: int) -> None:
        """Ask the VM to stop; the process will exit with ``status`` unless a request came first."""
        with self._lock:
            if self._status is None:
                self._status = status
        self._stop.set()
        self._exit.set()

    def guest_shutdown(self) -> None:
        """The guest turned the machine off: exit with 0, or with -no-shutdown only stop."""
        if self.no_shutdown:
            self._stop.set()
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
