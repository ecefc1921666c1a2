"""The virtio-mmio transport (version 2) register by register, as QEMU's virtio-mmio
behaves with force-legacy=off, and the microvm layout of the transports: addresses,
interrupt lines, which transport a device gets, and the kernel command-line announcement."""

import pytest

import virtio_driver as vd
from devicemodel.address_space import AddressSpace
from devicemodel.virtio import mmio as regs
from devicemodel.virtio.mmio import VirtioMmio
from devicemodel.virtio.mmio_bus import VirtioMmioBus
from devicemodel.virtio.rng import VirtioRng
from devicemodel.virtio.spec import (F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_ACKNOWLEDGE,
                                     STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER,
                                     STATUS_FEATURES_OK, bit)


class Setup:
    def __init__(self, device_factory=VirtioRng):
        self.memory = vd.make_memory()
        self.device = device_factory(self.memory) if device_factory else None
        self.irq = vd.IrqRecorder()
        self.transport = VirtioMmio(vd.BASE, self.irq, self.device)
        self.space = AddressSpace("memory")
        self.space.add_region(self.transport.region)
        self.regs = vd.MmioDriver(self.space)


@pytest.fixture
def rng():
    return Setup()


def test_window_without_a_device_reads_like_qemus():
    s = Setup(device_factory=None)
    assert s.regs.read(regs.MAGIC_VALUE) == 0x74726976
    assert s.regs.read(regs.VERSION_REG) == 2 and s.regs.read(regs.VENDOR_ID) == 0x554D4551
    assert s.regs.read(regs.DEVICE_ID) == 0 and s.regs.read(regs.CONFIG) == 0
    s.regs.write(regs.STATUS, 0xFF)
    assert s.regs.read(regs.STATUS) == 0


def test_identity_registers_and_access_sizes(rng):
    r = rng.regs
    assert (r.read(regs.MAGIC_VALUE), r.read(regs.VERSION_REG), r.read(regs.DEVICE_ID)) == (0x74726976, 2, 4)
    assert r.read(regs.MAGIC_VALUE, 2) == 0 and r.read(regs.MAGIC_VALUE, 1) == 0     # 32-bit only
    r.write(regs.STATUS, STATUS_ACKNOWLEDGE, size=1)
    assert r.read(regs.STATUS) == 0
    assert r.read(regs.SHM_LEN_LOW) == r.read(regs.SHM_LEN_HIGH) == 0xFFFFFFFF
    assert r.read(regs.CONFIG_GENERATION) == 0
    assert r.read(0x0F8) == 0                                   # an undefined register


def test_feature_words_and_selectors(rng):
    r = rng.regs
    features = r.device_features()
    assert features == bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX)
    r.write(regs.DEVICE_FEATURES_SEL, 7)                        # any non-zero selector is word 1
    assert r.read(regs.DEVICE_FEATURES) == 1


