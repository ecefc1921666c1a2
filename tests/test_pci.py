"""The PCI bus of the pc machine through the port and memory address spaces, as a guest
sees it: configuration mechanism #1, the type-0 header's read-only and writable bits,
BAR sizing and mapping, capabilities, and the PIIX3's routing of INTx to ISA IRQs."""

import pytest

from devicemodel.address_space import AddressSpace, Region
from devicemodel.clock import VirtualClock
from devicemodel.devices.i8259 import PicPair
from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice
from devicemodel.pci.pc_chipset import PcChipset
from irq_line import IrqLines

CF8, CFC = 0xCF8, 0xCFC


class Board:
    """The pc machine's PCI chipset on fresh address spaces, ISA IRQ levels recorded."""

    def __init__(self, acpi=True, set_gsi=None):
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory")
        self.clock = VirtualClock()
        self.irqs = IrqLines(16)
        self.resets = []
        self.power_offs = []
        self.chipset = PcChipset(pio=self.pio, mmio=self.mmio, clock=self.clock,
                                 set_isa_irq=self.irqs.set_irq, request_reset=self.resets.append,
                                 power_off=lambda: self.power_offs.append(True), suspend=lambda: None,
                                 acpi=acpi, set_gsi=set_gsi)
        self.bus = self.chipset.bus
        self.pic = PicPair()
        for region in self.pic.regions:
            self.pio.add_region(region)

    def address(self, dev, fn, reg, bus=0):
        return 0x80000000 | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC)

    def read(self, dev, fn, reg, size=4, bus=0):
        self.pio.write(CF8, 4, self.address(dev, fn, reg, bus))
        return self.pio.read(CFC + (reg & 3), size)

    def write(self, dev, fn, reg, value, size=4):
        self.pio.write(CF8, 4, self.address(dev, fn, reg))
        self.pio.write(CFC + (reg & 3), size, value)


class FakePciDevice(PciDevice):
    def __init__(self, **kw):
        super().__init__(vendor_id=0x1234, device_id=0x5678, class_code=0xFF00, interrupt_pin=1,
                         name="testdev", **kw)
        self.io_writes = []
        self.mem = bytearray(0x1000)
        self.add_bar(0, 0x20, io=True, read=lambda o, s: 0xA0 + o,
                     write=lambda o, s, v: self.io_writes.append((o, s, v)))
        self.add_bar(1, 0x1000, read=self._mem_read, write=self._mem_write)
        self.add_bar(2, 0x4000, mem64=True, prefetchable=True, read=lambda o, s: 0x64, write=lambda o, s, v: None)

    def _mem_read(self, offset, size):
        return int.from_bytes(self.mem[offset:offset + size], "little")

    def _mem_write(self, offset, size, value):
        self.mem[offset:offset + size] = value.to_bytes(size, "little")


@pytest.fixture
def board():
    return Board()


# --- configuration mechanism #1 -------------------------------------------------------

def test_identities_of_the_pc_functions(board):
    assert board.read(0, 0, 0) == 0x12378086                   # i440FX
    assert board.read(1, 0, 0) == 0x70008086                   # PIIX3
    assert board.read(1, 3, 0) == 0x71138086                   # PIIX4 PM
    assert board.read(0, 0, 0x08) == 0x06000002                # host bridge, revision 2
    assert board.read(1, 0, 0x08) == 0x06010000                # ISA bridge
    assert board.read(1, 3, 0x08) == 0x06800003                # other bridge, revision 3
    assert board.read(1, 0, 0x0E, 1) == 0x80                   # multi-function
    assert board.read(1, 3, 0x3D, 1) == 1                      # INTA#
    assert board.read(0, 0, 0x2C) == 0x11001AF4                # QEMU's subsystem IDs


def test_byte_word_and_dword_data_accesses(board):
    assert board.read(0, 0, 0x00, 1) == 0x86
    assert board.read(0, 0, 0x01, 1) == 0x80
    assert board.read(0, 0, 0x02, 2) == 0x1237
    assert board.read(0, 0, 0x03, 1) == 0x12
    board.write(0, 0, 0x3C, 0x0B, 1)                           # interrupt line, a byte lane
    assert board.read(0, 0, 0x3C) & 0xFF == 0x0B


