"""The virtio-pci transport (modern) as a guest driver sees it through configuration
cycles and BAR 4: identity and capability list as QEMU's disable-legacy=on devices have
them, the common configuration fields, MSI-X vectors to the APIC bus, INTx through the
PIIX3 with the read-to-clear ISR, resets, queue_reset, and the PCI_CFG access window."""

import struct

import pytest

import virtio_driver as vd
from devicemodel.block.drive import open_drive, parse_drive
from devicemodel.pci import regs
from devicemodel.virtio.blk import VirtioBlk
from devicemodel.virtio.pci import NO_VECTOR, VirtioPci, msix_bar_layout
from devicemodel.virtio.rng import VirtioRng
from devicemodel.virtio.spec import (F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_ACKNOWLEDGE,
                                     STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK,
                                     STATUS_FEATURES_OK, bit)

F_RING_RESET = 40
SLOT = 4
MSI_ADDRESS = 0xFEE00000


class Setup:
    def __init__(self, device_factory=VirtioRng, vectors=2, class_code=0x00FF, name="virtio-rng-pci"):
        self.memory = vd.make_memory()
        self.board = vd.PciBoard()
        self.device = device_factory(self.memory)
        self.pci = self.board.plug(VirtioPci(self.device, vectors=vectors, class_code=class_code, name=name), SLOT)
        self.drv = vd.PciDriver(self.board, SLOT)
        self.alloc = vd.Allocator()

    def ready_queue(self, size=8, vector=None, features=bit(F_VERSION_1), config_vector=None):
        assert self.drv.negotiate(features) & STATUS_FEATURES_OK
        if config_vector is not None:
            self.drv.write(0x10, config_vector, 2)
        queue = vd.DriverQueue(self.memory, self.alloc, size=size)
        self.drv.setup_queue(0, queue, vector)
        self.drv.driver_ok()
        return queue

    @property
    def intx(self) -> int:
        """The level of the ISA IRQ that the firmware gave the function's pin."""
        return self.board.irqs.levels[self.drv.config(regs.INTERRUPT_LINE, 1)]


@pytest.fixture
def rng():
    return Setup()


def test_identity_like_qemus_modern_devices(rng):
    drv = rng.drv
    assert drv.config(0x00) == 0x10441AF4                      # 1af4:1044 (0x1040 + entropy)
    assert drv.config(regs.REVISION_ID, 1) == 1
    assert drv.config(regs.CLASS_DEVICE, 2) == 0x00FF
    assert drv.config(regs.SUBSYSTEM_VENDOR_ID) == 0x11001AF4
    assert drv.config(regs.INTERRUPT_PIN, 1) == 1
    assert drv.config(regs.INTERRUPT_LINE, 1) == 11           # slot 4, INTA: PIRQD -> IRQ 11
    assert drv.config(regs.STATUS, 2) & regs.STATUS_CAP_LIST


def test_bars_as_qemu_lays_them_out(rng):
    drv = rng.drv
    drv.set_command(0)
    sizes = {}
    for index in range(6):
        drv.set_config(0x10 + 4 * index, 0xFFFFFFFF)
        sizes[index] = drv.config(0x10 + 4 * index)
    assert sizes[0] == sizes[2] == sizes[3] == 0
    assert sizes[1] == 0xFFFFF000                               # 4 KiB 32-bit memory: MSI-X
    assert sizes[4] == 0xFFFFC00C                               # 16 KiB, 64-bit, prefetchable
    assert sizes[5] == 0xFFFFFFFF                               # its upper half


