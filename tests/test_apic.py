"""The local APIC through its interfaces (xAPIC MMIO as one vCPU sees it, x2APIC MSRs,
IA32_APIC_BASE), its timer on a virtual clock, and IPIs on the APIC bus."""

import pytest

from devicemodel.apic_bus import ApicBus
from devicemodel.clock import VirtualClock
from devicemodel.cpu_memory import CpuMemory
from devicemodel.devices.apic import LocalApic
from devicemodel.address_space import AddressSpace

BASE = 0xFEE00000
ID, VER, TPR, APR, PPR, EOI, LDR, DFR, SVR = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0
ISR, TMR, IRR, ESR, ICR, ICR2 = 0x100, 0x180, 0x200, 0x280, 0x300, 0x310
LVTT, LVTTHM, LVTPC, LINT0, LINT1, LVTERR = 0x320, 0x330, 0x340, 0x350, 0x360, 0x370
TMICT, TMCCT, TDCR, SELF_IPI = 0x380, 0x390, 0x3E0, 0x3F0
MSR_APIC_BASE, MSR_TSC_DEADLINE = 0x1B, 0x6E0


def x2(reg):
    return 0x800 + (reg >> 4)


class Cpu:
    """What a local APIC tells its processor."""

    def __init__(self):
        self.events = []
        self.pokes = 0

    def poke(self):
        self.pokes += 1

    def nmi(self):
        self.events.append("nmi")

    def init(self):
        self.events.append("init")

    def sipi(self, vector):
        self.events.append(("sipi", vector))

    def extint(self):
        self.events.append("extint")


class Tsc:
    """A TSC at 2 GHz on the virtual clock."""
    khz = 2_000_000

    def __init__(self, clock):
        self.clock = clock

    def now(self):
        return self.clock.now_ns() * 2


class IoApicRecorder:
    def __init__(self):
        self.eois = []

    def eoi(self, vector):
        self.eois.append(vector)


class System:
    def __init__(self, cpus=2, **apic_args):
        self.clock = VirtualClock()
        self.bus = ApicBus()
        self.ioapic = IoApicRecorder()
        self.bus.add_ioapic(self.ioapic)
        self.mmio = AddressSpace("memory")
        self.apics, self.cpus, self.mem = [], [], []
        for i in range(cpus):
            apic = LocalApic(i, self.bus, self.clock, bsp=i == 0, **apic_args)
            apic.timer.tsc = Tsc(self.clock)
            apic.cpu = Cpu()
            self.bus.add_apic(apic)
            self.apics.append(apic)
            self.cpus.append(apic.cpu)
            self.mem.append(CpuMemory(self.mmio, apic))

    def read(self, cpu, reg, size=4):
        return self.mem[cpu].read(self.apics[cpu].base_address + reg, size)

    def write(self, cpu, reg, value, size=4):
        self.mem[cpu].write(self.apics[cpu].base_address + reg, size, value)

    def enable(self, cpu, svr=0x1FF):
        self.write(cpu, SVR, svr)

    def esr(self, cpu):
        self.write(cpu, ESR, 0)
        return self.read(cpu, ESR)

    def ipi(self, cpu, low, dest=0):
        self.write(cpu, ICR2, dest << 24)
        self.write(cpu, ICR, low)

    def x2apic(self, cpu):
        apic = self.apics[cpu]
        assert apic.msr_write(MSR_APIC_BASE, apic.apic_base | 0x400)


# ---- registers -----------------------------------------------------------------------------------

def test_power_up_values_and_each_cpu_sees_its_own_apic_at_the_same_address():
    s = System(cpus=3)
    for cpu in range(3):
        assert s.read(cpu, ID) == cpu << 24
        assert s.read(cpu, VER) == 0x00050014
        assert [s.read(cpu, r) for r in (TPR, APR, PPR, LDR, ESR, TMICT, TMCCT, TDCR)] == [0] * 8
        assert (s.read(cpu, DFR), s.read(cpu, SVR)) == (0xFFFFFFFF, 0xFF)
        assert [s.read(cpu, r) for r in (LVTT, LVTTHM, LVTPC, LINT0, LINT1, LVTERR)] == [0x10000] * 6
    assert s.apics[0].msr_read(MSR_APIC_BASE) == 0xFEE00900
    assert s.apics[1].msr_read(MSR_APIC_BASE) == 0xFEE00800


