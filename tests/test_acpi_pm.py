"""The PIIX4 power management function's ACPI registers through the port space, on a
virtual clock: PM timer rate and wrap, TMR_STS and the SCI, sleep states, the power
button, the APM port's ACPI enable, and PMBA/PMREGMISC placing the block."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.clock import NS_PER_SEC, VirtualClock
from devicemodel.devices import acpi_pm
from devicemodel.pci.pc_chipset import PcChipset
from irq_line import IrqLines

PM = 0x600
PM1_STS, PM1_EN, PM1_CNT, PM_TMR = PM, PM + 2, PM + 4, PM + 8
HZ = acpi_pm.PM_TIMER_HZ


class Board:
    def __init__(self, timer_bits=24):
        self.pio = AddressSpace("io", 0x10000)
        self.clock = VirtualClock()
        self.irqs = IrqLines(16)
        self.power_offs = 0
        self.suspends = 0
        self.chipset = PcChipset(pio=self.pio, mmio=AddressSpace("memory"), clock=self.clock,
                                 set_isa_irq=self.irqs.set_irq, request_reset=lambda hard: None,
                                 power_off=self._power_off, suspend=self._suspend, pm_timer_bits=timer_bits)
        self.chipset.init_firmware(128 << 20)
        self.pm = self.chipset.pm.pm

    def _power_off(self):
        self.power_offs += 1

    def _suspend(self):
        self.suspends += 1

    def ticks_at(self, ns):
        return ns * HZ // NS_PER_SEC


@pytest.fixture
def board():
    return Board()


def test_pm_timer_counts_at_3_579545_mhz(board):
    t0 = board.pio.read(PM_TMR, 4)
    board.clock.advance(NS_PER_SEC // 10)
    assert board.pio.read(PM_TMR, 4) - t0 == 357954
    board.clock.advance(NS_PER_SEC)
    assert board.pio.read(PM_TMR, 4) == board.ticks_at(board.clock.now_ns())


def test_pm_timer_wraps_at_24_bits(board):
    board.clock.advance_to(-(-(1 << 24) * NS_PER_SEC // HZ) - 1000)    # just before the wrap
    before = board.pio.read(PM_TMR, 4)
    board.clock.advance(10_000)
    after = board.pio.read(PM_TMR, 4)
    assert before > 0xFFFF00 and after < 0x100


def test_32_bit_pm_timer():
    board = Board(timer_bits=32)
    board.clock.advance_to(5 * NS_PER_SEC)
    assert board.pio.read(PM_TMR, 4) == board.ticks_at(5 * NS_PER_SEC) > 0xFFFFFF


def test_only_qemu_access_sizes(board):
    assert board.pio.read(PM_TMR, 2) == 0xFFFF                 # the timer is read as a dword
    assert board.pio.read(PM1_CNT, 1) == 0xFF                  # PM1 registers as words
    board.pio.write(PM_TMR, 4, 0)                              # read-only
    board.clock.advance(1000)
    assert board.pio.read(PM_TMR, 4) == board.ticks_at(1000)


def test_tmr_sts_follows_the_counters_top_bit(board):
    assert board.pio.read(PM1_STS, 2) & acpi_pm.TMR_STS        # set at reset, as in QEMU
    board.clock.advance(NS_PER_SEC // 2)
    board.pio.write(PM1_STS, 2, acpi_pm.TMR_STS)               # clear: next at 2^23 ticks
    assert not board.pio.read(PM1_STS, 2) & acpi_pm.TMR_STS
    board.clock.advance_to(-(-(1 << 23) * NS_PER_SEC // HZ) - 1)
    assert not board.pio.read(PM1_STS, 2) & acpi_pm.TMR_STS
    board.clock.advance(2)
    assert board.pio.read(PM1_STS, 2) & acpi_pm.TMR_STS


def test_sci_on_irq_9_from_the_timer(board):
    board.pio.write(PM1_STS, 2, 0xFFFF)
    board.pio.write(PM1_EN, 2, acpi_pm.TMR_EN)
    assert board.irqs.levels[9] == 0
    board.clock.advance(3 * NS_PER_SEC)                        # the timer's deadline fires
    assert board.irqs.changes == [(9, 1)]
    assert board.clock.now_ns() >= (1 << 23) * NS_PER_SEC // HZ
    board.pio.write(PM1_STS, 2, acpi_pm.TMR_STS)               # the handler clears the status
    assert board.irqs.levels[9] == 0
    board.pio.write(PM1_EN, 2, 0)
    board.clock.advance(10 * NS_PER_SEC)
    assert board.irqs.changes == [(9, 1), (9, 0)]


def test_enable_without_status_raises_nothing(board):
    board.pio.write(PM1_STS, 2, 0xFFFF)
    board.pio.write(PM1_EN, 2, acpi_pm.PWRBTN_EN | acpi_pm.RTC_EN)
    assert board.pio.read(PM1_EN, 2) == acpi_pm.PWRBTN_EN | acpi_pm.RTC_EN
    assert board.irqs.levels[9] == 0


def test_power_button(board):
    board.pm.press_power_button()                              # not enabled: nothing
    assert not board.pio.read(PM1_STS, 2) & acpi_pm.PWRBTN_STS
    board.pio.write(PM1_EN, 2, acpi_pm.PWRBTN_EN)
    board.pm.press_power_button()
    assert board.pio.read(PM1_STS, 2) & acpi_pm.PWRBTN_STS and board.irqs.levels[9] == 1
    board.pio.write(PM1_STS, 2, acpi_pm.PWRBTN_STS)
    assert board.irqs.levels[9] == 0


def test_acpi_enable_through_the_smi_command_port(board):
    assert board.pio.read(PM1_CNT, 2) == 0
    board.pio.write(0xB2, 1, 0xF1)                             # the FADT's ACPI_ENABLE
    assert board.pio.read(PM1_CNT, 2) == acpi_pm.SCI_EN
    assert board.pio.read(0xB2, 1) == 0xF1
    board.pio.write(0xB3, 1, 0x5A)
    assert board.pio.read(0xB3, 1) == 0x5A
    board.pio.write(0xB2, 1, 0xF0)                             # ACPI_DISABLE
    assert board.pio.read(PM1_CNT, 2) == 0


@pytest.mark.parametrize("slp_typ, power_offs, suspends", [(0, 1, 0), (1, 0, 1), (2, 1, 0), (5, 0, 0)])
def test_sleep_states(board, slp_typ, power_offs, suspends):
    board.pio.write(PM1_CNT, 2, acpi_pm.SCI_EN | slp_typ << 10)     # the type alone does nothing
    assert (board.power_offs, board.suspends) == (0, 0)
    board.pio.write(PM1_CNT, 2, acpi_pm.SCI_EN | slp_typ << 10 | acpi_pm.SLP_EN)
    assert (board.power_offs, board.suspends) == (power_offs, suspends)
    assert board.pio.read(PM1_CNT, 2) == acpi_pm.SCI_EN | slp_typ << 10   # SLP_EN reads 0


def test_pmba_and_pmregmisc_place_the_block(board):
    pm = board.chipset.pm
    pm.write_config(0x40, 4, 0xB001)
    board.clock.advance(500)
    assert board.pio.read(0xB008, 4) == board.ticks_at(500)
    assert board.pio.read(PM_TMR, 4) == 0xFFFFFFFF             # gone from 0x600
    assert pm.read_config(0x40, 4) == 0xB001                   # bits 5:1 read 0, bit 0 reads 1
    pm.write_config(0x40, 4, 0xB03E)
    assert pm.read_config(0x40, 4) == 0xB001
    pm.write_config(0x80, 1, 0)                                # PMIOSE off: nowhere
    assert board.pio.read(0xB008, 4) == 0xFFFFFFFF
    pm.write_config(0x80, 1, 1)
    board.clock.advance(1000)
    assert board.pio.read(0xB008, 4) == board.ticks_at(1500)


def test_block_at_reset_is_not_decoded():
    board = Board()
    board.chipset.pm.reset()
    assert board.chipset.pm.read_config(0x40, 4) == 1
    assert board.pio.read(PM_TMR, 4) == 0xFFFFFFFF


def test_state_round_trip(board):
    board.pio.write(PM1_EN, 2, acpi_pm.PWRBTN_EN)
    board.pio.write(0xB2, 1, 0xF1)
    state = board.chipset.pm.save_state()
    copy = Board()
    copy.chipset.pm.load_state(state)
    assert copy.pio.read(PM1_EN, 2) == acpi_pm.PWRBTN_EN
    assert copy.pio.read(PM1_CNT, 2) == acpi_pm.SCI_EN
    assert copy.pio.read(0xB2, 1) == 0xF1


def _machine(guest_path_name="hello", machine_opts=None):
    from guests import guest_path
    from devicemodel.machine import Machine, MachineConfig
    from devicemodel.machine_types import MachineOptions, parse_machine
    options = parse_machine(machine_opts, MachineOptions()) if machine_opts else MachineOptions()
    return Machine(MachineConfig(kernel=str(guest_path(guest_path_name)), serials=["null"], machine=options))


def test_system_powerdown_presses_the_power_button_of_the_pc_machine():
    machine = _machine()
    try:
        machine.system_powerdown()                            # PWRBTN_EN clear: ignored, as in QEMU
        assert machine.pio.read(0x600, 2) & (1 << 8) == 0
        machine.pio.write(0x602, 2, 1 << 8)                   # PWRBTN_EN
        machine.system_powerdown()
        assert machine.pio.read(0x600, 2) & (1 << 8)          # PWRBTN_STS
    finally:
        machine.close()


def test_system_powerdown_without_acpi_is_an_error():
    from devicemodel.errors import PyhvError
    machine = _machine(machine_opts="pc,acpi=off")
    try:
        with pytest.raises(PyhvError, match="no ACPI power button"):
            machine.system_powerdown()
    finally:
        machine.close()