def test_capability_list(rng):
    drv = rng.drv
    assert drv.config(0x34, 1) == 0x98
    chain, at = [], 0x98
    while at:
        chain.append((at, drv.config(at, 1), drv.config(at + 2, 1)))
        at = drv.config(at + 1, 1)
    assert chain == [(0x98, 0x11, 0x01), (0x84, 0x09, 20), (0x70, 0x09, 20), (0x60, 0x09, 16),
                     (0x50, 0x09, 16), (0x40, 0x09, 16)]
    assert drv.caps == {1: (0x40, 4, 0x0000, 0x1000), 3: (0x50, 4, 0x1000, 0x1000),
                        4: (0x60, 4, 0x2000, 0x1000), 2: (0x70, 4, 0x3000, 0x1000), 5: (0x84, 0, 0, 0)}
    assert drv.config(0x70 + 16) == 4                           # notify_off_multiplier
    assert drv.config(0x98 + 2, 2) == 1                         # MSI-X: 2 vectors
    assert drv.config(0x98 + 4) == 0x1 and drv.config(0x98 + 8) == 0x801   # table, PBA in BAR 1
    drv.set_config(0x40 + 8, 0x1234)                            # the virtio capabilities are read-only
    assert drv.config(0x40 + 8) == 0


def test_common_configuration(rng):
    drv = rng.drv
    offered = bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX) | bit(F_RING_RESET)
    assert drv.device_features() == offered
    drv.write(0x00, 2)
    assert drv.read(0x00) == 2 and drv.read(0x04) == 0            # no third word
    drv.write(0x08, 1)
    drv.write(0x0C, 1)
    assert drv.read(0x0C) == 1
    drv.write(0x08, 5)
    drv.write(0x0C, 7)
    assert drv.read(0x0C) == 0
    assert drv.read(0x12, 2) == 1                                 # num_queues
    assert drv.read(0x18, 2) == 8                                 # QEMU's virtio-rng queue size
    assert drv.read(0x1A, 2) == NO_VECTOR and drv.read(0x10, 2) == NO_VECTOR
    drv.write(0x16, 3, 2)
    assert drv.read(0x16, 2) == 3 and drv.read(0x18, 2) == 0 and drv.read(0x1A, 2) == NO_VECTOR
    drv.write(0x16, 1024, 2)                                      # beyond QEMU's queue limit: ignored
    assert drv.read(0x16, 2) == 3
    drv.write(0x16, 0, 2)
    assert drv.read(0x1E, 2) == 0 and drv.read(0x1C, 2) == 0
    assert drv.read(0x14, 2) == 0 and drv.read(0x15, 1) == 0       # status (only), generation
    assert drv.read(0x05, 1) == 0                                 # not a field's offset


@pytest.mark.parametrize("wanted, accepted", [
    (bit(F_VERSION_1), True),
    (bit(F_VERSION_1) | bit(F_RING_RESET), True),
    (bit(F_INDIRECT_DESC), False),                                # a legacy driver
])
def test_feature_negotiation(rng, wanted, accepted):
    assert bool(rng.drv.negotiate(wanted) & STATUS_FEATURES_OK) == accepted


def test_queue_layout_and_msix_interrupts(rng):
    drv = rng.drv
    drv.msix_entry(0, MSI_ADDRESS, 0x41)
    drv.msix_entry(1, MSI_ADDRESS | 1 << 12, 0x42)
    drv.enable_msix()
    queue = rng.ready_queue(vector=1, config_vector=0)
    assert drv.read(0x10, 2) == 0 and drv.read(0x1A, 2) == 1 and drv.read(0x1C, 2) == 1
    q = rng.device.queues[0]
    assert (q.size, q.desc, q.avail, q.used) == (8, queue.desc, queue.avail, queue.used)
    assert drv.read(0x20) == queue.desc & 0xFFFFFFFF and drv.read(0x28) == queue.avail
    queue.add([(0x80000, 16, True)])
    drv.notify(0)
    assert queue.take_used() == [(0, 16)]
    assert rng.board.messages == [(MSI_ADDRESS | 1 << 12, 0x42)]
    assert rng.intx == 0


def test_vectors_beyond_the_functions_read_as_no_vector(rng):
    drv = rng.drv
    drv.write(0x10, 2, 2)
    assert drv.read(0x10, 2) == NO_VECTOR
    drv.write(0x1A, 1, 2)
    assert drv.read(0x1A, 2) == 1
    drv.write(0x1A, 0x8001, 2)
    assert drv.read(0x1A, 2) == NO_VECTOR


