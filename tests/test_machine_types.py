"""-M/-machine: the pc and microvm machine types, their properties, and what they build;
-accel kvm and its property apicv."""

import pytest

from devicemodel.errors import ConfigError
from devicemodel.machine import Machine, MachineConfig
from devicemodel.machine_types import (AccelOptions, MachineOptions, machines_help, parse_accel, parse_machine,
                                      properties_help, MACHINE_TYPES)


def test_pc_is_the_default_and_has_everything():
    options = parse_machine("pc")
    assert options == MachineOptions() and options.pci and options.acpi and options.hpet
    assert parse_machine("pc-i440fx-7.2") == options
    assert parse_machine("type=pc,accel=kvm") == options


def test_properties():
    assert parse_machine("pc,hpet=off,acpi=off") == MachineOptions(acpi=False, hpet=False)
    assert parse_machine("pc,acpi=auto").acpi
    assert parse_machine("microvm") == MachineOptions(type="microvm", acpi=False, hpet=False)
    assert not parse_machine("microvm,rtc=off,isa-serial=off").rtc
    assert parse_machine("microvm,acpi=auto,pic=on,pit=auto") == MachineOptions(type="microvm", acpi=False,
                                                                                hpet=False)


def test_a_later_machine_option_adds_to_the_earlier_one():
    options = parse_machine("rtc=off", parse_machine("microvm"))
    assert options.type == "microvm" and not options.rtc


