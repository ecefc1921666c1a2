"""Which vCPU the calling thread runs, as QEMU's ``current_cpu``: each vCPU thread sets
its index when it starts; other threads (timers, the main loop, the monitor) have none."""

from __future__ import annotations

import threading
from typing import Optional

_local = threading.local()


def set_current_cpu(index: Optional[int]) -> None:
    _local.index = index


def current_cpu() -> Optional[int]:
    """The index of the vCPU this thread runs, or None."""
    return getattr(_local, "index", None)
