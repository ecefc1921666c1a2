"""Output of a character-device backend gathered into batches.

A UART hands its backend one byte per guest OUT instruction. Writing each byte to a
pipe, terminal or socket at once costs a system call and, more, a wakeup of the
reader on the other side, for every byte (on a virtual machine's host a cross-CPU
wakeup is dear). ``OutputBatch`` keeps what is written and a thread of its own writes
it out ``delay`` seconds after the first byte of a batch, in one piece; ``flush()``
writes what is pending at once (a backend calls it when it closes)."""

from __future__ import annotations

import threading
import time
from typing import Callable

DELAY = 0.002   # seconds: well below what a person at a console notices


class OutputBatch:
    def __init__(self, send: Callable[[bytes], None], delay: float = DELAY):
        self._send = send
        self._delay = delay
        self._pending = bytearray()
        self._cond = threading.Condition()
        self._sending = threading.Lock()   # batches go out whole and in order
        self._thread = None
        self._closed = False

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                self._send(bytes(data))
                return
            first = not self._pending
            self._pending += data
            if first:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="chardev-out", daemon=True)
                    self._thread.start()
                self._cond.notify()

    def flush(self) -> None:
        with self._sending:
            with self._cond:
                data, self._pending = bytes(self._pending), bytearray()
            if data:
                self._send(data)

    def close(self) -> None:
        """Write what is pending; later writes go out at once."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            time.sleep(self._delay)
            self.flush()
