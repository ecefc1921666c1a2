"""Clocks and timers for device models, after QEMU's QEMU_CLOCK_VIRTUAL and its timers.

A clock tells the time in nanoseconds and runs callbacks at deadlines::

    clock.now_ns() -> int
    handle = clock.schedule(deadline_ns, callback)   # callback() runs once, at or after it
    clock.cancel(handle)                             # or handle.cancel(); idempotent

A callback sees ``now_ns() >= deadline``; it may schedule and cancel timers. Timers
with equal deadlines run in the order they were scheduled.

Two clocks:

* ``VirtualClock``: time moves only when told (``advance``); due callbacks run inside
  ``advance`` with the time set to each one's deadline in turn. For tests and for
  deterministic runs.
* ``HostClock``: the host's monotonic time since the clock started, paused while the VM
  is stopped (``pause``/``resume``), with a thread (``start``) that runs due callbacks
  holding the device model's big lock.

Devices keep one ``DeviceTimer`` per timer they own (QEMU's ``timer_mod``/``timer_del``):
arming it again replaces the old deadline.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable, Optional

NS_PER_SEC = 1_000_000_000


class TimerHandle:
    """One scheduled callback; ``cancel()`` keeps it from running."""

    __slots__ = ("deadline_ns", "callback", "cancelled")

    def __init__(self, deadline_ns: int, callback: Callable[[], None]):
        self.deadline_ns = deadline_ns
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _TimerQueue:
    """A heap of handles by (deadline, order scheduled); cancelled ones are dropped lazily."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, TimerHandle]] = []
        self._order = itertools.count()

    def schedule(self, deadline_ns: int, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(int(deadline_ns), callback)
        heapq.heappush(self._heap, (handle.deadline_ns, next(self._order), handle))
        return handle

    def cancel(self, handle: TimerHandle) -> None:
        handle.cancel()

    def next_deadline(self) -> Optional[int]:
        """The earliest live deadline, or None."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _pop_due(self, now_ns: int) -> Optional[TimerHandle]:
        deadline = self.next_deadline()
        if deadline is None or deadline > now_ns:
            return None
        handle = heapq.heappop(self._heap)[2]
        handle.cancelled = True  # it has run: a later cancel() is a no-op
        return handle


class VirtualClock(_TimerQueue):
    """A clock that stands still until ``advance`` moves it."""

    def __init__(self, start_ns: int = 0):
        super().__init__()
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns``, running every callback that falls due on the way."""
        self.advance_to(self._now + ns)

    def advance_to(self, target_ns: int) -> None:
        if target_ns < self._now:
            raise ValueError(f"time cannot go back from {self._now} to {target_ns} ns")
        while True:
            handle = self._pop_due(target_ns)
            if handle is None:
                break
            self._now = max(self._now, handle.deadline_ns)
            handle.callback()
        self._now = target_ns

    def save_state(self) -> dict:
        return {"now_ns": self._now}

    def load_state(self, state: dict) -> None:
        self._now = state["now_ns"]


class HostClock(_TimerQueue):
    """Host monotonic time from 0 at creation, stopped while paused.

    ``start()`` runs a thread that fires due callbacks, each with ``lock`` held (the
    device model's big lock); devices call ``schedule``/``cancel`` with that lock held.
    """

    def __init__(self, lock: Optional[threading.Lock] = None):
        super().__init__()
        self._lock = lock
        self._cond = threading.Condition()
        self._offset = -time.monotonic_ns()  # now_ns() = monotonic_ns() + offset while running
        self._paused_at: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._wake_at: Optional[int] = None   # while the thread waits: until when (None: a notify)

    def now_ns(self) -> int:
        paused_at = self._paused_at
        if paused_at is not None:
            return paused_at
        return time.monotonic_ns() + self._offset

    def pause(self) -> None:
        """Stop time (the VM is stopped): no deadline passes until ``resume``."""
        with self._cond:
            if self._paused_at is None:
                self._paused_at = self.now_ns()

    def resume(self) -> None:
        with self._cond:
            if self._paused_at is not None:
                self._offset = self._paused_at - time.monotonic_ns()
                self._paused_at = None
                self._cond.notify()

    def schedule(self, deadline_ns: int, callback: Callable[[], None]) -> TimerHandle:
        with self._cond:
            handle = super().schedule(deadline_ns, callback)
            if self._wake_at is None or handle.deadline_ns < self._wake_at:
                self._cond.notify()  # the thread has to wake earlier (a wakeup is dear)
            return handle

    def run_due(self) -> int:
        """Run the callbacks that are due now (with the lock, if any); how many ran."""
        ran = 0
        while True:
            if self._lock is not None:
                self._lock.acquire()
            try:
                with self._cond:
                    handle = self._pop_due(self.now_ns())
                if handle is None:
                    return ran
                handle.callback()
                ran += 1
            finally:
                if self._lock is not None:
                    self._lock.release()

    def start(self) -> None:
        """Fire due callbacks from a thread of their own until ``stop()``."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    deadline = self.next_deadline()
                    if deadline is not None and self._paused_at is None:
                        delay = deadline - self.now_ns()
                        if delay <= 0:
                            break
                        self._wake_at = deadline
                        self._cond.wait(delay / NS_PER_SEC)
                    else:
                        self._wake_at = None
                        self._cond.wait()
                if self._stopping:
                    return
            self.run_due()

    def save_state(self) -> dict:
        return {"now_ns": self.now_ns()}

    def load_state(self, state: dict) -> None:
        """Continue from a saved time (a snapshot's), paused or running as now."""
        with self._cond:
            if self._paused_at is not None:
                self._paused_at = state["now_ns"]
            else:
                self._offset = state["now_ns"] - time.monotonic_ns()
            self._cond.notify()


class DeviceTimer:
    """A device's one timer on a clock: ``arm(deadline)`` replaces any earlier deadline."""

    def __init__(self, clock, callback: Callable[[], None]):
        self.clock = clock
        self.callback = callback
        self._handle: Optional[TimerHandle] = None

    @property
    def deadline_ns(self) -> Optional[int]:
        """The pending deadline, or None when the timer is idle."""
        handle = self._handle
        if handle is None or handle.cancelled:
            return None
        return handle.deadline_ns

    def arm(self, deadline_ns: int) -> None:
        self.cancel()
        self._handle = self.clock.schedule(deadline_ns, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self.clock.cancel(self._handle)
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self.callback()
