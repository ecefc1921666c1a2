"""Whether the VM is still running, and the exit status the process ends with.

Any thread may ask the VM to stop (the guest through isa-debug-exit, the vCPU loop when
the guest is dead, the main thread on Ctrl-C). The first request decides the status.
"""

from __future__ import annotations

import threading
from typing import Optional


class RunState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._status: Optional[int] = None

    def request_exit(self, status: int) -> None:
        """Ask the VM to stop; the process will exit with ``status`` unless a request came first."""
        with self._lock:
            if self._status is None:
                self._status = status
        self._stop.set()

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
