"""QEMU's isa-debugcon: a write-only console port (Bochs' port 0xe9 hack).

Each byte written goes to the chardev backend (``chardev.write(bytes)``); a read
returns ``readback`` (0xe9 by default), so a guest can detect the device. Only byte
accesses are valid.
"""

from __future__ import annotations

from devicemodel.address_space import Region


class Debugcon:
    def __init__(self, chardev, iobase: int = 0xE9, readback: int = 0xE9,
                 name: str = "isa-debugcon"):
        self.chardev = chardev
        self.iobase = iobase
        self.readback = readback
        self.region = Region(base=iobase, size=1, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1,))
        self.regions = (self.region,)

    def read(self, offset: int, size: int) -> int:
        return self.readback

    def write(self, offset: int, size: int, value: int) -> None:
        self.chardev.write(bytes((value & 0xFF,)))