def test_no_vector_and_masked_vectors(rng):
    drv = rng.drv
    drv.msix_entry(1, MSI_ADDRESS, 0x42, masked=True)
    drv.enable_msix()
    queue = rng.ready_queue(vector=NO_VECTOR)
    queue.add([(0x80000, 16, True)])
    drv.notify(0)
    assert queue.take_used() and rng.board.messages == [] and rng.intx == 0
    drv.write(0x16, 0, 2)
    drv.write(0x1A, 1, 2)
    queue.add([(0x80000, 16, True)])
    drv.notify(0)
    assert rng.board.messages == []                               # masked: pending in the PBA
    drv.msix_entry(1, MSI_ADDRESS, 0x42, masked=False)
    assert rng.board.messages == [(MSI_ADDRESS, 0x42)]


def test_msi_needs_bus_mastering(rng):
    drv = rng.drv
    drv.msix_entry(0, MSI_ADDRESS, 0x41)
    drv.enable_msix()
    queue = rng.ready_queue(vector=0)
    drv.set_command(drv.config(regs.COMMAND, 2) & ~regs.COMMAND_MASTER)
    assert not drv.read(0x14, 1) & STATUS_DRIVER_OK                # QEMU takes DRIVER_OK away
    rng.pci.queue_interrupt(0)
    assert rng.board.messages == []


def test_intx_and_the_read_to_clear_isr(rng):
    drv = rng.drv
    queue = rng.ready_queue(vector=0)                             # MSI-X disabled: INTx
    queue.add([(0x80000, 16, True)])
    drv.notify(0)
    assert rng.intx == 1 and drv.config(regs.STATUS, 2) & regs.STATUS_INTERRUPT
    assert drv.isr() == 1
    assert rng.intx == 0 and drv.isr() == 0
    rng.device.needs_reset("test")                                # a configuration change
    assert rng.intx == 1 and drv.isr() == 2 and rng.intx == 0


def test_enabling_msix_lowers_intx(rng):
    queue = rng.ready_queue()
    queue.add([(0x80000, 16, True)])
    rng.drv.notify(0)
    assert rng.intx == 1
    rng.drv.enable_msix()
    assert rng.intx == 0


def test_config_change_interrupt_uses_the_config_vector(rng):
    drv = rng.drv
    drv.msix_entry(0, MSI_ADDRESS, 0x41)
    drv.enable_msix()
    rng.ready_queue(vector=1, config_vector=0)
    drv.write(0x16, 0, 2)
    drv.write(0x1C, 0, 2)                                         # the driver must not write 0
    assert drv.read(0x14, 1) & STATUS_DEVICE_NEEDS_RESET
    assert rng.board.messages == [(MSI_ADDRESS, 0x41)]


def test_status_zero_resets_queues_and_vectors(rng):
    drv = rng.drv
    queue = rng.ready_queue(vector=1, config_vector=0)
    assert drv.read(0x10, 2) == 0
    queue.add([(0x80000, 16, True)])
    drv.notify(0)
    drv.write(0x14, 0, 1)
    assert drv.read(0x14, 1) == 0 and drv.read(0x10, 2) == NO_VECTOR
    assert drv.read(0x1A, 2) == NO_VECTOR and drv.read(0x1C, 2) == 0 and drv.read(0x18, 2) == 8
    assert drv.read(0x20) == 0 and drv.isr() == 0 and rng.intx == 0
    assert not rng.device.queues[0].ready
    assert rng.drv.negotiate() & STATUS_FEATURES_OK


def test_bad_queue_layout_needs_reset(rng):
    drv = rng.drv
    drv.negotiate()
    drv.write(0x16, 0, 2)
    drv.write(0x18, 6, 2)                                         # not a power of two
    drv.write(0x1C, 1, 2)
    assert drv.read(0x1C, 2) == 0 and drv.read(0x14, 1) & STATUS_DEVICE_NEEDS_RESET


