"""A conventional PCI function with a type-0 configuration header, after QEMU's
hw/pci/pci.c and the PCI Local Bus Specification 3.0 (chapter 6).

Configuration space: 256 bytes with, per byte, a mask of the bits the guest may write
(``wmask``) and a mask of the write-1-to-clear bits (``w1cmask``, the status register's
error bits); everything else is read-only. Writable by default, as QEMU has them: the
command register's I/O, memory, bus-master, parity, SERR and INTx-disable bits, the
cache line size, the latency timer, the interrupt line, and every device-specific byte
from 0x40 up except where a capability lies (its bits are read-only unless the
capability makes them writable).

BARs (``add_bar``): an I/O BAR or a 32- or 64-bit (optionally prefetchable) memory BAR
of a power-of-two size. Its address bits below the size are read-only zeros, so writing
all-ones and reading back gives the size (BAR sizing). The BAR is mapped into the bus's
port or memory address space, with priority 1 over other regions as QEMU maps BARs,
while the command register enables its space and its address is usable: not 0, not
wrapping, a 32-bit BAR below 4 GiB, an I/O BAR inside the 64 KiB port space. Every
write to the command register or a BAR re-evaluates the mappings.

Capabilities (``add_capability``) are chained from the capabilities pointer, newest
first; the status register's capability-list bit is set with the first. A capability
may ask to hear of configuration writes that touch it (MSI and MSI-X do).

INTx: ``set_irq(level)`` drives the function's interrupt pin (``interrupt_pin`` 1..4 =
INTA#..INTD#). The level shows in the status register's interrupt bit; the bus sees it
unless the command register's INTx-disable bit is set.

MSI: ``send_msi(address, data)`` is the message write of the function's MSI or MSI-X
capability. Like any DMA it needs the command register's bus-master bit (QEMU drops it
otherwise); the bus hands it to the APIC bus.

Subclasses react to configuration writes by overriding ``write_config`` (calling this
one first), as QEMU devices install a ``config_write``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from devicemodel.address_space import AddressSpace, Region
from devicemodel.pci import regs

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
BAR_PRIORITY = 1


@dataclass(eq=False)
class Bar:
    """One BAR: its register index, size, type bits and the region it maps."""

    index: int
    size: int
    flags: int                 # the low bits of the register: I/O, 64-bit, prefetchable
    region: Region
    mapped_at: Optional[int] = None

    @property
    def is_io(self) -> bool:
        return bool(self.flags & regs.BAR_SPACE_IO)

    @property
    def is_64(self) -> bool:
        return bool(self.flags & regs.BAR_MEM_TYPE_64)

    @property
    def offset(self) -> int:
        return regs.BASE_ADDRESS_0 + 4 * self.index


class PciDevice:
    """A PCI function; the bus it is plugged into maps its BARs and carries its INTx."""

    def __init__(self, *, vendor_id: int, device_id: int, class_code: int, revision: int = 0,
                 prog_if: int = 0, header_type: int = 0, interrupt_pin: int = 0,
                 subsystem: tuple[int, int] = (regs.SUBSYSTEM_VENDOR_QEMU, regs.SUBSYSTEM_QEMU),
                 name: str = "pci-device"):
        self.name = name
        self.config = bytearray(regs.CONFIG_SPACE_SIZE)
        self.wmask = bytearray(regs.CONFIG_SPACE_SIZE)
        self.w1cmask = bytearray(regs.CONFIG_SPACE_SIZE)
        self.bars: list[Optional[Bar]] = [None] * regs.NUM_BARS
        self.bus = None
        self.devfn: Optional[int] = None
        self.irq_level = 0
        self._cap_end = regs.STANDARD_HEADER_END
        self._cap_watchers: list[tuple[int, int, Callable[[], None]]] = []
        self.set(regs.VENDOR_ID, 2, vendor_id)
        self.set(regs.DEVICE_ID, 2, device_id)
        self.config[regs.REVISION_ID] = revision
        self.config[regs.CLASS_PROG] = prog_if
        self.set(regs.CLASS_DEVICE, 2, class_code)
        self.config[regs.HEADER_TYPE] = header_type
        self.set(regs.SUBSYSTEM_VENDOR_ID, 2, subsystem[0])
        self.set(regs.SUBSYSTEM_ID, 2, subsystem[1])
        self.config[regs.INTERRUPT_PIN] = interrupt_pin
        self.set_wmask(regs.COMMAND, 2, regs.COMMAND_IO | regs.COMMAND_MEMORY | regs.COMMAND_MASTER
                          | regs.COMMAND_PARITY | regs.COMMAND_SERR | regs.COMMAND_INTX_DISABLE)
        self.w1cmask[regs.STATUS:regs.STATUS + 2] = regs.STATUS_ERROR_BITS.to_bytes(2, "little")
        self.wmask[regs.CACHE_LINE_SIZE] = 0xFF
        self.wmask[regs.LATENCY_TIMER] = 0xFF
        self.wmask[regs.INTERRUPT_LINE] = 0xFF
        self.wmask[regs.STANDARD_HEADER_END:] = bytes([0xFF]) * (regs.CONFIG_SPACE_SIZE - regs.STANDARD_HEADER_END)

    # --- configuration space helpers ----------------------------------------------------

    def get(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def set(self, offset: int, size: int, value: int) -> None:
        self.config[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def set_wmask(self, offset: int, size: int, mask: int) -> None:
        self.wmask[offset:offset + size] = (mask & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    @property
    def command(self) -> int:
        return self.get(regs.COMMAND, 2)

    # --- the guest's side ----------------------------------------------------------------

    def read_config(self, offset: int, size: int) -> int:
        """``size`` bytes (1, 2 or 4) at ``offset``."""
        return self.get(offset, size)

    def write_config(self, offset: int, size: int, value: int) -> None:
        """Merge a write through the masks, then update what depends on it."""
        old_command = self.command
        for i in range(size):
            byte = (value >> (8 * i)) & 0xFF
            addr = offset + i
            wmask, w1c = self.wmask[addr], self.w1cmask[addr]
            self.config[addr] = ((self.config[addr] & ~wmask) | (byte & wmask)) & ~(byte & w1c) & 0xFF
        end = offset + size
        bars_end = regs.BASE_ADDRESS_0 + 4 * regs.NUM_BARS
        if offset < regs.COMMAND + 2 and regs.COMMAND < end:
            if (old_command ^ self.command) & regs.COMMAND_INTX_DISABLE:
                self._intx_disable_changed()
            self.update_mappings()
        elif offset < bars_end and regs.BASE_ADDRESS_0 < end:
            self.update_mappings()
        for cap_start, cap_end, written in self._cap_watchers:
            if offset < cap_end and cap_start < end:
                written()

    # --- BARs ------------------------------------------------------------------------

    def add_bar(self, index: int, size: int, *, io: bool = False, mem64: bool = False,
                prefetchable: bool = False, read=None, write=None, sizes=(1, 2, 4),
                impl_size: Optional[int] = None, space: Optional[AddressSpace] = None) -> Bar:
        """Declare BAR ``index``: its registers are ``read``/``write`` callbacks on the
        offset in the BAR, or the regions of ``space`` (a container of ``size`` bytes)."""
        if size & (size - 1) or size < (4 if io else 16):
            raise ValueError(f"BAR size {size:#x} is not a power of two of at least {4 if io else 16}")
        if io and (mem64 or prefetchable):
            raise ValueError("an I/O BAR is neither 64-bit nor prefetchable")
        wanted = {index, index + 1} if mem64 else {index}
        taken = {bar.index + half for bar in self.bars if bar for half in ((0, 1) if bar.is_64 else (0,))}
        if index < 0 or max(wanted) >= regs.NUM_BARS or wanted & taken:
            raise ValueError(f"BAR {index} is taken or out of range")
        if space is not None:
            read, write, sizes, impl_size = space.read, space.write, (1, 2, 4, 8), None
        flags = (regs.BAR_SPACE_IO if io else 0) | (regs.BAR_MEM_TYPE_64 if mem64 else 0) \
            | (regs.BAR_MEM_PREFETCH if prefetchable else 0)
        region = Region(base=0, size=size, name=f"{self.name}-bar{index}", read=read, write=write,
                        owner=self, sizes=sizes, impl_size=impl_size, priority=BAR_PRIORITY)
        bar = Bar(index, size, flags, region)
        self.bars[index] = bar
        offset = bar.offset
        self.set(offset, 4, flags)
        mask = ~(size - 1)
        if mem64:
            self.set(offset, 8, flags)
            self.set_wmask(offset, 8, mask)
        else:
            self.set_wmask(offset, 4, mask & MASK32)
        return bar

    def bar_address(self, bar: Bar) -> int:
        """The address programmed into ``bar`` (whether or not it is mapped)."""
        if bar.is_64:
            return self.get(bar.offset, 8) & ~(bar.size - 1)
        return self.get(bar.offset, 4) & ~(bar.size - 1) & MASK32

    def _usable_address(self, bar: Bar) -> Optional[int]:
        """Where ``bar`` should be mapped now, after QEMU's pci_bar_address(); None: nowhere."""
        enable = regs.COMMAND_IO if bar.is_io else regs.COMMAND_MEMORY
        if not self.command & enable:
            return None
        addr = self.bar_address(bar)
        last = addr + bar.size - 1
        # the port space ends at 64 KiB; a 32-bit BAR must end below 4 GiB - 1, a 64-bit
        # one below 2^64 - 1 (QEMU's "no wrapping" rule, which also leaves a BAR that
        # is being sized with all-ones unmapped)
        if bar.is_io:
            fits = last < self.bus.pio.size
        else:
            fits = last < (MASK64 if bar.is_64 else MASK32)
        return addr if addr and fits else None

    def update_mappings(self) -> None:
        """Map each BAR where its register and the command register say (QEMU's
        pci_update_mappings)."""
        if self.bus is None:
            return
        for bar in self.bars:
            if bar is None:
                continue
            new = self._usable_address(bar)
            if new == bar.mapped_at:
                continue
            space = self.bus.pio if bar.is_io else self.bus.mmio
            if bar.mapped_at is not None:
                space.remove_region(bar.region)
            bar.mapped_at = new
            if new is not None:
                bar.region.base = new
                space.add_region(bar.region, overlap=True)

    # --- capabilities ------------------------------------------------------------------

    def add_capability(self, cap_id: int, size: int, offset: Optional[int] = None,
                       written: Optional[Callable[[], None]] = None) -> int:
        """Chain a capability of ``size`` bytes at ``offset`` (or the next free dword);
        its first two bytes (ID, next pointer) are filled in, and all of it is read-only
        until the caller opens bits in ``wmask``. ``written()`` runs after each
        configuration write that touches it."""
        if offset is None:
            offset = (self._cap_end + 3) & ~3
        if offset < regs.STANDARD_HEADER_END or offset + size > regs.CONFIG_SPACE_SIZE or offset & 3:
            raise ValueError(f"capability at {offset:#x} (+{size}) does not fit the configuration space")
        self.wmask[offset:offset + size] = bytes(size)
        self.config[offset] = cap_id
        self.config[offset + 1] = self.config[regs.CAPABILITY_LIST]
        self.config[regs.CAPABILITY_LIST] = offset
        self.set(regs.STATUS, 2, self.get(regs.STATUS, 2) | regs.STATUS_CAP_LIST)
        self._cap_end = max(self._cap_end, offset + size)
        if written is not None:
            self._cap_watchers.append((offset, offset + size, written))
        return offset

    def find_capability(self, cap_id: int) -> Optional[int]:
        offset = self.config[regs.CAPABILITY_LIST]
        seen = set()
        while offset and offset not in seen:
            seen.add(offset)
            if self.config[offset] == cap_id:
                return offset
            offset = self.config[offset + 1]
        return None

    # --- INTx ----------------------------------------------------------------------------

    @property
    def intx_disabled(self) -> bool:
        return bool(self.command & regs.COMMAND_INTX_DISABLE)

    def set_irq(self, level: int) -> None:
        """Drive the interrupt pin (QEMU's pci_set_irq)."""
        level = 1 if level else 0
        if not self.config[regs.INTERRUPT_PIN]:
            raise RuntimeError(f"{self.name} has no interrupt pin")
        if level == self.irq_level:
            return
        self.irq_level = level
        status = self.get(regs.STATUS, 2)
        self.set(regs.STATUS, 2, status | regs.STATUS_INTERRUPT if level else status & ~regs.STATUS_INTERRUPT)
        if not self.intx_disabled and self.bus is not None:
            self.bus.intx_changed(self, level)

    def _intx_disable_changed(self) -> None:
        """INTx-disable toggled: the bus sees the pin go away or come back."""
        if self.irq_level and self.bus is not None:
            self.bus.intx_changed(self, 0 if self.intx_disabled else 1)

    def send_msi(self, address: int, data: int) -> None:
        """Write an MSI message (QEMU's msi_send_message)."""
        if self.bus is None or self.bus.deliver_msi is None or not self.command & regs.COMMAND_MASTER:
            return
        self.bus.deliver_msi(address, data)

    @property
    def pin_index(self) -> int:
        """INTA# = 0 .. INTD# = 3."""
        return self.config[regs.INTERRUPT_PIN] - 1

    def save_state(self) -> dict:
        return {"config": bytes(self.config), "irq_level": self.irq_level}

    def load_state(self, state: dict) -> None:
        self.config[:] = state["config"]
        self.irq_level = state["irq_level"]
        self.update_mappings()
