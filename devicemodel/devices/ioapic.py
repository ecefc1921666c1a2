"""The I/O APIC (Intel 82093AA datasheet) at 0xfec00000 with 24 input pins, as QEMU's
(hw/intc/ioapic.c, version 0x20: with the EOI register).

Registers, through the index register IOREGSEL (offset 0x00) and the data window IOWIN
(0x10, 32-bit accesses only); the 4 KiB region repeats them every 256 bytes:

    0x00 ID (bits 27:24)       0x01 version: 0x170020 (version 0x20, 24 entries)
    0x02 arbitration ID (the ID, as QEMU reads it)
    0x10 + 2n, 0x11 + 2n  redirection entry n, low and high halves

An EOI register at 0x40 takes a vector: the explicit EOI of version 0x20, the same as an
EOI broadcast from a local APIC.

Redirection entry: vector (7:0), delivery mode (10:8: fixed, lowest priority, SMI, NMI,
INIT, ExtINT), destination mode (11, logical), delivery status (12, read-only, always 0:
delivery is instant), polarity (13; stored, as in QEMU: pin levels are given as
asserted/deasserted), remote IRR (14, read-only), trigger mode (15, level), mask (16),
destination (63:56). Every entry starts masked.

Pins: an edge-triggered pin delivers on a rising edge while unmasked (edges on a masked
pin are lost). A level-triggered pin delivers while asserted and unmasked unless its
remote IRR is set; delivery sets remote IRR, and an EOI for its vector clears it and
delivers again if the pin is still asserted. Writing an entry delivers what its pin has
pending, and an edge-triggered entry has no remote IRR. Messages go out on the APIC bus
as an MSI would (``bus.deliver``).
"""

from __future__ import annotations

from devicemodel.address_space import Region

IOAPIC_BASE = 0xFEC00000
IOAPIC_SIZE = 0x1000
NUM_PINS = 24
VERSION = 0x20

IOREGSEL, IOWIN, IOEOI = 0x00, 0x10, 0x40
REG_ID, REG_VERSION, REG_ARB, REG_REDTBL = 0x00, 0x01, 0x02, 0x10

ENTRY_LOGICAL = 1 << 11
ENTRY_DELIVERY_STATUS = 1 << 12
ENTRY_POLARITY_LOW = 1 << 13
ENTRY_REMOTE_IRR = 1 << 14
ENTRY_LEVEL = 1 << 15
ENTRY_MASKED = 1 << 16
ENTRY_READ_ONLY = ENTRY_DELIVERY_STATUS | ENTRY_REMOTE_IRR
MASK64 = (1 << 64) - 1
DELIVERY_MODE_NAMES = ("fixed", "lowest", "SMI", "...", "NMI", "INIT", "...", "extINT")


