"""The local APIC of one vCPU (Intel SDM Vol. 3, "Advanced Programmable Interrupt
Controller"), with QEMU's version register (0x50014: an integrated APIC, version 0x14,
six LVT entries: timer, thermal, performance counters, LINT0, LINT1, error; no CMCI).

Interfaces, by the mode IA32_APIC_BASE selects (bit 11 global enable, bit 10 x2APIC):

* xAPIC: the 4 KiB page at the APIC base (default 0xfee00000), reached by the vCPU that
  owns this APIC (``mmio_read``/``mmio_write``). Registers are 32 bits wide on 16-byte
  boundaries; a write must be one aligned 32-bit access (others are ignored, as KVM
  ignores them), reads may take part of a register. Offsets that hold no register
  read 0, are ignored, and set the ESR's illegal register address bit.
* x2APIC: MSRs 0x800 + offset / 16 (``msr_read``/``msr_write``, None/False for #GP).
  The ID is the 32-bit initial APIC ID and read-only, the LDR is derived from it (cluster
  ID[19:4] in bits 31:16, bit ID[3:0] below), there is no DFR, the ICR is one 64-bit MSR
  with a 32-bit destination, and SELF IPI (0x83f) sends a fixed interrupt to this APIC.
  RDMSR of a write-only or missing register, WRMSR of a read-only or missing one, and a
  WRMSR that sets a reserved bit (bits 63:32 of all but the ICR; a non-zero EOI or ESR
  write) raise #GP.

IA32_APIC_BASE moves between the modes as SDM "State Changes From xAPIC Mode to x2APIC
Mode" allows: disabled <-> xAPIC -> x2APIC -> disabled; x2APIC -> xAPIC, disabled ->
x2APIC, and EXTD without EN are #GP, like reserved bits. Disabling the APIC puts it back
in its power-up state; entering x2APIC mode sets the ID and LDR as above.

The register file is the architectural 4 KiB page itself (a buffer at the SDM offsets:
0x20 ID, 0x80 TPR, 0x100 ISR, 0x180 TMR, 0x200 IRR, ...): IRR, ISR, TMR and TPR are
read from it whenever they are needed, never cached, so that the page can become the
processor's virtual-APIC page (``use_page``). In x2APIC mode the 64-bit ICR is also
kept at 0x300-0x307, where RDMSR 830H reads it under APIC-register virtualization.

With APIC virtualization (``apicv``: devicemodel.cpu_apicv) the page is the vCPU's
virtual-APIC page and the processor runs part of the APIC: it serves register reads
from the page, takes TPR writes, delivers vectors from IRR (moving them to ISR) and
ends them on EOI, without the device model. Then a fixed interrupt is posted through
``apicv`` (the processor may be using the page at that moment), this model neither
acknowledges nor ends interrupts, and a register write reaches ``write_register``
after the processor stored it (an APIC-write VM exit): each register's value is made
again from the written one, never from the old one.

Interrupts: fixed interrupts set IRR (and TMR for level-triggered ones); the highest IRR
vector whose priority class is above the PPR's (the larger of TPR and the highest ISR
class) is what ``pending_vector`` offers and ``acknowledge`` moves to ISR. EOI clears the
highest ISR bit and, for a level-triggered vector, broadcasts the EOI to the I/O APICs.
A software-disabled APIC (SVR bit 8 clear) masks every LVT entry and drops fixed
interrupts, but still takes NMI, INIT and SIPI. Errors (send or receive of a vector below
16, an illegal register) accumulate and reach the ESR when software writes it; each new
error signals the LVT error entry.

The vCPU side is ``cpu`` (devicemodel.cpu_interrupts.CpuInterrupts): ``poke()`` when an
interrupt may have become deliverable, ``nmi()``, ``init()``, ``sipi(vector)``, ``extint()``.
"""

from __future__ import annotations

from typing import Optional

from devicemodel.devices.apic_timer import MODE_NAMES, ONE_SHOT, PERIODIC, TSC_DEADLINE, ApicTimer