def test_absent_functions_buses_and_the_enable_bit(board):
    assert board.read(5, 0, 0) == 0xFFFFFFFF
    assert board.read(1, 2, 0) == 0xFFFFFFFF
    assert board.read(0, 0, 0, bus=1) == 0xFFFFFFFF
    board.pio.write(CF8, 4, 0x00000000)                        # enable bit clear
    assert board.pio.read(CFC, 4) == 0xFFFFFFFF
    board.pio.write(CFC, 4, 0)                                 # goes nowhere
    assert board.read(0, 0, 0) == 0x12378086


def test_config_address_register(board):
    board.pio.write(CF8, 4, 0x8000FF04)
    assert board.pio.read(CF8, 4) == 0x8000FF04
    board.pio.write(CF8, 2, 0x1234)                            # only dword writes set it
    assert board.pio.read(CF8, 4) == 0x8000FF04


def test_reset_control_register_inside_the_config_address(board):
    board.pio.write(CF8, 4, 0x80000000)                        # dword: the host bridge, not a reset
    assert board.resets == []
    assert board.pio.read(CF8, 4) == 0x80000000
    board.pio.write(0xCF9, 1, 0x06)                            # byte: the PIIX3's RCR
    assert board.resets == [True]
    assert board.pio.read(CF8, 4) == 0x80000000


# --- the header's masks ----------------------------------------------------------------

def test_read_only_identity_and_writable_command_bits(board):
    board.write(1, 3, 0x00, 0xFFFFFFFF)
    assert board.read(1, 3, 0x00) == 0x71138086
    board.write(1, 3, 0x04, 0xFFFF, 2)
    assert board.read(1, 3, 0x04, 2) == 0x0547                 # IO MEM MASTER PARITY SERR INTX_DISABLE
    board.write(1, 3, 0x08, 0xFFFFFFFF)
    assert board.read(1, 3, 0x08) == 0x06800003


def test_status_error_bits_are_write_one_to_clear(board):
    pm = board.chipset.pm
    pm.set(regs.STATUS, 2, 0x0280 | regs.STATUS_REC_MASTER_ABORT | regs.STATUS_SIG_TARGET_ABORT)
    board.write(1, 3, 0x06, regs.STATUS_REC_MASTER_ABORT | 0x0280, 2)
    assert board.read(1, 3, 0x06, 2) == 0x0280 | regs.STATUS_SIG_TARGET_ABORT


def test_device_specific_registers_are_storage_as_in_qemu(board):
    board.write(0, 0, 0x58, 0x33331000)                        # i440FX PAM registers
    assert board.read(0, 0, 0x58) == 0x33331000


# --- BARs ------------------------------------------------------------------------------

@pytest.fixture
def dev(board):
    return board.bus.add(FakePciDevice(), 3)


def test_bar_sizing_by_writing_all_ones(board, dev):
    for bar, expected in ((0, 0xFFFFFFE1), (1, 0xFFFFF000), (2, 0xFFFFC00C), (3, 0xFFFFFFFF), (4, 0)):
        board.write(3, 0, 0x10 + 4 * bar, 0xFFFFFFFF)
        assert board.read(3, 0, 0x10 + 4 * bar) == expected, bar
    # the read-back gives the size: ~(value & mask) + 1
    assert (~(0xFFFFFFE1 & ~3) + 1) & 0xFFFFFFFF == 0x20
    assert board.read(3, 0, 0x10 + 5 * 4) == 0                 # no BAR 5


def test_io_and_memory_bars_map_only_while_the_command_register_enables_them(board, dev):
    board.write(3, 0, 0x10, 0xC040)
    board.write(3, 0, 0x14, 0xFEBF0000)
    assert board.pio.read(0xC042, 1) == 0xFF and board.mmio.read(0xFEBF0000, 4) == 0xFFFFFFFF
    board.write(3, 0, 0x04, regs.COMMAND_IO, 2)
    assert board.pio.read(0xC042, 1) == 0xA2
    assert board.mmio.read(0xFEBF0000, 4) == 0xFFFFFFFF
    board.write(3, 0, 0x04, regs.COMMAND_IO | regs.COMMAND_MEMORY, 2)
    board.mmio.write(0xFEBF0010, 4, 0xCAFEF00D)
    assert dev.mem[0x10:0x14] == (0xCAFEF00D).to_bytes(4, "little")
    board.pio.write(0xC05F, 1, 7)
    assert dev.io_writes == [(0x1F, 1, 7)]
    board.write(3, 0, 0x04, 0, 2)
    assert board.pio.read(0xC042, 1) == 0xFF and board.mmio.read(0xFEBF0010, 4) == 0xFFFFFFFF


