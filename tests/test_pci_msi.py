"""MSI and MSI-X through configuration space and the MSI-X table in a memory BAR, with a
recorder in place of the local APIC's message delivery."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.pci import regs
from devicemodel.pci.bus import PciBus
from devicemodel.pci.device import PciDevice
from devicemodel.pci.msi import MsiCapability
from devicemodel.pci.msix import MsixCapability


class Messages:
    def __init__(self):
        self.sent = []

    def __call__(self, address, data):
        self.sent.append((address, data))


def make_device(**kw):
    return PciDevice(vendor_id=0x1AF4, device_id=0x1000, class_code=0x0200, interrupt_pin=1, name="nic", **kw)


class Bus:
    def __init__(self):
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory")
        self.bus = PciBus(self.pio, self.mmio)
        self.pirqs = []
        self.bus.set_pirq = lambda pirq, level: self.pirqs.append((pirq, level))


# --- MSI -----------------------------------------------------------------------------

@pytest.mark.parametrize("address64, mask, size", [(False, False, 10), (True, False, 14), (False, True, 20),
                                                   (True, True, 24)])
def test_msi_capability_layout(address64, mask, size):
    device = make_device()
    msi = MsiCapability(device, Messages(), vectors=4, address64=address64, per_vector_mask=mask)
    base = msi.offset
    assert device.config[regs.CAPABILITY_LIST] == base and device.config[base] == regs.CAP_ID_MSI
    control = device.get(base + 2, 2)
    assert control == (2 << 1) | (0x80 if address64 else 0) | (0x100 if mask else 0)
    device.write_config(base + 4, 4, 0xFFFFFFFF)
    assert device.get(base + 4, 4) == 0xFFFFFFFC           # dword-aligned address
    assert device.add_capability(0x09, 4) == (base + size + 3) & ~3   # the next one comes after it


def test_msi_message_with_64_bit_address_and_vector_bits():
    sent = Messages()
    device = make_device()
    msi = MsiCapability(device, sent, vectors=4)
    base = msi.offset
    msi.notify(0)
    assert sent.sent == []                                  # MSI disabled
    device.write_config(base + 4, 4, 0xFEE01000)
    device.write_config(base + 8, 4, 0x1)
    device.write_config(base + 12, 2, 0x4041)
    device.write_config(base + 2, 2, 0x0001 | (2 << 4))     # enable, 4 vectors
    msi.notify(3)
    assert sent.sent == [(0x1FEE01000, 0x4043)]             # the vector in the low data bits
    with pytest.raises(ValueError):
        msi.notify(4)


def test_msi_multiple_message_enable_is_clamped_to_capable():
    device = make_device()
    msi = MsiCapability(device, Messages(), vectors=2)
    device.write_config(msi.offset + 2, 2, 0x0070)
    assert msi.enabled_vectors == 2


def test_msi_per_vector_mask_holds_messages_pending():
    sent = Messages()
    device = make_device()
    msi = MsiCapability(device, sent, vectors=2, address64=False, per_vector_mask=True)
    base = msi.offset
    device.write_config(base + 4, 4, 0xFEE00000)
    device.write_config(base + 8, 2, 0x30)
    device.write_config(base + 12, 4, 0b10)                 # mask vector 1
    device.write_config(base + 2, 2, 0x0011)                # enable, 2 vectors
    msi.notify(1)
    assert sent.sent == [] and device.get(base + 16, 4) == 0b10
    device.write_config(base + 16, 4, 0)                    # pending bits are read-only
    assert device.get(base + 16, 4) == 0b10
    device.write_config(base + 12, 4, 0)                    # unmask: the message goes out
    assert sent.sent == [(0xFEE00000, 0x31)] and device.get(base + 16, 4) == 0


def test_enabling_msi_takes_intx_down():
    bus = Bus()
    device = bus.bus.add(make_device(), 3)
    msi = MsiCapability(device, Messages())
    device.set_irq(1)
    device.write_config(msi.offset + 2, 2, 1)
    assert device.irq_level == 0 and bus.pirqs == [(2, 1), (2, 0)]


# --- MSI-X -------------------------------------------------------------------------------

@pytest.fixture
def msix():
    bus = Bus()
    device = make_device()
    space = AddressSpace("nic-bar2", 0x1000)
    device.add_bar(2, 0x1000, space=space)
    sent = Messages()
    cap = MsixCapability(device, sent, 3, table_bar=2, table_space=space, table_offset=0,
                         pba_bar=2, pba_space=space, pba_offset=0x800)
    bus.bus.add(device, 4)
    device.write_config(0x18, 4, 0xFEB00000)
    device.write_config(regs.COMMAND, 2, regs.COMMAND_MEMORY)
    return bus, device, cap, sent


def entry(bus, vector, address, data, masked):
    base = 0xFEB00000 + 16 * vector
    bus.mmio.write(base, 8, address)
    bus.mmio.write(base + 8, 4, data)
    bus.mmio.write(base + 12, 4, int(masked))


def test_msix_capability_registers(msix):
    _, device, cap, _ = msix
    base = cap.offset
    assert device.config[base] == regs.CAP_ID_MSIX
    assert device.get(base + 2, 2) == 2                       # table size - 1
    assert device.get(base + 4, 4) == 0x2 and device.get(base + 8, 4) == 0x802
    device.write_config(base + 2, 2, 0xFFFF)
    assert device.get(base + 2, 2) == 0xC002                  # only enable and function mask


def test_msix_table_in_the_bar(msix):
    bus, _, _, _ = msix
    assert bus.mmio.read(0xFEB0000C, 4) == 1                  # every vector starts masked
    entry(bus, 1, 0xFEE0100C, 0x4062, masked=False)
    assert bus.mmio.read(0xFEB00010, 8) == 0xFEE0100C
    assert bus.mmio.read(0xFEB00018, 4) == 0x4062
    assert bus.mmio.read(0xFEB00010, 2) == 0xFFFF             # only 32- and 64-bit accesses
    bus.mmio.write(0xFEB00800, 4, 0xFF)                       # the PBA is read-only
    assert bus.mmio.read(0xFEB00800, 8) == 0


def test_msix_delivery_masks_and_pending_bits(msix):
    bus, device, cap, sent = msix
    entry(bus, 0, 0xFEE00000, 0x41, masked=False)
    entry(bus, 2, 0xFEE02000, 0x43, masked=True)
    cap.notify(0)
    assert sent.sent == []                                    # MSI-X disabled
    device.write_config(cap.offset + 2, 2, 0xC000)            # enabled, function masked
    cap.notify(0)
    cap.notify(2)
    assert sent.sent == [] and bus.mmio.read(0xFEB00800, 4) == 0b101
    device.write_config(cap.offset + 2, 2, 0x8000)            # function unmasked: vector 0 goes out
    assert sent.sent == [(0xFEE00000, 0x41)] and bus.mmio.read(0xFEB00800, 4) == 0b100
    bus.mmio.write(0xFEB0002C, 4, 0)                          # unmask vector 2
    assert sent.sent[-1] == (0xFEE02000, 0x43) and bus.mmio.read(0xFEB00800, 4) == 0
    cap.notify(2)
    assert sent.sent[-1] == (0xFEE02000, 0x43) and len(sent.sent) == 3


def test_msix_table_offsets_must_be_aligned():
    device = make_device()
    space = AddressSpace("bar", 0x1000)
    with pytest.raises(ValueError):
        MsixCapability(device, Messages(), 1, table_bar=0, table_space=space, table_offset=4,
                       pba_bar=0, pba_space=space, pba_offset=0x800)