def test_firmware_setup_is_seabios_virtual_wire_mode():
    s = System(cpus=1)
    s.apics[0].firmware_setup()
    assert (s.read(0, SVR), s.read(0, LINT0), s.read(0, LINT1)) == (0x1FF, 0x8700, 0x8400)
    assert s.apics[0].accepts_pic_interrupts()


def test_writable_bits():
    s = System(cpus=1)
    s.enable(0, 0xFFFFFFFF)
    assert s.read(0, SVR) == 0x3FF
    for reg, value, expected in ((ID, 0xFFFFFFFF, 0xFF000000), (TPR, 0x1FF, 0xFF), (LDR, 0xFFFFFFFF, 0xFF000000),
                                 (DFR, 0x0, 0x0FFFFFFF), (ICR2, 0xFFFFFFFF, 0xFF000000), (TDCR, 0xFF, 0xB),
                                 (LVTT, 0xFFFFFFFF, 0x700FF), (LVTTHM, 0xFFFFFFFF, 0x107FF),
                                 (LVTPC, 0xFFFFFFFF, 0x107FF), (LINT0, 0xFFFFFFFF, 0x1A7FF),
                                 (LINT1, 0xFFFFFFFF, 0x1A7FF), (LVTERR, 0xFFFFFFFF, 0x100FF)):
        s.write(0, reg, value)
        assert s.read(0, reg) == expected, hex(reg)
    for reg in (VER, PPR, ISR, TMR, IRR, TMCCT):      # read-only: writes are ignored
        before = s.read(0, reg)
        s.write(0, reg, 0x12345678)
        assert s.read(0, reg) == before
    assert s.esr(0) == 0


def test_tsc_deadline_bit_is_reserved_without_the_feature():
    s = System(cpus=1, tsc_deadline=False)
    s.enable(0)
    s.write(0, LVTT, 0x60030)
    assert s.read(0, LVTT) == 0x20030
    assert s.apics[0].msr_read(MSR_TSC_DEADLINE) is None


def test_software_disabled_apic_masks_every_lvt_entry():
    s = System(cpus=1)
    s.write(0, LVTERR, 0x33)                            # disabled: the mask cannot be cleared
    assert s.read(0, LVTERR) == 0x10033
    s.enable(0)
    s.write(0, LVTERR, 0x33)
    s.write(0, LINT0, 0x700)
    assert (s.read(0, LVTERR), s.read(0, LINT0)) == (0x33, 0x700)
    s.write(0, SVR, 0xFF)
    assert (s.read(0, LVTERR), s.read(0, LINT0)) == (0x10033, 0x10700)


def test_partial_reads_and_ignored_writes():
    s = System(cpus=1)
    s.write(0, TPR, 0x5A)
    assert s.read(0, TPR + 0, 1) == 0x5A and s.read(0, VER + 2, 2) == 0x0005 and s.read(0, VER + 4) == 0
    s.write(0, TPR, 0x11, size=2)                       # not a 32-bit write
    s.write(0, TPR + 4, 0x11)                           # not at the register
    assert s.read(0, TPR) == 0x5A


def test_illegal_register_reaches_esr_when_software_writes_it():
    s = System(cpus=1)
    s.enable(0)
    s.write(0, LVTERR, 0x40)
    assert s.read(0, 0x2F0) == 0                        # CMCI: not implemented
    assert s.read(0, ESR) == 0                          # not yet: ESR is written first
    assert s.apics[0].vectors(IRR) == [0x40]            # the error interrupt
    assert s.esr(0) == 0x80 and s.esr(0) == 0