@pytest.mark.parametrize("wanted, accepted", [
    (bit(F_VERSION_1), True),
    (bit(F_VERSION_1) | bit(F_EVENT_IDX), True),
    (bit(F_INDIRECT_DESC), False),                              # no VERSION_1: a legacy driver
    (bit(F_VERSION_1) | bit(5), False),                         # not offered
])
def test_feature_negotiation(rng, wanted, accepted):
    r = rng.regs
    r.write(regs.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
    for sel in (0, 1):
        r.write(regs.DRIVER_FEATURES_SEL, sel)
        r.write(regs.DRIVER_FEATURES, (wanted >> (32 * sel)) & 0xFFFFFFFF)
    r.write(regs.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK)
    assert bool(r.read(regs.STATUS) & STATUS_FEATURES_OK) == accepted
    assert rng.device.driver_features == (wanted if accepted else 0)


def test_queue_registers(rng):
    r = rng.regs
    r.negotiate(bit(F_VERSION_1))
    r.write(regs.QUEUE_SEL, 1)
    assert r.read(regs.QUEUE_NUM_MAX) == 0                      # no queue 1
    r.write(regs.QUEUE_SEL, 0)
    assert r.read(regs.QUEUE_NUM_MAX) == 1024 and r.read(regs.QUEUE_READY) == 0
    queue = vd.DriverQueue(rng.memory, vd.Allocator(), size=8)
    r.setup_queue(0, queue)
    assert r.read(regs.QUEUE_READY) == 1
    q = rng.device.queues[0]
    assert (q.size, q.desc, q.avail, q.used) == (8, queue.desc, queue.avail, queue.used)
    r.write(regs.QUEUE_READY, 0)
    assert r.read(regs.QUEUE_READY) == 0


def test_used_buffer_interrupt_and_ack(rng):
    r = rng.regs
    r.negotiate(bit(F_VERSION_1))
    queue = vd.DriverQueue(rng.memory, vd.Allocator(), size=8)
    r.setup_queue(0, queue)
    r.driver_ok()
    queue.add([(0x80000, 32, True)])
    r.notify(0)
    assert queue.take_used()[0][1] == 32
    assert r.read(regs.INTERRUPT_STATUS) == 1 and rng.irq.level == 1
    r.write(regs.INTERRUPT_ACK, 1)
    assert r.read(regs.INTERRUPT_STATUS) == 0 and rng.irq.level == 0
    r.notify(5)                                                 # no such queue: ignored
    assert rng.irq.level == 0


def test_bad_queue_needs_reset_and_reset_recovers(rng):
    r = rng.regs
    r.negotiate(bit(F_VERSION_1))
    r.write(regs.QUEUE_SEL, 0)
    r.write(regs.QUEUE_NUM, 6)                                  # not a power of two
    r.write(regs.QUEUE_READY, 1)
    assert r.read(regs.QUEUE_READY) == 0
    assert r.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET
    assert rng.irq.level == 0                                   # DRIVER_OK is not set yet ...
    r.driver_ok()
    assert r.read(regs.INTERRUPT_STATUS) == 2 and rng.irq.level == 1   # ... now the driver hears of it
    r.write(regs.STATUS, r.read(regs.STATUS) & ~STATUS_DEVICE_NEEDS_RESET)
    assert r.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET     # the driver cannot clear it
    r.write(regs.STATUS, 0)
    assert r.read(regs.STATUS) == 0 and r.read(regs.INTERRUPT_STATUS) == 0 and rng.irq.level == 0
    assert r.negotiate(bit(F_VERSION_1)) & STATUS_FEATURES_OK
    assert not rng.device.broken


def test_config_space_access_sizes():
    from devicemodel.virtio.serial import VirtioSerial
    s = Setup(lambda memory: VirtioSerial(memory, max_ports=5))
    r = s.regs
    assert r.read(regs.CONFIG + 4) == 5                         # max_nr_ports
    assert r.read(regs.CONFIG + 4, 2) == 5 and r.read(regs.CONFIG + 5, 1) == 0
    assert r.read(regs.CONFIG, 8) == 5 << 32                    # split into two 32-bit reads
    assert r.read(regs.CONFIG + 12) == 0xFFFFFFFF               # past the configuration space


def test_microvm_layout_and_announcement():
    space = AddressSpace("memory")
    lines = []
    bus = VirtioMmioBus(space, lambda line: (lambda level: lines.append((line, level))))
    assert [r.base for r in space.regions] == [0xFEB00000 + 0x200 * i for i in range(8)]
    memory = vd.make_memory()
    first, second = VirtioRng(memory), VirtioRng(memory)
    assert bus.plug(first, "virtio-rng-device").base == 0xFEB00E00
    assert bus.plug(second, "virtio-rng-device").base == 0xFEB00C00
    assert bus.kernel_cmdline() == (" virtio_mmio.device=512@0xfeb00e00:12"
                                    " virtio_mmio.device=512@0xfeb00c00:11")
    lines.clear()
    first.transport.queue_interrupt(0)
    second.transport.config_interrupt()
    assert lines == [(12, 1), (11, 1)]
