"""A NIC joined to its ``-netdev`` backend (QEMU's pair of peer NetClientStates).

The NIC sees its peer as ``can_send()``/``send(frame)`` (frames the guest transmits;
called on a vCPU thread under the big lock) and ``receive_ready()`` (the guest gave it
receive buffers, or its link came up). The NIC itself has ``receive(frame) -> bool``
(True: the frame was taken or dropped; False: not now, no buffers) and ``tx_ready()``
(the backend can take frames again), both called under the big lock.

A backend thread's frame waits in ``deliver`` until the NIC takes it -- the thread reads
nothing more meanwhile, so the host side is held back as QEMU's can_receive holds it:
a TCP peer's sends block, a tap interface's queue fills. ``receive_ready()`` wakes it.
"""

from __future__ import annotations

import threading

HOLD_POLL = 1.0      # seconds between a held frame's looks at close()


class NoPeer:
    """A NIC without ``netdev=``: what it sends goes nowhere, nothing arrives."""

    def can_send(self) -> bool:
        return True

    def send(self, frame: bytes) -> None:
        pass

    def receive_ready(self) -> None:
        pass


class NetPort:
    def __init__(self, nic, netdev, bql):
        self.nic = nic
        self.netdev = netdev
        self.bql = bql
        self._ready = threading.Condition(bql)
        self._closed = False

    # --- the NIC's side (under the big lock) ---------------------------------------

    def can_send(self) -> bool:
        return self.netdev.can_send()

    def send(self, frame: bytes) -> None:
        self.netdev.send(frame)

    def receive_ready(self) -> None:
        self._ready.notify_all()

    # --- the backend's side (its own threads) --------------------------------------

    def deliver(self, frame: bytes) -> None:
        with self._ready:
            while not self._closed and not self.nic.receive(frame):
                self._ready.wait(HOLD_POLL)

    def writable(self) -> None:
        with self.bql:
            self.nic.tx_ready()

    def start(self) -> None:
        self.netdev.start(self)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