@pytest.mark.parametrize("text, message", [
    ("q35", "unsupported machine type 'q35'"),
    ("pc,foo=1", "machine property 'foo' is not supported by pyhv's pc machine"),
    ("microvm,hpet=on", "machine property 'hpet' is not supported by pyhv's microvm machine"),
    ("pc,hpet=maybe", "Parameter 'hpet' expects on or off, not 'maybe'"),
    ("pc,acpi=1", "Parameter 'acpi' expects on, off or auto"),
    ("pc,pit=off", "pit=off is not supported"),
    ("pc,smm=on", "smm=on is not supported"),
    ("pc,usb=on", "usb=on is not supported"),
    ("microvm,acpi=on", "acpi=on is not supported by pyhv's microvm machine"),
    ("microvm,pcie=on", "pcie=on is not supported"),
    ("pc,accel=tcg", "accelerator 'tcg' is not supported"),
])
def test_bad_machine_options(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_machine(text)


def test_help_texts():
    assert parse_machine("help") == machines_help()
    assert machines_help().splitlines()[:2] == [
        "Supported machines are:", "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)"]
    assert "microvm              microvm (i386)" in machines_help()
    assert parse_machine("microvm,help") == properties_help(MACHINE_TYPES["microvm"])
    assert "  isa-serial=<bool>      - Set off" in parse_machine("microvm,help")


def test_accel():
    assert parse_accel("kvm") == parse_accel("accel=kvm,apicv=on") == AccelOptions(apicv=True)
    assert parse_accel("kvm,apicv=off") == AccelOptions(apicv=False)
    assert parse_accel("apicv=on", parse_accel("kvm,apicv=off")).apicv     # a later -accel adds
    assert parse_accel("help").splitlines() == ["Accelerators supported in pyhv binary:", "kvm"]
    assert "apicv=<bool>" in parse_accel("kvm,help")


@pytest.mark.parametrize("text, message", [
    ("tcg", "accelerator 'tcg' is not supported"),
    ("kvm,kernel-irqchip=split", "Property 'kvm-accel.kernel-irqchip' not found"),
    ("kvm,apicv=maybe", "Parameter 'apicv' expects on or off, not 'maybe'"),
])
def test_bad_accel_options(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_accel(text)


# --- what the machine types build ------------------------------------------------------------

def build(kernel, machine, **kw):
    return Machine(MachineConfig(kernel=kernel, ram_size=32 << 20, serials=["null"],
                                 machine=parse_machine(machine), **kw))


def region_names(space):
    return {r.name for r in space.regions}


def test_pc_machine_has_the_chipset_hpet_fw_cfg(kernel):
    machine = build(kernel, "pc")
    try:
        assert region_names(machine.pio) >= {
            "pic-master", "pic-slave", "pic-master-elcr", "pit", "port61", "rtc", "i8042-data", "ioport80",
            "port92", "serial0", "pci-conf-idx", "pci-conf-data", "reset-control", "apm-io", "acpi-evt",
            "acpi-cnt", "acpi-tmr", "fwcfg", "fwcfg.dma"}
        assert region_names(machine.mmio) == {"hpet", "ioapic"}
        assert machine.pio.find(0x608).name == "acpi-tmr"
        assert machine.tables.rsdp_addr is not None
        assert b"HPET" in bytes(machine.ram[machine.layout.acpi_base:machine.layout.low_top])
        assert machine.pio.read(0x4D1, 1) == 0x0C             # the firmware's ELCR for PCI IRQs 10, 11
    finally:
        machine.close()


def test_pc_without_acpi_and_hpet(kernel):
    machine = build(kernel, "pc,acpi=off,hpet=off")
    try:
        assert machine.chipset.pm is None
        assert machine.pio.find(0x608) is None and machine.pio.find(0xB2) is None
        assert machine.mmio.find(0xFED00000) is None
        assert machine.tables.rsdp_addr is None
        assert machine.pio.find(0xCF8) is not None
    finally:
        machine.close()


def test_microvm_is_minimal(kernel):
    machine = build(kernel, "microvm")
    try:
        for port in (0x20, 0xA0, 0x4D0, 0x40, 0x70, 0x3F8, 0x510, 0x514):
            assert machine.pio.find(port) is not None, hex(port)
        for port in (0x60, 0x61, 0x64, 0x80, 0x92, 0xB2, 0xCF8, 0xCF9, 0x600):
            assert machine.pio.find(port) is None, hex(port)
        assert machine.mmio.find(0xFED00000) is None and machine.chipset is None
        assert machine.tables.rsdp_addr is None
    finally:
        machine.close()


def test_microvm_without_rtc_and_serial(kernel):
    machine = build(kernel, "microvm,rtc=off,isa-serial=off")
    try:
        assert machine.pio.find(0x70) is None and machine.pio.find(0x3F8) is None
        assert machine.serials == []
    finally:
        machine.close()


def test_debugcon_covers_pc_testdev_byte_port_as_in_qemu(kernel, tmp_path):
    from devicemodel.qdev import parse_device
    log = tmp_path / "debugcon.txt"
    machine = build(kernel, "pc", devices=[parse_device("pc-testdev")], debugcon=f"file:{log}")
    try:
        assert machine.pio.find(0xE9).name == "isa-debugcon"
        assert machine.pio.find(0xE8).name == machine.pio.find(0xEA).name == "pc-testdev-ioport-byte"
        machine.pio.write(0xE9, 1, ord("x"))
        assert machine.pio.read(0xE9, 1) == 0xE9
    finally:
        machine.close()
    assert log.read_text() == "x"


@pytest.mark.parametrize("legacy", [False, True])
def test_hpet_legacy_replacement_takes_irq0_and_irq8(kernel, legacy):
    machine = build(kernel, "pc")
    try:
        if legacy:
            machine.mmio.write(0xFED00010, 4, 0x3)            # ENABLE_CNF | LEG_RT_CNF
        for port, icws in ((0x20, (0x08, 0x04, 0x01)), (0xA0, (0x70, 0x02, 0x01))):
            machine.pio.write(port, 1, 0x11)                  # ICW1 clears the edge requests
            for icw in icws:
                machine.pio.write(port + 1, 1, icw)
        for device in (machine.platform.pit, machine.platform.rtc):
            device.irq(0)
            device.irq(1)                                     # a rising edge, as the device's output
        irr_master, irr_slave = machine.pio.read(0x20, 1), machine.pio.read(0xA0, 1)   # OCW3 default: IRR
        assert (irr_master & 1, irr_slave & 1) == ((0, 0) if legacy else (1, 1))
    finally:
        machine.close()


@pytest.fixture
def pci_test_device(monkeypatch):
    """A -device type whose device is a PCI function with an I/O and a memory BAR."""
    from devicemodel import qdev
    from devicemodel.pci.device import PciDevice

    def create(machine, props):
        device = PciDevice(vendor_id=0x1B36, device_id=0x0005, class_code=0x00FF, interrupt_pin=1,
                           name="pci-testdev")
        device.add_bar(0, 0x1000, read=lambda o, s: 0x5A, write=lambda o, s, v: None)
        device.add_bar(1, 0x100, io=True, read=lambda o, s: 0xA5, write=lambda o, s, v: None)
        return device
    monkeypatch.setitem(qdev.DEVICE_TYPES, "pci-testdev", qdev.DeviceType(
        name="pci-testdev", bus="PCI", description="test", properties=(), create=create))
    return qdev.parse_device("pci-testdev")


def test_pci_device_gets_a_slot_addresses_and_an_irq(kernel, pci_test_device):
    machine = build(kernel, "pc", devices=[pci_test_device, pci_test_device])
    try:
        bus = machine.chipset.bus
        first, second = bus.devices[2 << 3], bus.devices[3 << 3]
        assert first.name == second.name == "pci-testdev"
        assert (first.bars[0].mapped_at, second.bars[0].mapped_at) == (0xFEBFE000, 0xFEBFF000)
        assert (first.bars[1].mapped_at, second.bars[1].mapped_at) == (0xC000, 0xC100)
        assert machine.mmio.read(first.bars[0].mapped_at, 4) == 0x5A
        assert machine.pio.read(first.bars[1].mapped_at, 1) == 0xA5
        assert (first.config[0x3C], second.config[0x3C]) == (10, 11)      # PIRQB, PIRQC
        machine.pio.write(0x21, 1, 0xFF)
        first.set_irq(1)
        assert machine.line.pic.slave.irr & (1 << 2)                      # IRQ 10, level-triggered
    finally:
        machine.close()


def test_no_pci_bus_on_microvm(kernel, pci_test_device):
    with pytest.raises(ConfigError, match="No 'PCI' bus found for device 'pci-testdev'"):
        build(kernel, "microvm", devices=[pci_test_device])


def test_fw_cfg_items_of_the_machine_and_dma_into_guest_ram(kernel):
    import struct
    machine = Machine(MachineConfig(kernel=kernel, ram_size=32 << 20, serials=["null"], cmdline="quiet"))
    try:
        pio, ram = machine.pio, machine.ram

        def item(key, length):
            pio.write(0x510, 2, key)
            return bytes(pio.read(0x511, 1) for _ in range(length))
        assert item(0x00, 4) == b"QEMU" and struct.unpack("<I", item(0x01, 4))[0] == 3
        assert struct.unpack("<Q", item(0x03, 8))[0] == 32 << 20
        assert struct.unpack("<H", item(0x05, 2))[0] == 1
        with open(kernel, "rb") as f:
            assert struct.unpack("<I", item(0x08, 4))[0] == len(f.read())
        assert item(0x15, 6) == b"quiet\0"
        # DMA: select the signature and read it to guest-physical 0x2000
        ram[0x1000:0x1010] = struct.pack(">IIQ", 0x0A, 4, 0x2000)
        pio.write(0x514, 4, 0)
        pio.write(0x518, 4, int.from_bytes((0x1000).to_bytes(4, "big"), "little"))
        assert ram[0x2000:0x2004] == b"QEMU" and ram[0x1000:0x1004] == bytes(4)
        ram[0x1000:0x1010] = struct.pack(">IIQ", 0x0A, 4, 0xFED00000)   # not RAM: an error
        pio.write(0x518, 4, int.from_bytes((0x1000).to_bytes(4, "big"), "little"))
        assert struct.unpack(">I", ram[0x1000:0x1004])[0] == 1
    finally:
        machine.close()
