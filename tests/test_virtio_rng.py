"""virtio-rng: the driver's writable buffers come back full of the host's entropy."""

import virtio_driver as vd
from devicemodel.address_space import AddressSpace
from devicemodel.virtio.mmio import VirtioMmio
from devicemodel.virtio.rng import MAX_CHAIN_BYTES, VirtioRng
from devicemodel.virtio.spec import F_VERSION_1, bit


def setup(entropy=None):
    memory = vd.make_memory(4 << 20)
    device = VirtioRng(memory) if entropy is None else VirtioRng(memory, entropy=entropy)
    space = AddressSpace("memory")
    space.add_region(VirtioMmio(vd.BASE, vd.IrqRecorder(), device).region)
    regs = vd.MmioDriver(space)
    regs.negotiate(bit(F_VERSION_1))
    queue = vd.DriverQueue(memory, vd.Allocator(), size=8)
    regs.setup_queue(0, queue)
    regs.driver_ok()
    return memory, regs, queue


def test_buffers_are_filled_from_the_entropy_source():
    asked = []
    memory, regs, queue = setup(entropy=lambda n: (asked.append(n), bytes(range(n % 256)) * (n // 256 + 1))[1][:n])
    head = queue.add([(0x100000, 16, True), (0x100100, 48, True)])
    regs.notify(0)
    assert queue.take_used() == [(head, 64)] and asked == [64]
    assert memory.read(0x100000, 16) == bytes(range(64))[:16]
    assert memory.read(0x100100, 48) == bytes(range(64))[16:]


def test_real_entropy_and_the_per_chain_limit():
    memory, regs, queue = setup()
    queue.add([(0x100000, 64, True)])
    queue.add([(0x200000, 2 * MAX_CHAIN_BYTES, True)])
    queue.add([(0x300000, 32, False)])                         # nothing writable: nothing to fill
    regs.notify(0)
    assert [length for _, length in queue.take_used()] == [64, MAX_CHAIN_BYTES, 0]
    assert memory.read(0x100000, 64) != bytes(64)
    assert memory.read(0x200000 + MAX_CHAIN_BYTES, 16) == bytes(16)