def test_eoi_reads_zero_without_error():
    s = System(cpus=1)
    assert s.read(0, EOI) == 0 and s.esr(0) == 0


# ---- interrupts, priorities, EOI ------------------------------------------------------------------

def test_priorities_and_eoi():
    s = System(cpus=1)
    apic = s.apics[0]
    apic.accept_interrupt(0x31, False)
    assert apic.pending_vector() is None                # software-disabled: dropped
    s.enable(0)
    for vector in (0x31, 0x35, 0x52):
        apic.accept_interrupt(vector, False)
    assert s.read(0, IRR + 0x10) == (1 << 0x11) | (1 << 0x15) and s.read(0, IRR + 0x20) == 1 << 0x12
    s.write(0, TPR, 0x60)
    assert apic.pending_vector() is None and s.read(0, PPR) == 0x60
    s.write(0, TPR, 0x40)
    assert apic.acknowledge() == 0x52
    assert s.read(0, PPR) == 0x50 and s.read(0, ISR + 0x20) == 1 << 0x12
    assert apic.pending_vector() is None                # 0x35 is below the in-service class
    s.write(0, TPR, 0)
    s.write(0, EOI, 0)
    assert s.read(0, ISR + 0x20) == 0 and s.read(0, PPR) == 0
    assert apic.acknowledge() == 0x35
    apic.accept_interrupt(0x36, False)
    assert apic.pending_vector() is None                # same class as the one in service
    assert apic.acknowledge() == 0xFF                   # nothing to take: the spurious vector
    s.write(0, EOI, 0)
    assert [apic.acknowledge(), apic.acknowledge()] == [0x36, 0xFF]
    s.write(0, EOI, 0)
    assert apic.acknowledge() == 0x31 and apic.vectors(ISR) == [0x31]
    assert s.ioapic.eois == []


def test_level_triggered_vector_sets_tmr_and_its_eoi_is_broadcast():
    s = System(cpus=1)
    s.enable(0)
    s.apics[0].accept_interrupt(0x44, True)
    assert s.read(0, TMR + 0x20) == 1 << 4
    assert s.apics[0].acknowledge() == 0x44
    s.write(0, EOI, 0)
    assert s.ioapic.eois == [0x44]


def test_receiving_an_illegal_vector_is_an_error():
    s = System(cpus=1)
    s.enable(0)
    s.apics[0].accept_interrupt(7, False)
    assert s.apics[0].vectors(IRR) == [] and s.esr(0) == 0x40


# ---- timer ----------------------------------------------------------------------------------------

def test_one_shot_timer_counts_down_with_the_divider_and_fires_once():
    s = System(cpus=1)
    s.enable(0)
    s.write(0, TDCR, 0x3)                               # divide by 16
    s.write(0, LVTT, 0x40)
    s.write(0, TMICT, 1000)
    s.clock.advance(160)
    assert s.read(0, TMCCT) == 990
    s.clock.advance(16000 - 161)
    assert s.apics[0].vectors(IRR) == []
    s.clock.advance(1)
    assert s.apics[0].vectors(IRR) == [0x40] and s.read(0, TMCCT) == 0
    s.apics[0].acknowledge()
    s.clock.advance(100_000)
    assert s.apics[0].vectors(IRR) == []


def test_periodic_timer_reloads_and_masking_keeps_it_counting():
    s = System(cpus=1)
    s.enable(0)
    s.write(0, TDCR, 0xB)                               # divide by 1
    s.write(0, LVTT, 0x20040)
    s.write(0, TMICT, 200_000)
    fired = 0
    for _ in range(10):
        s.clock.advance(100_000)
        if s.apics[0].pending_vector():
            s.apics[0].acknowledge()
            s.write(0, EOI, 0)
            fired += 1
    assert fired == 5
    s.clock.advance(50_000)
    assert s.read(0, TMCCT) == 150_000
    s.write(0, LVTT, 0x30040)                           # masked
    s.clock.advance(1_000_000)
    assert s.apics[0].vectors(IRR) == [] and s.read(0, TMCCT) == 150_000
    s.write(0, TMICT, 0)
    assert s.read(0, TMCCT) == 0


