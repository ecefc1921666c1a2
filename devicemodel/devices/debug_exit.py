"""QEMU's isa-debug-exit: a port that ends the VM with a status chosen by the guest.

A write of value ``v`` (any offset in the region, 1 to 4 bytes) ends the VM with exit
status ``(v << 1) | 1``, so a guest can report success or failure to a test harness but
can never produce status 0. Reads return 0.
"""

from __future__ import annotations

from typing import Callable

from devicemodel.address_space import Region


class DebugExit:
    """The device at ``iobase``..``iobase + iosize - 1``; ``request_exit(status)`` ends the VM."""

    def __init__(self, request_exit: Callable[[int], None], iobase: int = 0x501, iosize: int = 2,
                 name: str = "isa-debug-exit"):
        self.request_exit = request_exit
        self.iobase = iobase
        self.iosize = iosize
        self.region = Region(base=iobase, size=iosize, name=name, read=self.read,
                             write=self.write, owner=self, sizes=(1, 2, 4))
        self.regions = (self.region,)

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self.request_exit((value << 1) | 1)
