"""The machine's events, as QMP delivers them (QEMU's qapi events STOP, RESUME, RESET,
SHUTDOWN, POWERDOWN, BALLOON_CHANGE): ``emit(name, data)`` stamps an event with the wall-clock time and
hands it to every subscriber (the QMP sessions)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

# QEMU's ShutdownCause names (qapi/run-state.json), the "reason" of RESET and SHUTDOWN
HOST_QMP_QUIT = "host-qmp-quit"
HOST_QMP_SYSTEM_RESET = "host-qmp-system-reset"
HOST_SIGNAL = "host-signal"
HOST_UI = "host-ui"
GUEST_SHUTDOWN = "guest-shutdown"
GUEST_RESET = "guest-reset"
GUEST_CAUSES = (GUEST_SHUTDOWN, GUEST_RESET)


def event_record(name: str, data: Optional[dict] = None) -> dict:
    now = time.time()
    record = {"event": name, "timestamp": {"seconds": int(now), "microseconds": int(now * 1e6) % 1000000}}
    if data is not None:
        record["data"] = data
    return record


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[dict], None]] = []

    def subscribe(self, callback: Callable[[dict], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[dict], None]) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def emit(self, name: str, data: Optional[dict] = None) -> None:
        record = event_record(name, data)
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(record)