def test_divide_change_keeps_the_count():
    s = System(cpus=1)
    s.enable(0)
    s.write(0, TDCR, 0xB)
    s.write(0, LVTT, 0x40)
    s.write(0, TMICT, 1000)
    s.clock.advance(100)
    s.write(0, TDCR, 0x0)                               # divide by 2 from now on
    s.clock.advance(100)
    assert s.read(0, TMCCT) == 850


def test_tsc_deadline_timer():
    s = System(cpus=1)
    apic = s.apics[0]
    s.enable(0)
    assert apic.msr_write(MSR_TSC_DEADLINE, 5000) and apic.msr_read(MSR_TSC_DEADLINE) == 0   # not the mode
    s.write(0, TMICT, 100)
    s.write(0, LVTT, 0x40040)
    assert s.read(0, TMICT) == 0                        # entering the mode disarms the count
    s.write(0, TMICT, 100)                              # ignored in TSC-deadline mode
    assert s.read(0, TMICT) == 0 and s.read(0, TMCCT) == 0
    assert apic.msr_write(MSR_TSC_DEADLINE, 20_001)     # the TSC runs at 2 per ns
    assert apic.msr_read(MSR_TSC_DEADLINE) == 20_001
    s.clock.advance(10_000)
    assert apic.vectors(IRR) == []
    s.clock.advance(1)
    assert apic.vectors(IRR) == [0x40] and apic.msr_read(MSR_TSC_DEADLINE) == 0
    assert apic.msr_write(MSR_TSC_DEADLINE, 10 ** 9)
    s.write(0, LVTT, 0x40)                              # leaving the mode disarms the timer
    s.write(0, LVTT, 0x40040)
    s.clock.advance(10 ** 9)
    assert apic.msr_read(MSR_TSC_DEADLINE) == 0 and apic.vectors(IRR) == [0x40]


def test_tsc_deadline_in_the_past_fires_at_once():
    s = System(cpus=1)
    s.enable(0)
    s.write(0, LVTT, 0x40041)
    s.clock.advance(1000)
    s.apics[0].msr_write(MSR_TSC_DEADLINE, 1)
    s.clock.advance(0)
    assert s.apics[0].vectors(IRR) == [0x41]


# ---- IPIs -----------------------------------------------------------------------------------------

def test_fixed_ipi_physical_broadcast_and_shorthands():
    s = System(cpus=3)
    for cpu in range(3):
        s.enable(cpu)
    s.ipi(0, 0x4050, dest=2)
    assert [a.vectors(IRR) for a in s.apics] == [[], [], [0x50]]
    s.ipi(1, 0x4051, dest=0xFF)
    assert [a.vectors(IRR) for a in s.apics] == [[0x51], [0x51], [0x50, 0x51]]
    s.ipi(2, 0x44052)                                   # self
    s.ipi(1, 0xC4053)                                   # all excluding self
    s.ipi(0, 0x84054)                                   # all including self
    assert [a.vectors(IRR) for a in s.apics] == [[0x51, 0x53, 0x54], [0x51, 0x54], [0x50, 0x51, 0x52, 0x53, 0x54]]
    assert s.read(0, ICR) == 0x84054                    # the delivery status bit reads 0: sent


def test_send_illegal_vector_is_an_error_and_sends_nothing():
    s = System(cpus=2)
    s.enable(0)
    s.enable(1)
    s.ipi(0, 0x400F, dest=1)
    assert s.apics[1].vectors(IRR) == [] and s.esr(0) == 0x20