def test_queue_reset(rng):
    drv = rng.drv
    drv.msix_entry(1, MSI_ADDRESS, 0x42)
    drv.enable_msix()
    queue = rng.ready_queue(vector=1, features=bit(F_VERSION_1) | bit(F_RING_RESET))
    queue.add([(0x80000, 16, True)])
    drv.notify(0)
    drv.write(0x16, 0, 2)
    drv.write(0x3A, 1, 2)
    assert drv.read(0x3A, 2) == 0 and drv.read(0x1C, 2) == 0
    assert drv.read(0x1A, 2) == NO_VECTOR and drv.read(0x20) == 0 and drv.read(0x18, 2) == 8
    again = vd.DriverQueue(rng.memory, rng.alloc, size=4)
    drv.setup_queue(0, again, vector=1)
    again.add([(0x80000, 8, True)])
    drv.notify(0)
    assert again.take_used() == [(0, 8)] and rng.board.messages[-1] == (MSI_ADDRESS, 0x42)
    assert drv.read(0x14, 1) == STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK


def test_queue_reset_needs_the_feature(rng):
    rng.ready_queue()
    rng.drv.write(0x16, 0, 2)
    rng.drv.write(0x3A, 1, 2)
    assert rng.drv.read(0x1C, 2) == 1


def test_pci_cfg_access_capability(tmp_path):
    s = Setup(lambda memory: VirtioBlk(memory, _drive(tmp_path / "disk.img")), name="virtio-blk-pci", class_code=0x0100)
    drv, cap = s.drv, 0x84

    def window(offset, length):
        drv.set_config(cap + 4, 4, 1)                             # bar
        drv.set_config(cap + 8, offset)
        drv.set_config(cap + 12, length)

    window(0x2000, 4)                                             # device configuration: capacity
    assert drv.config(cap + 16) == 2048
    window(0x0012, 2)                                             # num_queues
    assert drv.config(cap + 16, 2) == 1
    window(0x0014, 1)                                             # device_status, written
    drv.set_config(cap + 16, STATUS_ACKNOWLEDGE, 1)
    assert drv.read(0x14, 1) == STATUS_ACKNOWLEDGE
    window(0x0014, 3)                                             # not 1, 2 or 4 bytes: nothing
    drv.set_config(cap + 16, 0, 1)
    assert drv.read(0x14, 1) == STATUS_ACKNOWLEDGE
    drv.set_config(cap + 4, 0, 1)                                 # another BAR: nothing
    window(0x0014, 1)
    drv.set_config(cap + 4, 2, 1)
    drv.set_config(cap + 16, 0, 1)
    assert drv.read(0x14, 1) == STATUS_ACKNOWLEDGE


def test_function_without_msix_uses_intx():
    s = Setup(vectors=0)
    assert s.drv.config(0x34, 1) == 0x84 and not hasattr(s.drv, "msix_cap")
    assert s.drv.config(0x14) == 0                                # no BAR 1
    s.drv.write(0x10, 0, 2)
    assert s.drv.read(0x10, 2) == NO_VECTOR
    queue = s.ready_queue(vector=0)
    queue.add([(0x80000, 16, True)])
    s.drv.notify(0)
    assert s.intx == 1 and s.board.messages == []


def test_system_reset_disables_msix(rng):
    drv = rng.drv
    drv.msix_entry(0, MSI_ADDRESS, 0x41)
    drv.enable_msix()
    rng.ready_queue(vector=0, config_vector=0)
    rng.pci.reset()
    assert drv.config(0x98 + 2, 2) == 1 and drv.read(0x14, 1) == 0 and drv.read(0x10, 2) == NO_VECTOR


@pytest.mark.parametrize("vectors, layout", [(1, (0x1000, 0x800)), (128, (0x1000, 0x800)),
                                             (129, (0x1000, 0x810)), (255, (0x2000, 0xff0)), (2048, (0x10000, 0x8000))])
def test_msix_bar_sizes_as_qemu(vectors, layout):
    assert msix_bar_layout(vectors) == layout


def _drive(path, size=1 << 20):
    path.write_bytes(bytes(size))
    return open_drive(parse_drive(f"file={path},if=none,format=raw", []))