PAGE_SIZE = 0x1000
DEFAULT_BASE = 0xFEE00000
VERSION = 0x00050014
MAX_PHYS_BITS = 40                     # CPUID 0x80000008's physical address width

# IA32_APIC_BASE
BASE_BSP = 1 << 8
BASE_EXTD = 1 << 10
BASE_ENABLE = 1 << 11
BASE_ADDRESS_MASK = ((1 << MAX_PHYS_BITS) - 1) & ~0xFFF
MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0
X2APIC_MSR_BASE, X2APIC_MSR_END = 0x800, 0x900

DISABLED, XAPIC, X2APIC = "disabled", "xapic", "x2apic"

# Register offsets in the page
ID, VERSION_REG, TPR, APR, PPR, EOI, LDR, DFR, SVR = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0
ISR, TMR, IRR = 0x100, 0x180, 0x200
ESR = 0x280
ICR_LOW, ICR_HIGH = 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = 0x320, 0x330, 0x340, 0x350, 0x360, 0x370
LVTS = (LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR)
TIMER_INITIAL, TIMER_CURRENT, TIMER_DIVIDE = 0x380, 0x390, 0x3E0
SELF_IPI = 0x3F0

SHORTHAND_NONE, SHORTHAND_SELF, SHORTHAND_ALL, SHORTHAND_OTHERS = range(4)
SVR_ENABLE = 1 << 8
SVR_FOCUS_DISABLED = 1 << 9
LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

# Delivery modes (ICR, LVT, I/O APIC redirection entries, MSI data)
FIXED, LOWEST, SMI, NMI, INIT, STARTUP, EXTINT = 0, 1, 2, 4, 5, 6, 7
DELIVERY_MODE_NAMES = {FIXED: "Fixed", LOWEST: "LowPri", SMI: "SMI", NMI: "NMI", INIT: "INIT",
                       STARTUP: "SIPI", EXTINT: "ExtINT"}

# Writable bits (the rest are reserved, or read-only like the delivery status bit 12)
LVT_WRITABLE = {LVT_TIMER: 0x000700FF, LVT_THERMAL: 0x000107FF, LVT_PERF: 0x000107FF,
                LVT_LINT0: 0x0001A7FF, LVT_LINT1: 0x0001A7FF, LVT_ERROR: 0x000100FF}
LVT_READ_ONLY = (1 << 12) | (1 << 14)  # delivery status; remote IRR of LINT0/1
ICR_LOW_WRITABLE = 0x000CCFFF          # vector, mode, dest mode, level, trigger, shorthand
TIMER_MODE_SHIFT = 17
TIMER_TSC_DEADLINE_BIT = 2 << TIMER_MODE_SHIFT
SVR_WRITABLE = 0x3FF                   # vector, APIC software enable, focus processor checking

# The registers of each mode and the accesses they take ("r", "w", "rw")
_COMMON = {ID: "r", VERSION_REG: "r", TPR: "rw", PPR: "r", EOI: "w", LDR: "r", SVR: "rw", ESR: "rw",
           ICR_LOW: "rw", **{lvt: "rw" for lvt in LVTS}, TIMER_INITIAL: "rw", TIMER_CURRENT: "r",
           TIMER_DIVIDE: "rw", **{base + 0x10 * i: "r" for base in (ISR, TMR, IRR) for i in range(8)}}
XAPIC_ACCESS = {**_COMMON, ID: "rw", APR: "r", LDR: "rw", DFR: "rw", ICR_HIGH: "rw"}
X2APIC_ACCESS = {**_COMMON, SELF_IPI: "w"}

# x2APIC: bits a WRMSR may set in each writable register (others #GP)
X2APIC_WRITABLE = {TPR: 0xFF, EOI: 0, SVR: SVR_WRITABLE, ESR: 0, TIMER_INITIAL: 0xFFFFFFFF,
                   TIMER_DIVIDE: 0xB, SELF_IPI: 0xFF,
                   **{lvt: LVT_WRITABLE[lvt] | LVT_READ_ONLY for lvt in LVTS}}
X2APIC_ICR_WRITABLE = 0xFFFFFFFF_000CDFFF   # the delivery status bit 12 is ignored