def test_logical_flat_and_cluster_destinations():
    s = System(cpus=4)
    for cpu in range(4):
        s.enable(cpu)
        s.write(cpu, LDR, (1 << cpu) << 24)
    s.ipi(0, 0x4860, dest=0b1010)
    assert [bool(a.vectors(IRR)) for a in s.apics] == [False, True, False, True]
    for cpu, ldr in enumerate((0x11, 0x12, 0x21, 0x22)):
        s.write(cpu, DFR, 0x0FFFFFFF)                   # cluster model
        s.write(cpu, LDR, ldr << 24)
    s.ipi(0, 0x4861, dest=0x23)
    assert [0x61 in a.vectors(IRR) for a in s.apics] == [False, False, True, True]
    s.ipi(0, 0x4862, dest=0xFF)
    assert all(0x62 in a.vectors(IRR) for a in s.apics)


def test_lowest_priority_goes_to_the_lowest_tpr_then_the_focus_processor():
    s = System(cpus=3)
    for cpu in range(3):
        s.enable(cpu)
        s.write(cpu, LDR, 1 << 24)
        s.write(cpu, TPR, (0x30, 0x10, 0x20)[cpu])
    s.ipi(0, 0x4970, dest=1)
    assert [a.vectors(IRR) for a in s.apics] == [[], [0x70], []]
    s.write(1, TPR, 0x40)
    s.ipi(0, 0x4971, dest=1)
    assert [a.vectors(IRR) for a in s.apics] == [[], [0x70], [0x71]]
    s.ipi(0, 0x4970, dest=1)                            # CPU 1 has 0x70 pending: the focus
    assert s.apics[2].vectors(IRR) == [0x71]


def test_nmi_init_sipi_and_what_is_ignored():
    s = System(cpus=2)
    s.enable(1)
    s.write(1, TPR, 0x20)
    s.ipi(0, 0x4400, dest=1)                            # NMI
    s.ipi(0, 0x4200, dest=1)                            # SMI: not modelled
    s.ipi(0, 0x8500, dest=1)                            # INIT level de-assert
    assert s.cpus[1].events == ["nmi"] and s.read(1, TPR) == 0x20
    s.write(1, ID, 7 << 24)
    s.ipi(0, 0x4500, dest=7)                            # INIT: the APIC resets, keeping its ID
    assert s.cpus[1].events == ["nmi", "init"]
    assert (s.read(1, ID), s.read(1, TPR), s.read(1, SVR)) == (7 << 24, 0, 0xFF)
    s.ipi(0, 0x4608, dest=7)
    assert s.cpus[1].events[-1] == ("sipi", 8)


def test_lint_inputs():
    s = System(cpus=1)
    apic = s.apics[0]
    apic.firmware_setup()
    apic.set_lint(1, 1)
    assert s.cpus[0].events == ["nmi"]
    s.write(0, LINT0, 0xA035)                           # fixed, level-triggered
    apic.set_lint(0, 1)
    assert apic.vectors(IRR) == [0x35] and apic.vectors(TMR) == [0x35]
    apic.set_lint(0, 0)
    assert apic.vectors(IRR) == []
    assert not apic.accepts_pic_interrupts()


def test_globally_disabled_apic_is_off_the_bus_and_lets_the_pic_through():
    s = System(cpus=2)
    s.enable(1)
    assert s.apics[1].msr_write(MSR_APIC_BASE, 0xFEE00000)
    assert s.apics[1].accepts_pic_interrupts()
    assert s.mem[1].read(BASE + VER, 4) == 0xFFFFFFFF  # the page is gone: unassigned
    s.enable(0)
    s.ipi(0, 0x84040)
    assert s.apics[1].vectors(IRR) == []
    assert s.apics[1].msr_write(MSR_APIC_BASE, 0xFEE00800)
    assert s.read(1, SVR) == 0xFF and s.read(1, ID) == 1 << 24   # back at its power-up state


def test_relocated_apic_base():
    s = System(cpus=2)
    assert s.apics[1].msr_write(MSR_APIC_BASE, 0xFED00800)
    assert s.mem[1].read(0xFED00000 + VER, 4) == 0x50014
    assert s.mem[0].read(0xFED00000 + VER, 4) == 0xFFFFFFFF
    assert s.mem[0].read(BASE + ID, 4) == 0


# ---- x2APIC ---------------------------------------------------------------------------------------