def test_blk_with_several_queues_and_requests_in_flight(tmp_path):
    device = {}

    def factory(memory):
        device["blk"] = VirtioBlk(memory, _drive(tmp_path / "disk.img"), num_queues=2)
        return device["blk"]
    s = Setup(factory, vectors=3, class_code=0x0100, name="virtio-blk-pci")
    drv = s.drv
    assert drv.read(0x12, 2) == 2 and s.drv.device_features() & bit(12)       # VIRTIO_BLK_F_MQ
    for vector in range(3):
        drv.msix_entry(vector, MSI_ADDRESS, 0x40 + vector)
    drv.enable_msix()
    assert drv.negotiate(bit(F_VERSION_1)) & STATUS_FEATURES_OK
    queues = [vd.DriverQueue(s.memory, s.alloc, size=16) for _ in range(2)]
    for index, queue in enumerate(queues):
        drv.setup_queue(index, queue, vector=index + 1)
    drv.driver_ok()
    assert drv.read_structure(4, 0x22, 2) == 2                    # config num_queues
    headers, statuses = [], []
    for sector in range(3):                                       # three writes, then one kick
        header = s.alloc(16)
        s.memory.write(header, struct.pack("<IIQ", 1, 0, sector))
        data = s.alloc(512)
        s.memory.write(data, bytes([sector + 1]) * 512)
        status = s.alloc(1)
        queues[1].add([(header, 16, False), (data, 512, False), (status, 1, True)])
        headers.append(header)
        statuses.append(status)
    drv.notify(1)
    assert [head for head, _ in queues[1].take_used()] == [0, 3, 6]
    assert [s.memory.read(status, 1) for status in statuses] == [b"\0"] * 3
    assert s.board.messages == [(MSI_ADDRESS, 0x42)]             # one interrupt, queue 1's vector
    assert device["blk"].drive.read(512, 512) == bytes([2]) * 512


def test_monitor_info_pci_and_qtree(tmp_path):
    from devicemodel.cli import parse_command_line
    from devicemodel.machine import Machine
    from devicemodel.monitor.hmp import Monitor
    from test_multiboot_loader import simple_kernel
    kernel = tmp_path / "kernel.elf"
    kernel.write_bytes(simple_kernel())
    machine = Machine(parse_command_line(["-kernel", str(kernel), "-device", "virtio-rng-pci,addr=06.0",
                                          "-device", "virtio-balloon-pci", "-device", "virtio-rng-pci,vectors=0"]))
    try:
        out = []
        Monitor(machine, out.append).handle_line("info pci")
        text = "".join(out)
        assert ("  Bus  0, device   6, function 0:\n"
                "    Class 0255: PCI device 1af4:1044\n"
                "      PCI subsystem 1af4:1100\n"
                "      IRQ 10, pin A\n"
                "      BAR1: 32 bit memory at 0x") in text
        assert "  Bus  0, device   1, function 3:\n    Bridge: PCI device 8086:7113\n" in text
        bars = [line for line in text.splitlines() if "BAR4" in line and "I/O" not in line]   # not IDE's
        assert len(bars) == 3 and all("64 bit prefetchable memory at 0xfeb" in line for line in bars)
        out.clear()
        Monitor(machine, out.append).handle_line("info qtree")
        text = "".join(out)
        assert ('      dev: virtio-rng-pci, id ""\n        vectors = 2 (0x2)\n        addr = 06.0\n'
                "        class Class 00ff, addr 00:06.0, pci id 1af4:1044 (sub 1af4:1100)\n") in text
        assert '          dev: virtio-balloon-device, id ""' in text
        assert "\n  dev: virtio-rng-pci" not in text                 # not on the system bus
    finally:
        machine.close()


def test_device_options(tmp_path, capsys):
    from devicemodel.cli import main
    from test_multiboot_loader import simple_kernel
    kernel = tmp_path / "kernel.elf"
    kernel.write_bytes(simple_kernel())
    for args, message in [(["-device", "virtio-rng-pci,addr=40"], "Property 'virtio-rng-pci.addr' doesn't take"),
                          (["-device", "virtio-rng-pci,addr=1.0"], "PCI address 01.0 is taken by PIIX3"),
                          (["-device", "virtio-rng-pci,disable-legacy=off"], "modern only"),
                          (["-device", "virtio-rng-pci,disable-legacy=maybe"], "expects on, off or auto"),
                          (["-M", "microvm", "-device", "virtio-rng"], "No 'PCI' bus found")]:
        assert main(["-kernel", str(kernel), *args]) == 1
        assert message in capsys.readouterr().err