def test_moving_a_bar_remaps_it(board, dev):
    board.write(3, 0, 0x04, regs.COMMAND_IO, 2)
    board.write(3, 0, 0x10, 0xC040)
    board.write(3, 0, 0x10, 0xD000)
    assert board.pio.read(0xC040, 1) == 0xFF
    assert board.pio.read(0xD001, 1) == 0xA1
    board.write(3, 0, 0x10, 0xFFFFFFFF)                       # sizing: not mapped meanwhile
    assert board.pio.read(0xD001, 1) == 0xFF
    assert not any(r.owner is dev for r in board.pio.regions)
    board.write(3, 0, 0x10, 0)                                 # address 0: not mapped
    assert not any(r.owner is dev for r in board.pio.regions)


def test_64_bit_bar_above_4g(board, dev):
    board.write(3, 0, 0x04, regs.COMMAND_MEMORY, 2)
    board.write(3, 0, 0x18, 0x00004000)
    board.write(3, 0, 0x1C, 0x00000010)                        # 0x10_00004000
    assert board.mmio.read(0x1000004000, 4) == 0x64
    assert dev.bars[2].mapped_at == 0x1000004000


def test_32_bit_bar_at_the_top_or_io_bar_past_64k_is_not_mapped(board, dev):
    board.write(3, 0, 0x04, regs.COMMAND_IO | regs.COMMAND_MEMORY, 2)
    board.write(3, 0, 0x14, 0xFFFFF000)                        # would end at 4 GiB - 1
    board.write(3, 0, 0x10, 0x1FFE0)                           # past the port space
    assert dev.bars[1].mapped_at is None and dev.bars[0].mapped_at is None


def test_bar_covers_legacy_ports_with_priority_and_uncovers_them(board, dev):
    legacy = []
    board.pio.add_region(Region(base=0x3F8, size=8, name="serial0", read=lambda o, s: 0x55,
                                write=lambda o, s, v: legacy.append(v)))
    board.write(3, 0, 0x10, 0x3E0)
    board.write(3, 0, 0x04, regs.COMMAND_IO, 2)
    assert board.pio.read(0x3F8, 1) == 0xB8                    # the BAR (priority 1) wins
    board.write(3, 0, 0x04, 0, 2)
    assert board.pio.read(0x3F8, 1) == 0x55


def test_bad_bar_declarations():
    device = PciDevice(vendor_id=1, device_id=2, class_code=0)
    with pytest.raises(ValueError):
        device.add_bar(0, 0x30)                                # not a power of two
    with pytest.raises(ValueError):
        device.add_bar(0, 8)                                   # memory BARs are at least 16 bytes
    with pytest.raises(ValueError):
        device.add_bar(5, 0x1000, mem64=True)                  # a 64-bit BAR needs two registers
    device.add_bar(0, 0x1000, mem64=True)
    with pytest.raises(ValueError):
        device.add_bar(1, 0x10)                                # the upper half of BAR 0


# --- capabilities ----------------------------------------------------------------------

def test_capability_list(board):
    device = FakePciDevice()
    first = device.add_capability(0x09, 8)
    second = device.add_capability(0x0A, 4)
    board.bus.add(device, 4)
    assert board.read(4, 0, 0x06, 2) & regs.STATUS_CAP_LIST
    assert board.read(4, 0, 0x34, 1) == second
    assert board.read(4, 0, second, 2) == first << 8 | 0x0A
    assert board.read(4, 0, first, 2) == 0x0009
    board.write(4, 0, first, 0xFFFFFFFF)                       # capabilities are read-only by default
    assert board.read(4, 0, first, 2) == 0x0009
    assert device.find_capability(0x0A) == second and device.find_capability(0x05) is None


# --- INTx through the PIIX3 --------------------------------------------------------------

def test_pirq_routes_reset_disabled(board, dev):
    assert board.read(1, 0, 0x60) == 0x80808080
    dev.set_irq(1)
    assert board.irqs.levels == [0] * 16