def test_x2apic_mode_registers():
    s = System(cpus=20)
    apic = s.apics[19]
    s.x2apic(19)
    assert apic.msr_read(x2(ID)) == 19
    assert apic.msr_read(x2(LDR)) == (1 << 16) | (1 << 3)
    assert apic.msr_read(x2(VER)) == 0x50014
    assert s.mem[19].read(BASE + VER, 4) == 0xFFFFFFFF   # no MMIO interface in x2APIC mode
    assert apic.msr_write(x2(SVR), 0x1FF) and apic.msr_read(x2(SVR)) == 0x1FF
    assert apic.msr_write(x2(TPR), 0x20) and apic.msr_read(x2(PPR)) == 0x20
    assert apic.msr_write(x2(ICR), (3 << 32) | 0x4000 | 0x55)
    assert apic.msr_read(x2(ICR)) == (3 << 32) | 0x4055
    assert apic.msr_write(x2(SELF_IPI), 0x66)
    assert apic.vectors(IRR) == [0x66]
    assert apic.acknowledge() == 0x66 and apic.msr_write(x2(EOI), 0)
    assert apic.msr_read(x2(ISR + 0x30)) == 0


@pytest.mark.parametrize("what, access", [
    ("write ID", ("w", ID, 0)), ("write version", ("w", VER, 0)), ("write PPR", ("w", PPR, 0)),
    ("write LDR", ("w", LDR, 0)), ("write ISR", ("w", ISR, 0)), ("write IRR", ("w", IRR, 0)),
    ("write current count", ("w", TMCCT, 0)), ("read EOI", ("r", EOI)), ("read SELF IPI", ("r", SELF_IPI)),
    ("read DFR", ("r", DFR)), ("write DFR", ("w", DFR, 0)), ("read APR", ("r", APR)),
    ("read ICR2", ("r", ICR2)), ("write ICR2", ("w", ICR2, 0)), ("read CMCI", ("r", 0x2F0)),
    ("read reserved", ("r", 0x40)), ("non-zero EOI", ("w", EOI, 1)), ("non-zero ESR", ("w", ESR, 1)),
    ("TPR bits 31:8", ("w", TPR, 0x100)), ("upper half", ("w", TPR, 1 << 32)),
    ("SVR reserved", ("w", SVR, 0x1000)), ("LVT reserved", ("w", LVTERR, 0x700)),
    ("divide reserved", ("w", TDCR, 0x4)), ("SELF IPI reserved", ("w", SELF_IPI, 0x100)),
    ("ICR reserved", ("w", ICR, 1 << 13)),
])
def test_x2apic_gp_cases(what, access):
    s = System(cpus=1)
    s.x2apic(0)
    apic = s.apics[0]
    if access[0] == "r":
        assert apic.msr_read(x2(access[1])) is None
    else:
        assert not apic.msr_write(x2(access[1]), access[2])


def test_x2apic_msrs_gp_in_xapic_mode():
    s = System(cpus=1)
    assert s.apics[0].msr_read(x2(VER)) is None
    assert not s.apics[0].msr_write(x2(TPR), 0)


@pytest.mark.parametrize("start, value", [
    ("x2apic", 0xFEE00800),        # x2APIC -> xAPIC
    ("disabled", 0xFEE00400),      # EXTD without EN
    ("disabled", 0xFEE00C00),      # disabled -> x2APIC
    ("xapic", 0xFEE00801),         # reserved bit 0
    ("xapic", 0xFEE00A00),         # reserved bit 9
    ("xapic", 1 << 40 | 0xFEE00800),   # beyond the physical address width
])
def test_apic_base_transitions_that_gp(start, value):
    s = System(cpus=1)
    apic = s.apics[0]
    if start == "x2apic":
        s.x2apic(0)
    elif start == "disabled":
        assert apic.msr_write(MSR_APIC_BASE, 0xFEE00000)
    before = apic.apic_base
    assert not apic.msr_write(MSR_APIC_BASE, value)
    assert apic.apic_base == before