class IoApic:
    def __init__(self, bus, base: int = IOAPIC_BASE, name: str = "ioapic"):
        self.bus = bus
        self.region = Region(base=base, size=IOAPIC_SIZE, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4))
        self.reset()

    def reset(self) -> None:
        self.id = 0
        self.ioregsel = 0
        self.irr = 0                         # pins asserted (level) or edges waiting (edge)
        self.levels = 0                      # each pin's input level
        self.entries = [ENTRY_MASKED] * NUM_PINS

    def monitor_info(self) -> str:
        """``info pic``'s I/O APIC part, laid out as QEMU's ioapic_print_redtbl()."""
        lines = [f"ioapic0: ver=0x{VERSION:x} id=0x{self.id:02x} sel=0x{self.ioregsel:02x}"
                 + (f" (redir[{(self.ioregsel - REG_REDTBL) >> 1}])" if self.ioregsel else "")]
        remote_irr = 0
        for pin, entry in enumerate(self.entries):
            logical = bool(entry & ENTRY_LOGICAL)
            dest = (entry >> 56) & (0xFF if logical else 0xF)
            lines.append(f"  pin {pin:<2} 0x{entry:016x} dest={dest:x} vec={entry & 0xFF:<3} "
                         f"{'active-lo' if entry & ENTRY_POLARITY_LOW else 'active-hi'} "
                         f"{'level' if entry & ENTRY_LEVEL else 'edge':<5} "
                         f"{'masked' if entry & ENTRY_MASKED else '':<6} "
                         f"{DELIVERY_MODE_NAMES[(entry >> 8) & 7]:<6} "
                         f"{'logical' if logical else 'physical'}")
            if entry & ENTRY_LEVEL and entry & ENTRY_REMOTE_IRR:
                remote_irr |= 1 << pin
        for name, bitmap in (("  IRR", self.irr), ("  Remote IRR", remote_irr)):
            pins = " ".join(f"{pin:<2}" for pin in range(NUM_PINS) if bitmap >> pin & 1)
            lines.append(f"{name:<10} " + (pins + " " if pins else "(none)"))
        return "\n".join(lines) + "\n"

    # ---- registers ---------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        offset &= 0xFF
        if offset == IOREGSEL:
            return self.ioregsel & ((1 << (8 * size)) - 1)
        if offset == IOWIN and size == 4:
            return self._read_window()
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        offset &= 0xFF
        if offset == IOREGSEL:
            self.ioregsel = value & 0xFF
        elif offset == IOWIN and size == 4:
            self._write_window(value)
        elif offset == IOEOI and size == 4:
            self.eoi(value & 0xFF)

    def _read_window(self) -> int:
        index = self.ioregsel
        if index in (REG_ID, REG_ARB):
            return self.id << 24
        if index == REG_VERSION:
            return VERSION | ((NUM_PINS - 1) << 16)
        pin = (index - REG_REDTBL) >> 1
        if 0 <= pin < NUM_PINS:
            entry = self.entries[pin]
            return (entry >> 32 if index & 1 else entry) & 0xFFFFFFFF
        return 0

    def _write_window(self, value: int) -> None:
        index = self.ioregsel
        if index == REG_ID:
            self.id = (value >> 24) & 0xF
            return
        pin = (index - REG_REDTBL) >> 1
        if index < REG_REDTBL or pin >= NUM_PINS:
            return
        entry = self.entries[pin]
        if index & 1:
            new = (entry & 0xFFFFFFFF) | (value << 32)
        else:
            new = (entry & ~0xFFFFFFFF & MASK64) | value
        new = (new & ~ENTRY_READ_ONLY) | (entry & ENTRY_READ_ONLY)
        if not new & ENTRY_LEVEL:
            new &= ~ENTRY_REMOTE_IRR
        self.entries[pin] = new
        self._service()

    # ---- pins --------------------------------------------------------------------------------

    def set_irq(self, pin: int, level: int) -> None:
        """Drive input ``pin`` to ``level`` (1 asserted)."""
        if not 0 <= pin < NUM_PINS:
            raise ValueError(f"I/O APIC pin {pin} out of range 0..{NUM_PINS - 1}")
        bit = 1 << pin
        was = self.levels & bit
        self.levels = (self.levels | bit) if level else (self.levels & ~bit)
        entry = self.entries[pin]
        if entry & ENTRY_LEVEL:
            if level:
                self.irr |= bit
                if not entry & ENTRY_REMOTE_IRR:
                    self._service()
            else:
                self.irr &= ~bit
        elif level and not was and not entry & ENTRY_MASKED:
            self.irr |= bit
            self._service()

    def _service(self) -> None:
        for pin in range(NUM_PINS):
            bit = 1 << pin
            entry = self.entries[pin]
            if not self.irr & bit or entry & ENTRY_MASKED:
                continue
            if entry & ENTRY_LEVEL:
                if entry & ENTRY_REMOTE_IRR:
                    continue
                self.entries[pin] = entry | ENTRY_REMOTE_IRR
            else:
                self.irr &= ~bit
            self.bus.deliver(dest=entry >> 56, logical=bool(entry & ENTRY_LOGICAL),
                             delivery_mode=(entry >> 8) & 7, vector=entry & 0xFF,
                             level_triggered=bool(entry & ENTRY_LEVEL))

    def eoi(self, vector: int) -> None:
        """An EOI for ``vector`` (a local APIC's broadcast or the EOI register): the
        level-triggered entries with that vector may deliver again."""
        for pin, entry in enumerate(self.entries):
            if entry & 0xFF == vector and entry & ENTRY_LEVEL and entry & ENTRY_REMOTE_IRR:
                self.entries[pin] = entry & ~ENTRY_REMOTE_IRR
                if not entry & ENTRY_MASKED and self.irr & (1 << pin):
                    self._service()

    # ---- the monitor, snapshots ----------------------------------------------------------------

    def state_dump(self) -> dict:
        """What QEMU's ``info ioapic`` shows."""
        return {"id": self.id, "version": VERSION, "ioregsel": self.ioregsel, "irr": self.irr,
                "entries": list(self.entries)}

    def save_state(self) -> dict:
        return {"id": self.id, "ioregsel": self.ioregsel, "irr": self.irr, "levels": self.levels,
                "entries": list(self.entries)}

    def load_state(self, state: dict) -> None:
        self.id, self.ioregsel = state["id"], state["ioregsel"]
        self.irr, self.levels = state["irr"], state["levels"]
        self.entries = list(state["entries"])