@pytest.mark.parametrize("slot, pin, pirq", [(1, 1, 0), (2, 1, 1), (3, 1, 2), (4, 1, 3), (5, 1, 0), (3, 2, 3)])
def test_swizzle_and_routing_raise_the_pic_irq(slot, pin, pirq):
    board = Board()
    device = FakePciDevice()
    device.config[regs.INTERRUPT_PIN] = pin
    board.bus.add(device, slot, 0 if slot != 1 else 5)
    routes = [5, 9, 10, 11]
    board.write(1, 0, 0x60, int.from_bytes(bytes(routes), "little"))
    device.set_irq(1)
    irq = routes[pirq]
    assert board.irqs.levels[irq] == 1 and sum(board.irqs.levels) == 1
    assert board.read(slot, device.devfn & 7, 0x06, 2) & regs.STATUS_INTERRUPT
    device.set_irq(0)
    assert board.irqs.levels == [0] * 16
    assert not board.read(slot, device.devfn & 7, 0x06, 2) & regs.STATUS_INTERRUPT


def test_shared_pirq_is_wired_or(board):
    a, b = FakePciDevice(), FakePciDevice()
    board.bus.add(a, 3)
    board.bus.add(b, 7)                                        # slot 7 INTA# is PIRQC, as slot 3's
    board.write(1, 0, 0x62, 11, 1)
    a.set_irq(1)
    b.set_irq(1)
    a.set_irq(0)
    assert board.irqs.levels[11] == 1
    b.set_irq(0)
    assert board.irqs.levels[11] == 0


def test_rerouting_moves_an_asserted_line(board, dev):
    board.write(1, 0, 0x62, 10, 1)
    dev.set_irq(1)
    assert board.irqs.levels[10] == 1
    board.write(1, 0, 0x62, 11, 1)
    assert board.irqs.levels[10] == 0 and board.irqs.levels[11] == 1
    board.write(1, 0, 0x62, 0x80, 1)                           # routing disabled
    assert board.irqs.levels == [0] * 16
    assert board.irqs.changes.count((10, 1)) == 1


def test_intx_disable_bit(board, dev):
    board.write(1, 0, 0x62, 10, 1)
    dev.set_irq(1)
    board.write(3, 0, 0x04, regs.COMMAND_INTX_DISABLE, 2)
    assert board.irqs.levels[10] == 0
    assert board.read(3, 0, 0x06, 2) & regs.STATUS_INTERRUPT    # the status still shows it
    board.write(3, 0, 0x04, 0, 2)
    assert board.irqs.levels[10] == 1


def test_pirqs_also_reach_gsis_16_to_19_through_the_hook():
    gsis = IrqLines(24)
    board = Board(set_gsi=gsis.set_irq)
    device = board.bus.add(FakePciDevice(), 3)
    device.set_irq(1)
    assert gsis.levels[18] == 1                                # PIRQC, unrouted on the ISA side
    assert board.irqs.levels == [0] * 16


def test_firmware_init_leaves_the_bus_as_seabios_does(board, dev):
    board.chipset.init_firmware(128 << 20)
    assert board.read(1, 0, 0x60) == 0x0B0B0A0A
    assert (board.pio.read(0x4D0, 1), board.pio.read(0x4D1, 1)) == (0x00, 0x0C)   # IRQ 10, 11 level
    assert board.read(3, 0, 0x3C, 1) == 11                     # slot 3 INTA# -> PIRQC -> 11
    assert board.read(1, 3, 0x3C, 1) == 9                      # the SCI
    assert board.read(1, 3, 0x40) == 0x601 and board.read(1, 3, 0x80, 1) == 1
    for slot, fn in ((0, 0), (1, 0), (1, 3), (3, 0)):
        assert board.read(slot, fn, 0x04, 2) == 0x0103
    assert board.read(3, 0, 0x10) == 0xC001                    # I/O from 0xc000
    mem64 = board.read(3, 0, 0x18) | board.read(3, 0, 0x1C) << 32
    assert (board.read(3, 0, 0x14) & ~0xF, mem64 & ~0xF) == (0xFEBFC000, 0xFEBF8000)   # packed below the IOAPIC
    assert board.pio.read(0xC003, 1) == 0xA3
    assert board.mmio.read(0xFEBF8000, 4) == 0x64