def test_x2apic_needs_the_feature_and_the_bsp_flag_is_kept():
    s = System(cpus=2, x2apic=False)
    assert not s.apics[0].msr_write(MSR_APIC_BASE, 0xFEE00D00)
    assert s.apics[1].msr_write(MSR_APIC_BASE, 0xFEE00900)
    assert s.apics[1].apic_base == 0xFEE00800


def test_x2apic_ipis_physical_cluster_and_broadcast():
    s = System(cpus=18)
    for cpu in range(18):
        s.x2apic(cpu)
        s.apics[cpu].msr_write(x2(SVR), 0x1FF)
    src = s.apics[0]
    src.msr_write(x2(ICR), (17 << 32) | 0x4040)
    assert [c for c, a in enumerate(s.apics) if a.vectors(IRR)] == [17]
    src.msr_write(x2(ICR), (((1 << 16) | 0b11) << 32) | 0x4841)      # cluster 1: IDs 16 and 17
    assert [c for c, a in enumerate(s.apics) if 0x41 in a.vectors(IRR)] == [16, 17]
    src.msr_write(x2(ICR), (0xFFFFFFFF << 32) | 0x4042)
    assert all(0x42 in a.vectors(IRR) for a in s.apics)
    src.msr_write(x2(ICR), (0xFF << 32) | 0x4043)                     # not a broadcast in x2APIC format
    assert not any(0x43 in a.vectors(IRR) for a in s.apics)


# ---- MSI ------------------------------------------------------------------------------------------

def test_msi_messages():
    s = System(cpus=2)
    for cpu in range(2):
        s.enable(cpu)
        s.write(cpu, LDR, (1 << cpu) << 24)
    s.bus.deliver_msi(0xFEE01000, 0x0045)                   # physical, APIC 1, fixed, edge
    assert [a.vectors(IRR) for a in s.apics] == [[], [0x45]]
    s.bus.deliver_msi(0xFEE0300C, 0xC046)                   # logical 3, redirection hint, level assert
    assert [0x46 in a.vectors(IRR) for a in s.apics] == [True, False]
    assert s.apics[0].vectors(TMR) == [0x46]
    s.bus.deliver_msi(0xFEE00000, 0x8047)                   # level deassert: nothing
    s.bus.deliver_msi(0xFED00000, 0x0048)                   # not an MSI address
    s.bus.deliver_msi(0xFEE01000, 0x0400)                   # NMI
    assert s.cpus[1].events == ["nmi"]
    assert not any(v in a.vectors(IRR) for a in s.apics for v in (0x47, 0x48))


# ---- state ----------------------------------------------------------------------------------------

def test_save_and_load_state_round_trip():
    s = System(cpus=1)
    s.enable(0)
    s.write(0, TPR, 0x20)
    s.write(0, LVTT, 0x20040)
    s.write(0, TMICT, 500_000)
    s.apics[0].accept_interrupt(0x90, True)
    s.clock.advance(100_000)
    state = s.apics[0].save_state()
    t = System(cpus=1)
    t.clock.advance(100_000)
    t.apics[0].load_state(state)
    assert t.apics[0].save_state() == state
    assert t.read(0, TMCCT) == 450_000 and t.apics[0].vectors(TMR) == [0x90]   # divide by 2
    t.clock.advance(899_999)
    assert t.apics[0].vectors(IRR) == [0x90]
    t.clock.advance(1)
    assert t.apics[0].vectors(IRR) == [0x40, 0x90]


def test_state_dump():
    s = System(cpus=1)
    s.apics[0].firmware_setup()
    s.apics[0].accept_interrupt(0x31, False)
    dump = s.apics[0].state_dump()
    assert dump["svr"] == 0x1FF and dump["lvt"]["lint0"] == 0x8700 and dump["irr"] == [0x31]
    assert dump["mode"] == "xapic" and dump["apic_base"] == 0xFEE00900
    assert dump["timer"]["mode"] == "one-shot" and dump["timer"]["divide"] == 2