def _vector_location(base: int, vector: int) -> tuple[int, int]:
    return base + ((vector >> 5) << 4) + ((vector & 31) >> 3), 1 << (vector & 7)


class LocalApic:
    def __init__(self, apic_id: int, bus, clock, *, bsp: bool = False, x2apic: bool = True,
                 tsc_deadline: bool = True, page=None):
        self.initial_id = apic_id
        self.bus = bus
        self.cpu = None
        self.x2apic_supported = x2apic
        self.tsc_deadline_supported = tsc_deadline
        self.page = memoryview(page if page is not None else bytearray(PAGE_SIZE))
        self.apicv = None                      # devicemodel.cpu_apicv.CpuApicv, when the processor runs it
        self.timer = ApicTimer(clock, lambda: self.local_interrupt(LVT_TIMER))
        self.apic_base = DEFAULT_BASE | BASE_ENABLE | (BASE_BSP if bsp else 0)
        self._esr_pending = 0
        self._lint_levels = [0, 0]
        self.reset()

    # ---- the register page ----------------------------------------------------------------------

    def read32(self, offset: int) -> int:
        return int.from_bytes(self.page[offset:offset + 4], "little")

    def write32(self, offset: int, value: int) -> None:
        self.page[offset:offset + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")

    def _test(self, base: int, vector: int) -> bool:
        at, bit = _vector_location(base, vector)
        return bool(self.page[at] & bit)

    def _set(self, base: int, vector: int) -> None:
        at, bit = _vector_location(base, vector)
        self.page[at] |= bit

    def _clear(self, base: int, vector: int) -> None:
        at, bit = _vector_location(base, vector)
        self.page[at] &= ~bit & 0xFF

    def set_vector(self, base: int, vector: int, value: bool) -> None:
        """Set or clear ``vector``'s bit in ISR, TMR or IRR (``base``)."""
        (self._set if value else self._clear)(base, vector)

    def _highest(self, base: int) -> Optional[int]:
        for i in range(7, -1, -1):
            word = self.read32(base + 0x10 * i)
            if word:
                return 32 * i + word.bit_length() - 1
        return None

    def vectors(self, base: int) -> list[int]:
        """The vectors set in ISR, TMR or IRR (``base``), lowest first."""
        return [v for v in range(256) if self._test(base, v)]

    def use_page(self, page) -> None:
        """Move the register file into ``page`` (a 4 KiB buffer, e.g. a virtual-APIC page)."""
        page = memoryview(page)
        page[:PAGE_SIZE] = self.page[:PAGE_SIZE]
        self.page = page

    # ---- reset, mode ------------------------------------------------------------------------------

    def reset(self) -> None:
        """The power-up state of the registers (SDM "Local APIC State After Power-Up or Reset")."""
        x2apic_mode = self.apic_base & BASE_EXTD
        self.page[:PAGE_SIZE] = bytes(PAGE_SIZE)
        if self.apicv is not None:
            self.apicv.reset()
        self.write32(ID, self.initial_id if x2apic_mode else self.initial_id << 24)
        self.write32(VERSION_REG, VERSION)
        self.write32(DFR, 0xFFFFFFFF)
        self.write32(SVR, 0xFF)
        if x2apic_mode:
            self.write32(LDR, self._x2apic_ldr())
        for lvt in LVTS:
            self.write32(lvt, LVT_MASKED)
        self._esr_pending = 0
        self.timer.reset()

    def init_reset(self) -> None:
        """INIT: everything as after power-up except the APIC ID (and the APIC base and mode)."""
        apic_id = self.read32(ID)
        self.reset()
        self.write32(ID, apic_id)

    def firmware_setup(self) -> None:
        """What SeaBIOS leaves in the boot processor's APIC before it boots a kernel: the APIC
        software-enabled, LINT0 ExtINT (the 8259's INTR: virtual wire mode) and LINT1 NMI,
        both level-triggered."""
        self.write_register(SVR, self.read32(SVR) | SVR_ENABLE)
        self.write_register(LVT_LINT0, 0x8700)
        self.write_register(LVT_LINT1, 0x8400)

    @property
    def mode(self) -> str:
        if not self.apic_base & BASE_ENABLE:
            return DISABLED
        return X2APIC if self.apic_base & BASE_EXTD else XAPIC

    @property
    def base_address(self) -> int:
        return self.apic_base & BASE_ADDRESS_MASK

    @property
    def software_enabled(self) -> bool:
        return bool(self.read32(SVR) & SVR_ENABLE)

    def apic_id(self) -> int:
        """The ID the APIC answers to: 8 bits in xAPIC mode, 32 in x2APIC mode."""
        value = self.read32(ID)
        return value if self.mode == X2APIC else value >> 24

    def _copy_x2apic_icr_high(self) -> None:
        """The x2APIC ICR is 64 bits at 0x300 in the page, as RDMSR 830H reads it under
        APIC-register virtualization; ICR_HIGH keeps the destination for the rest."""
        self.write32(ICR_LOW + 4, self.read32(ICR_HIGH))

    def _x2apic_ldr(self) -> int:
        return ((self.initial_id >> 4) << 16) | (1 << (self.initial_id & 0xF))

    def set_apic_base(self, value: int) -> bool:
        """WRMSR IA32_APIC_BASE; False for #GP. The BSP flag is the processor's own."""
        reserved = ~(BASE_ADDRESS_MASK | BASE_ENABLE | BASE_BSP | (BASE_EXTD if self.x2apic_supported else 0))
        if value & reserved & ((1 << 64) - 1):
            return False
        new = (value & ~BASE_BSP) | (self.apic_base & BASE_BSP)
        old_mode = self.mode
        if new & BASE_EXTD and not new & BASE_ENABLE:
            return False
        if (old_mode == X2APIC and new & BASE_ENABLE and not new & BASE_EXTD) or \
                (old_mode == DISABLED and new & BASE_EXTD):
            return False
        self.apic_base = new
        if self.mode != old_mode:
            if self.mode == DISABLED:
                self.reset()
            elif self.mode == X2APIC:
                self.write32(ID, self.initial_id)
                self.write32(LDR, self._x2apic_ldr())
                self._copy_x2apic_icr_high()
            self._poke()
        return True

    # ---- register access ------------------------------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> int:
        """An xAPIC-mode read of ``size`` bytes at ``offset`` in the APIC page."""
        reg, within = offset & 0xFF0, offset & 0xF
        value = self.read_register(reg) if XAPIC_ACCESS.get(reg, "").startswith("r") else None
        if value is None:
            if reg != EOI:                       # EOI reads 0 without an error, as in QEMU
                self._error(ESR_ILLEGAL_REGISTER)
            return 0
        return (value >> (8 * within)) & ((1 << (8 * size)) - 1) if within < 4 else 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        """An xAPIC-mode write; only aligned 32-bit writes reach a register."""
        reg = offset & 0xFF0
        if size != 4 or offset & 0xF:
            return
        access = XAPIC_ACCESS.get(reg)
        if access is None:
            self._error(ESR_ILLEGAL_REGISTER)
        elif "w" in access:
            self.write_register(reg, value)

    def read_register(self, reg: int) -> int:
        """A register's value (the computed ones: PPR, current count)."""
        if reg == PPR:
            return self._update_ppr()
        if reg == TIMER_CURRENT:
            return self.timer.current_count()
        return self.read32(reg)

    def write_register(self, reg: int, value: int) -> None:
        """A guest write to a writable register: its writable bits go into the page, then it
        takes effect."""
        value &= 0xFFFFFFFF
        if reg == ID:
            value &= 0xFF000000
        elif reg == TPR:
            value &= 0xFF
        elif reg == LDR:
            value &= 0xFF000000
        elif reg == DFR:
            value |= 0x0FFFFFFF
        elif reg == SVR:
            value &= SVR_WRITABLE
        elif reg == ESR:
            value = self._esr_pending
            self._esr_pending = 0
        elif reg == ICR_LOW:
            value &= ICR_LOW_WRITABLE
        elif reg == ICR_HIGH:
            value &= 0xFF000000
        elif reg in LVT_WRITABLE:
            value = self._lvt_value(reg, value)
        elif reg == TIMER_DIVIDE:
            value &= 0xB
        elif reg == TIMER_INITIAL and self.timer.mode == TSC_DEADLINE:
            value = 0                                   # ignored in TSC-deadline mode: it stays 0
        if reg not in (EOI, SELF_IPI):
            self.write32(reg, value)
        self.register_written(reg, value)

    def _lvt_value(self, reg: int, value: int) -> int:
        # the read-only delivery status and remote IRR bits are always 0 here: delivery
        # is instant and level-triggered LINT inputs keep no remote IRR
        value &= LVT_WRITABLE[reg]
        if reg == LVT_TIMER and not self.tsc_deadline_supported:
            value &= ~TIMER_TSC_DEADLINE_BIT
        if not self.software_enabled:
            value |= LVT_MASKED
        return value

    def register_written(self, reg: int, value: int) -> None:
        """What a write of ``value`` to ``reg`` does once it is in the page (EOI and SELF IPI
        are not stored)."""
        if reg in (TPR, SVR, LVT_LINT0):
            if reg == SVR and not value & SVR_ENABLE:     # software-disabled: every LVT masked
                for lvt in LVTS:
                    self.write32(lvt, self.read32(lvt) | LVT_MASKED)
                self._timer_lvt_changed()
            self._update_ppr()
            self._poke()
        elif reg == EOI:
            self.eoi()
        elif reg == ICR_LOW:
            self._send_ipi()
        elif reg == SELF_IPI:
            if value & 0xFF < 16:
                self._error(ESR_SEND_ILLEGAL_VECTOR)
            else:
                self.bus.send_ipi(self, vector=value & 0xFF, delivery_mode=FIXED, shorthand=SHORTHAND_SELF)
        elif reg == LVT_TIMER:
            self._timer_lvt_changed()
        elif reg == TIMER_INITIAL:
            self.timer.set_initial_count(value)
        elif reg == TIMER_DIVIDE:
            self.timer.set_divide(value)

    def _timer_lvt_changed(self) -> None:
        lvt = self.read32(LVT_TIMER)
        mode = (lvt >> TIMER_MODE_SHIFT) & 3
        mode = TSC_DEADLINE if mode == 2 else PERIODIC if mode == 1 else ONE_SHOT
        if (mode == TSC_DEADLINE) != (self.timer.mode == TSC_DEADLINE):
            self.write32(TIMER_INITIAL, 0)      # a change to or from TSC-deadline mode disarms
        self.timer.set_lvt(mode, bool(lvt & LVT_MASKED))

    # ---- MSRs ------------------------------------------------------------------------------------------------

    def msr_read(self, index: int) -> Optional[int]:
        """RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register; None for #GP."""
        if index == MSR_APIC_BASE:
            return self.apic_base
        if index == MSR_TSC_DEADLINE:
            return self.timer.read_tsc_deadline() if self.tsc_deadline_supported else None
        reg = (index - X2APIC_MSR_BASE) << 4
        if self.mode != X2APIC or "r" not in X2APIC_ACCESS.get(reg, ""):
            return None
        if reg == ICR_LOW:
            return self.read32(ICR_LOW) | self.read32(ICR_HIGH) << 32
        return self.read_register(reg)

    def msr_write(self, index: int, value: int) -> bool:
        """WRMSR; False for #GP."""
        if index == MSR_APIC_BASE:
            return self.set_apic_base(value)
        if index == MSR_TSC_DEADLINE:
            if self.tsc_deadline_supported:
                self.timer.set_tsc_deadline(value)
            return self.tsc_deadline_supported
        reg = (index - X2APIC_MSR_BASE) << 4
        if self.mode != X2APIC or "w" not in X2APIC_ACCESS.get(reg, ""):
            return False
        if reg == ICR_LOW:
            if value & ~X2APIC_ICR_WRITABLE:
                return False
            self.write32(ICR_HIGH, value >> 32)
            self._copy_x2apic_icr_high()
            self.write_register(ICR_LOW, value)
            return True
        writable = X2APIC_WRITABLE[reg]
        if reg == LVT_TIMER and not self.tsc_deadline_supported:
            writable &= ~TIMER_TSC_DEADLINE_BIT
        if value & ~writable:
            return False
        self.write_register(reg, value)
        return True

    @staticmethod
    def serves_msr(index: int) -> bool:
        return index in (MSR_APIC_BASE, MSR_TSC_DEADLINE) or X2APIC_MSR_BASE <= index < X2APIC_MSR_END

    # ---- priorities, acceptance, EOI ------------------------------------------------------------------------

    def _ppr(self) -> int:
        tpr = self.read32(TPR) & 0xFF
        isr = self._highest(ISR) or 0
        return tpr if (tpr >> 4) >= (isr >> 4) else isr & 0xF0

    def _update_ppr(self) -> int:
        ppr = self._ppr()
        self.write32(PPR, ppr)
        return ppr

    def pending_vector(self) -> Optional[int]:
        """The vector the processor would take now: the highest IRR one above the PPR."""
        if not self.software_enabled:
            return None
        vector = self._highest(IRR)
        if vector is None or (vector & 0xF0) <= (self._update_ppr() & 0xF0):
            return None
        return vector

    def acknowledge(self) -> int:
        """The interrupt-acknowledge cycle: the pending vector moves from IRR to ISR (with
        none left, the spurious vector)."""
        vector = self.pending_vector()
        if vector is None:
            return self.read32(SVR) & 0xFF
        self._clear(IRR, vector)
        self._set(ISR, vector)
        self._update_ppr()
        return vector

    def eoi(self) -> None:
        vector = self._highest(ISR)
        if vector is None:
            return
        self._clear(ISR, vector)
        self._update_ppr()
        self.eoi_done(vector)

    def eoi_done(self, vector: int) -> None:
        """After the ISR bit of ``vector`` is cleared: a level-triggered vector's EOI goes to
        the I/O APICs, and a lower-priority interrupt may now be deliverable."""
        if self._test(TMR, vector):
            self.bus.broadcast_eoi(vector)
        self._poke()

    def accept_interrupt(self, vector: int, level_triggered: bool) -> None:
        """A fixed (or lowest-priority) interrupt arrives: it sets IRR, and TMR if level-triggered."""
        if not self.software_enabled:
            return
        if vector < 16:
            self._error(ESR_RECEIVE_ILLEGAL_VECTOR)
            return
        self.set_vector(TMR, vector, level_triggered)
        if self.apicv is not None:
            self.apicv.post(vector, level_triggered)
            return
        self._set(IRR, vector)
        self._poke()

    def is_focus_for(self, vector: int) -> bool:
        """Whether lowest-priority arbitration must pick this APIC: focus checking is on
        (SVR bit 9 clear) and ``vector`` is pending or in service here."""
        return not self.read32(SVR) & SVR_FOCUS_DISABLED and (self._test(IRR, vector) or self._test(ISR, vector))

    def accepts_pic_interrupts(self) -> bool:
        """Whether the 8259's INTR reaches this processor: the APIC is globally disabled, or
        LINT0 is an unmasked ExtINT entry (virtual wire mode)."""
        if self.mode == DISABLED:
            return True
        lint0 = self.read32(LVT_LINT0)
        return not lint0 & LVT_MASKED and (lint0 >> 8) & 7 == EXTINT

    def _poke(self) -> None:
        if self.cpu is not None:
            self.cpu.poke()

    # ---- local interrupt sources ------------------------------------------------------------------------------

    def local_interrupt(self, lvt: int) -> None:
        """A local source signals through its LVT entry (the timer, the error logic, LINT0/1)."""
        entry = self.read32(lvt)
        if entry & LVT_MASKED or self.mode == DISABLED:
            return
        mode = (entry >> 8) & 7 if lvt not in (LVT_TIMER, LVT_ERROR) else FIXED
        if mode == FIXED:
            self.accept_interrupt(entry & 0xFF, lvt in (LVT_LINT0, LVT_LINT1) and bool(entry & LVT_LEVEL))
        elif mode == NMI:
            self.receive(NMI)
        elif mode == INIT:
            self.receive(INIT)
        elif mode == EXTINT:
            self._poke()

    def set_lint(self, pin: int, level: int) -> None:
        """Drive LINT0 (the 8259's INTR) or LINT1 (the NMI line) to ``level``."""
        lvt = (LVT_LINT0, LVT_LINT1)[pin]
        old, self._lint_levels[pin] = self._lint_levels[pin], level
        entry = self.read32(lvt)
        if self.mode == DISABLED:
            if pin == 0:
                self._poke()
            elif level and not old:
                self.receive(NMI)                # without an APIC LINT1 is the processor's NMI pin
            return
        if (entry >> 8) & 7 == FIXED and entry & LVT_LEVEL:
            if level:
                self.local_interrupt(lvt)
            elif self.apicv is not None:
                self.apicv.retract(entry & 0xFF)
            else:
                self._clear(IRR, entry & 0xFF)
        elif (entry >> 8) & 7 == EXTINT:
            self._poke()
        elif level and not old:
            self.local_interrupt(lvt)

    def _error(self, bit: int) -> None:
        if self._esr_pending & bit:
            return                               # no new error: no new interrupt
        self._esr_pending |= bit
        self.local_interrupt(LVT_ERROR)

    # ---- messages from the APIC bus ---------------------------------------------------------------------------

    def receive(self, delivery_mode: int, vector: int = 0, level_triggered: bool = False) -> None:
        """A message for this APIC: an interrupt, NMI, INIT, SIPI or ExtINT (SMI is ignored)."""
        if delivery_mode in (FIXED, LOWEST):
            self.accept_interrupt(vector, level_triggered)
        elif self.cpu is None:
            return
        elif delivery_mode == NMI:
            self.cpu.nmi()
        elif delivery_mode == INIT:
            if self.apicv is None:    # else on the vCPU's thread, when it takes the INIT
                self.init_reset()
            self.cpu.init()
        elif delivery_mode == STARTUP:
            self.cpu.sipi(vector)
        elif delivery_mode == EXTINT:
            self.cpu.extint()

    def _send_ipi(self) -> None:
        low = self.read32(ICR_LOW)
        vector, delivery_mode = low & 0xFF, (low >> 8) & 7
        if delivery_mode in (FIXED, LOWEST) and vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)
            return
        if delivery_mode == INIT and not low & (1 << 14) and low & LVT_LEVEL:
            return                               # INIT level de-assert: arbitration IDs only
        if delivery_mode in (SMI, 3, EXTINT):
            return                               # SMIs are not modelled; 3 and ExtINT are reserved
        high = self.read32(ICR_HIGH)
        self.bus.send_ipi(self, vector=vector, delivery_mode=delivery_mode,
                          logical=bool(low & (1 << 11)), level_triggered=bool(low & LVT_LEVEL),
                          shorthand=(low >> 18) & 3, dest=high if self.mode == X2APIC else high >> 24)

    # ---- the monitor, snapshots ----------------------------------------------------------------------------------

    def state_dump(self) -> dict:
        """The registers, decoded where QEMU's ``info lapic`` decodes them."""
        return {
            "apic_id": self.apic_id(), "apic_base": self.apic_base, "mode": self.mode,
            "version": self.read32(VERSION_REG), "tpr": self.read32(TPR), "apr": self.read32(APR),
            "ppr": self._ppr(), "ldr": self.read32(LDR), "dfr": self.read32(DFR),
            "svr": self.read32(SVR), "esr": self.read32(ESR), "icr": self.read32(ICR_LOW),
            "icr2": self.read32(ICR_HIGH), "isr": self.vectors(ISR), "tmr": self.vectors(TMR),
            "irr": self.vectors(IRR),
            "lvt": {name: self.read32(reg) for name, reg in (
                ("timer", LVT_TIMER), ("thermal", LVT_THERMAL), ("perfmon", LVT_PERF),
                ("lint0", LVT_LINT0), ("lint1", LVT_LINT1), ("error", LVT_ERROR))},
            "timer": {"mode": MODE_NAMES[self.timer.mode], "dcr": self.read32(TIMER_DIVIDE),
                      "divide": 1 << self.timer.shift, "initial_count": self.read32(TIMER_INITIAL),
                      "current_count": self.timer.current_count(), "tsc_deadline": self.timer.tsc_deadline},
        }

    def monitor_info(self) -> str:
        """``info lapic``, laid out as QEMU's x86_cpu_dump_local_apic_state()."""
        d = self.state_dump()
        lines = [f"dumping local APIC state for CPU {self.initial_id:<2}", ""]
        for name, key in (("LVT0", "lint0"), ("LVT1", "lint1"), ("LVTPC", "perfmon"), ("LVTERR", "error"),
                          ("LVTTHMR", "thermal"), ("LVTT", "timer")):
            lines.append(_lvt_line(name, d["lvt"][key], d["timer"]["mode"] if key == "timer" else None))
        timer = d["timer"]
        lines.append(f"Timer\t DCR=0x{timer['dcr']:x} (divide by {timer['divide']}) initial_count = "
                     f"{timer['initial_count']} current_count = {timer['current_count']}")
        svr = d["svr"]
        lines.append(f"SPIV\t 0x{svr:08x} APIC {'enabled' if svr & SVR_ENABLE else 'disabled'}, "
                     f"focus={'off' if svr & SVR_FOCUS_DISABLED else 'on'}, spurious vec {svr & 0xFF}")
        icr = d["icr"]
        shorthand = ("no-shorthand", "self", "all-self", "all")[(icr >> 18) & 3]
        lines.append(f"ICR\t 0x{icr:08x} {'logical' if icr & (1 << 11) else 'physical'} "
                     f"{'level' if icr & LVT_LEVEL else 'edge'} {'assert' if icr & (1 << 14) else 'de-assert'} "
                     f"{shorthand}")
        lines.append(f"ICR2\t 0x{d['icr2']:08x}")
        lines.append(f"ESR\t 0x{d['esr']:08x}")
        for name in ("isr", "irr"):
            vectors = " ".join(f"{v}{'(level)' if v in d['tmr'] else ''}" for v in d[name])
            lines.append(f"{name.upper()}\t " + (vectors + " " if vectors else "(none)"))
        lines.append("")
        lines.append(f"APR 0x{d['apr']:02x} TPR 0x{d['tpr']:02x} DFR 0x{d['dfr'] >> 28:02x} "
                     f"LDR 0x{d['ldr'] >> 24:02x} PPR 0x{d['ppr']:02x}")
        return "\n".join(lines) + "\n"

    def save_state(self) -> dict:
        return {"registers": [self.read32(16 * i) for i in range(64)], "apic_base": self.apic_base,
                "esr_pending": self._esr_pending, "lint_levels": list(self._lint_levels),
                "timer": self.timer.save_state()}

    def load_state(self, state: dict) -> None:
        self.page[:PAGE_SIZE] = bytes(PAGE_SIZE)
        for i, value in enumerate(state["registers"]):
            self.write32(16 * i, value)
        self.apic_base = state["apic_base"]
        if self.mode == X2APIC:
            self._copy_x2apic_icr_high()
        if self.apicv is not None:
            self.apicv.reset()
        self._esr_pending = state["esr_pending"]
        self._lint_levels = list(state["lint_levels"])
        self.timer.load_state(state["timer"])
        self._poke()


def _lvt_line(name: str, lvt: int, timer_mode: Optional[str]) -> str:
    """One LVT entry as QEMU's dump_apic_lvt() prints it."""
    mode = (lvt >> 8) & 7
    text = f"{name}\t 0x{lvt:08x} {'active-lo' if lvt & (1 << 13) else 'active-hi'} " \
           f"{'level' if lvt & LVT_LEVEL else 'edge':<5}"
    text += " masked" * bool(lvt & LVT_MASKED) + " pending" * bool(lvt & (1 << 12))
    if timer_mode is not None:
        text += f" {timer_mode}"
    elif lvt & (1 << 14):
        text += " remoteIRR"
    text += f" {DELIVERY_MODE_NAMES.get(mode, '...')}"
    return text + ("" if mode == NMI else f" (vec {lvt & 0xFF})")
