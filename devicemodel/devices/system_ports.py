"""Small PC system ports: System Control Port A (0x92), the POST code port (0x80) and the
Reset Control Register (0xcf9), as QEMU's pc machine has them (hw/i386/port92.c,
ioport80 in hw/i386/pc.c, the PIIX3 RCR in hw/isa/piix.c).

Resets go through ``request_reset(hard)``: ``hard`` for a platform reset, not for a
CPU-only (INIT-style) reset. A20 goes through ``set_a20(level)``.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.address_space import Region

PORT92_RESET = 0x01      # a 0 -> 1 transition resets the CPU ("fast reset")
PORT92_A20 = 0x02        # fast A20 gate

RCR_SYS_RST = 0x02       # reset type: 1 = hard (platform) reset, 0 = soft (CPU INIT)
RCR_RST_CPU = 0x04       # setting it starts the reset
RCR_FULL_RST = 0x08      # with SYS_RST: a full (power-cycle) reset, a hard one here


def _no_a20(level: int) -> None:
    pass


def _no_reset(hard: bool) -> None:
    pass


class Port92:
    """System Control Port A: bit 1 drives A20, a rising bit 0 resets the CPU."""

    def __init__(self, set_a20: Callable[[int], None] = _no_a20,
                 request_reset: Callable[[bool], None] = _no_reset,
                 iobase: int = 0x92, name: str = "port92"):
        self.set_a20 = set_a20
        self.request_reset = request_reset
        self.region = Region(base=iobase, size=1, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1)
        self.regions = (self.region,)
        self.value = 0

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        old, self.value = self.value, value
        self.set_a20((value >> 1) & 1)
        if value & PORT92_RESET and not old & PORT92_RESET:
            self.request_reset(False)

    def reset(self) -> None:
        self.value &= ~PORT92_RESET   # A20 keeps its state, as in QEMU

    def save_state(self) -> dict:
        return {"value": self.value}

    def load_state(self, state: dict) -> None:
        self.value = state["value"]


class PostCodePort:
    """Port 0x80: firmware writes its POST progress codes here (and Linux writes here to
    delay I/O). Writes are counted and the last value kept; reads return all ones."""

    def __init__(self, iobase: int = 0x80, name: str = "ioport80"):
        self.region = Region(base=iobase, size=1, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4))
        self.regions = (self.region,)
        self.count = 0
        self.last: Optional[int] = None

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        self.count += 1
        self.last = value

    def save_state(self) -> dict:
        return {"count": self.count, "last": self.last}

    def load_state(self, state: dict) -> None:
        self.count = state["count"]
        self.last = state["last"]


class ResetControl:
    """The Reset Control Register at 0xcf9: a write with RST_CPU set resets (hard when
    SYS_RST is set: 0x06, 0x0e); other writes keep the reset type, which reads back.

    On a real PC 0xcf9 is a byte inside the PCI configuration address register's dword
    at 0xcf8: byte accesses to 0xcf9 reach this register, others the PCI host bridge.
    The region has priority 1 over the host's, as in QEMU.
    """

    def __init__(self, request_reset: Callable[[bool], None] = _no_reset,
                 iobase: int = 0xCF9, name: str = "reset-control"):
        self.request_reset = request_reset
        self.region = Region(base=iobase, size=1, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1, priority=1)
        self.regions = (self.region,)
        self.value = 0

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        if value & RCR_RST_CPU:
            self.request_reset(bool(value & RCR_SYS_RST))
            return
        self.value = value & RCR_SYS_RST

    def reset(self) -> None:
        self.value = 0

    def save_state(self) -> dict:
        return {"value": self.value}

    def load_state(self, state: dict) -> None:
        self.value = state["value"]
