"""Split virtqueues with everything coming from untrusted guest memory: the rules of
VIRTIO 1.x 2.7 enforced one by one (each breach: VirtqueueError, so the device needs a
reset), notification suppression with and without VIRTIO_F_EVENT_IDX, and a fuzz test
that throws random rings at whole devices on their transport -- no host exception, no
hang, no write outside guest RAM, and a broken rule always ends in DEVICE_NEEDS_RESET."""

import struct

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import virtio_driver as vd
from devicemodel.address_space import AddressSpace
from devicemodel.block.drive import open_drive, parse_drive
from devicemodel.chardev import NullChardev
from devicemodel.virtio import mmio as regs
from devicemodel.virtio.blk import VirtioBlk
from devicemodel.virtio.mmio import VirtioMmio
from devicemodel.virtio.rng import VirtioRng
from devicemodel.virtio.serial import SerialPort, VirtioSerial
from devicemodel.virtio.spec import (DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, F_EVENT_IDX, F_INDIRECT_DESC,
                                     F_VERSION_1, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, bit)
from devicemodel.virtio.virtqueue import Virtqueue, VirtqueueError

RAM = 1 << 20


@pytest.fixture
def memory():
    return vd.make_memory(RAM)


def live_queue(memory, size=8, indirect=True, event_idx=False, max_size=1024):
    """A device-side queue and the driver's side of it, enabled."""
    driver = vd.DriverQueue(memory, vd.Allocator(), size=size)
    queue = Virtqueue(0, memory, max_size)
    queue.enable(size, driver.desc, driver.avail, driver.used, indirect=indirect, event_idx=event_idx)
    return queue, driver


def desc(memory, table, index, addr, length, flags, next_index=0):
    memory.write(table + 16 * index, struct.pack("<QIHH", addr, length, flags, next_index))


def test_chains_in_and_out(memory):
    queue, driver = live_queue(memory)
    assert queue.pop() is None
    head = driver.add([(0x80000, 16, False), (0x80100, 32, False), (0x80200, 64, True)])
    chain = queue.pop()
    assert chain.head == head and chain.readable == [(0x80000, 16), (0x80100, 32)]
    assert chain.writable == [(0x80200, 64)] and chain.writable_length == 64
    assert queue.pop() is None
    queue.push(chain, 10)
    assert driver.take_used() == [(head, 10)]
    driver.add([(0x81000, 100, True), (0x82000, 50, True)], indirect=True)
    chain = queue.pop()
    assert chain.readable == [] and chain.writable == [(0x81000, 100), (0x82000, 50)]


def test_indexes_wrap_at_16_bits(memory):
    queue, driver = live_queue(memory, size=4)
    queue.last_avail = queue.used_idx = driver.avail_idx = driver.last_used = 0xFFFE
    for _ in range(4):
        head = driver.add([(0x90000, 8, True)])
        chain = queue.pop()
        queue.push(chain, 8)
        assert driver.take_used() == [(head, 8)]
    assert queue.last_avail == 2 and queue.used_idx == 2


@pytest.mark.parametrize("size, desc_addr, avail_addr, used_addr, message", [
    (0, 0x1000, 0x2000, 0x3000, "not a power of two"),
    (6, 0x1000, 0x2000, 0x3000, "not a power of two"),
    (2048, 0x1000, 0x20000, 0x30000, "not a power of two between 1 and 1024"),
    (8, 0x1008, 0x2000, 0x3000, "not aligned"),
    (8, 0x1000, 0x2001, 0x3000, "not aligned"),
    (8, 0x1000, 0x2000, 0x3002, "not aligned"),
    (8, RAM - 64, 0x2000, 0x3000, "not guest RAM"),
    (8, 0x1000, 0x2000, (1 << 64) - 32, "outside the physical address space"),
])
def test_bad_queue_layouts(memory, size, desc_addr, avail_addr, used_addr, message):
    queue = Virtqueue(0, memory, 1024)
    with pytest.raises(VirtqueueError, match=message):
        queue.enable(size, desc_addr, avail_addr, used_addr, indirect=True, event_idx=True)
    assert not queue.ready


def broken_chain(memory, queue, driver, build):
    """Write descriptors with ``build(table)``, make head 0 available; the error popping it."""
    build(driver.desc)
    driver.publish(0)
    with pytest.raises(VirtqueueError) as e:
        queue.pop()
    return str(e.value)


@pytest.mark.parametrize("build, message", [
    (lambda m, t: (desc(m, t, 0, 0x80000, 16, DESC_F_NEXT, 1), desc(m, t, 1, 0x80000, 16, DESC_F_NEXT, 0)),
     "loops"),
    (lambda m, t: desc(m, t, 0, 0x80000, 16, DESC_F_NEXT, 8), "next index 8 outside the table"),
    (lambda m, t: desc(m, t, 0, 0x80000, 0, 0), "zero-sized buffer"),
    (lambda m, t: desc(m, t, 0, RAM - 4, 8, 0), "not guest RAM"),
    (lambda m, t: desc(m, t, 0, (1 << 64) - 8, 16, 0), "outside the physical address space"),
    (lambda m, t: desc(m, t, 0, 0x80000, 0xFFFFFFFF, 0), "not guest RAM"),
    (lambda m, t: (desc(m, t, 0, 0x80000, 16, DESC_F_WRITE | DESC_F_NEXT, 1), desc(m, t, 1, 0x80100, 16, 0)),
     "readable buffer after a writable one"),
    (lambda m, t: (desc(m, t, 0, 0x70000, 32, DESC_F_INDIRECT),
                   desc(m, 0x70000, 0, 0x70000, 32, DESC_F_INDIRECT)), "indirect descriptor inside an indirect"),
    (lambda m, t: desc(m, t, 0, 0x70000, 32, DESC_F_INDIRECT | DESC_F_NEXT, 1), "indirect descriptor with NEXT"),
    (lambda m, t: desc(m, t, 0, 0x70000, 24, DESC_F_INDIRECT), "indirect table of 24 bytes"),
    (lambda m, t: desc(m, t, 0, 0x70000, 0, DESC_F_INDIRECT), "indirect table of 0 bytes"),
    (lambda m, t: desc(m, t, 0, RAM - 16, 32, DESC_F_INDIRECT), "indirect table: DMA range"),
    (lambda m, t: (desc(m, t, 0, 0x70000, 32, DESC_F_INDIRECT),
                   desc(m, 0x70000, 0, 0x80000, 8, DESC_F_NEXT, 1), desc(m, 0x70000, 1, 0x80000, 8, DESC_F_NEXT, 0)),
     "loops or is longer than its table (2)"),
])
def test_broken_chains(memory, build, message):
    queue, driver = live_queue(memory)
    assert message in broken_chain(memory, queue, driver, lambda table: build(memory, table))


def test_indirect_needs_the_feature(memory):
    queue, driver = live_queue(memory, indirect=False)
    message = broken_chain(memory, queue, driver, lambda t: desc(memory, t, 0, 0x70000, 16, DESC_F_INDIRECT))
    assert "without VIRTIO_F_INDIRECT_DESC" in message


def test_bad_heads_and_runaway_available_index(memory):
    queue, driver = live_queue(memory)
    memory.write_int(driver.avail + 4, 2, 8)         # head 8 of a queue of 8
    memory.write_int(driver.avail + 2, 2, 1)
    with pytest.raises(VirtqueueError, match="head 8 is outside"):
        queue.pop()
    queue, driver = live_queue(memory)
    memory.write_int(driver.avail + 2, 2, 9)         # 9 new entries in a queue of 8
    with pytest.raises(VirtqueueError, match="available index moved 9 entries"):
        queue.pop()


def test_interrupt_suppression_without_event_idx(memory):
    queue, driver = live_queue(memory)
    driver.add([(0x80000, 8, True)])
    queue.push(queue.pop(), 0)
    assert queue.needs_interrupt()
    memory.write_int(driver.avail, 2, 1)             # VIRTQ_AVAIL_F_NO_INTERRUPT
    assert not queue.needs_interrupt()


def test_event_idx(memory):
    queue, driver = live_queue(memory, event_idx=True)
    driver.set_used_event(1)                         # interrupt once used entry 1 is written
    for expected in (True, True, False, True):       # the first notification is always due
        driver.add([(0x80000, 8, True)])
        queue.push(queue.pop(), 0)
        assert queue.needs_interrupt() == expected, queue.used_idx
        if queue.used_idx == 2:
            driver.set_used_event(3)
    queue.wants_kicks()
    assert driver.avail_event() == queue.last_avail == 4


# --- whole devices under random rings -------------------------------------------

# Mostly plausible values (so that chains get served), sometimes anything at all.
SIZES = st.sampled_from([8, 16, 32, 1024] * 3 + [1, 2, 3, 0, 4, 2048, 65535])
RINGS = st.one_of(st.just((0x2000, 0x3000, 0x4000)), st.just((0x2000, 0x3000, 0x4000)),
                  st.tuples(*[st.one_of(st.integers(0x1000, 0x20000).map(lambda a: a & ~0xF),
                                        st.integers(0, (1 << 64) - 1),
                                        st.sampled_from([RAM - 16, RAM - 2, (1 << 64) - 16, 0xFEB00000]))] * 3))
DESCRIPTOR = st.tuples(st.one_of(st.integers(0x10000, 0x80000), st.integers(0x10000, 0x80000),
                                 st.integers(0, (1 << 64) - 1), st.just(0x5000)),
                       st.one_of(st.integers(1, 600), st.integers(1, 600), st.integers(0, 0xFFFFFFFF)),
                       st.sampled_from([0, 1, 2, 3, 3, 2, 1, 4, 5, 6, 7]), st.integers(0, 20))
QUEUES = st.sampled_from([0] * 8 + [1, 2, 3, 5])


@st.composite
def well_formed(draw):
    """Chains as a driver builds them (readable buffers, then writable ones), with a few
    descriptors then overwritten by random ones."""
    descriptors, heads, addr = [], [], 0x10000
    for _ in range(draw(st.integers(1, 6))):
        segments = sorted(draw(st.lists(st.tuples(st.integers(1, 600), st.booleans()), min_size=1, max_size=4)),
                          key=lambda segment: segment[1])
        if draw(st.sampled_from([True, True, False])):      # shaped like a request: a header to read, a status to write
            segments = [(draw(st.integers(16, 64)), False)] + segments + [(draw(st.integers(1, 600)), True)]
        heads.append(len(descriptors))
        for i, (length, writable) in enumerate(segments):
            more = i + 1 < len(segments)
            descriptors.append((addr, length, (DESC_F_WRITE if writable else 0) | (DESC_F_NEXT if more else 0),
                                len(descriptors) + 1 if more else 0))
            addr += length
    for index, replacement in draw(st.lists(st.tuples(st.integers(0, len(descriptors) - 1), DESCRIPTOR),
                                            max_size=1)):
        descriptors[index] = replacement
    return descriptors, heads, draw(st.sampled_from([len(heads)] * 6 + [len(heads) + 1, 0xFFFF]))


RANDOM_LAYOUT = st.tuples(st.lists(DESCRIPTOR, min_size=1, max_size=24), st.lists(st.integers(0, 20), max_size=24),
                          st.one_of(st.integers(0, 20), st.integers(0, 0xFFFF)))


def make_device(kind, memory, tmp_path_factory):
    if kind == "blk":
        path = tmp_path_factory.mktemp("fuzz") / "disk.img"
        path.write_bytes(bytes(64 * 1024))
        return VirtioBlk(memory, open_drive(parse_drive(f"file={path},if=none,format=raw", [])))
    if kind == "rng":
        return VirtioRng(memory)
    serial = VirtioSerial(memory, max_ports=2)
    serial.add_port(SerialPort(NullChardev(), is_console=True))
    serial.ports[0].pending += b"input waiting for buffers"
    return serial


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["blk", "rng", "serial"]),
       features=st.sampled_from([bit(F_VERSION_1), bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX)]),
       queue=QUEUES, size=SIZES, rings=RINGS, layout=st.one_of(well_formed(), well_formed(), RANDOM_LAYOUT),
       garbage=st.binary(max_size=512),
       indirect_table=st.lists(DESCRIPTOR, max_size=8), other_notifies=st.lists(QUEUES, max_size=3))
def test_random_rings_never_hurt_the_host(tmp_path_factory, kind, features, queue, size, rings, layout,
                                          garbage, indirect_table, other_notifies):
    descriptors, heads, avail_idx = layout
    memory = vd.make_memory(RAM)
    written = []
    memory.on_write = lambda gpa, length: written.append((gpa, length))
    device = make_device(kind, memory, tmp_path_factory)
    irq = vd.IrqRecorder()
    transport = VirtioMmio(vd.BASE, irq, device)
    space = AddressSpace("memory")
    space.add_region(transport.region)
    driver = vd.MmioDriver(space)
    driver.negotiate(features)
    desc_addr, avail_addr, used_addr = rings
    for gpa, data in ((0x10000, garbage), (avail_addr, struct.pack("<HH", 0, avail_idx))):
        try:
            memory.write(gpa, data)
        except Exception:
            pass
    for table, entries in ((desc_addr, descriptors), (0x5000, indirect_table)):
        for i, (addr, length, flags, next_index) in enumerate(entries):
            try:
                desc(memory, table, i, addr, length, flags, next_index)
            except Exception:
                pass
    for i, head in enumerate(heads):
        try:
            memory.write_int(avail_addr + 4 + 2 * i, 2, head)
        except Exception:
            pass
    driver.write(regs.QUEUE_SEL, queue)
    driver.write(regs.QUEUE_NUM, size)
    for register, value in zip((regs.QUEUE_DESC_LOW, regs.QUEUE_DRIVER_LOW, regs.QUEUE_DEVICE_LOW), rings):
        driver.write(register, value & 0xFFFFFFFF)
        driver.write(register + 4, value >> 32)
    driver.write(regs.QUEUE_READY, 1)
    driver.driver_ok()
    written.clear()
    for index in [queue, *other_notifies]:
        driver.notify(index)
    status = driver.read(regs.STATUS)
    event(f"{kind}: {'needs reset' if device.broken else 'fine'}, "
          f"{'some' if any(q.used_idx for q in device.queues) else 'no'} chains used")
    assert all(0 <= gpa and gpa + length <= RAM for gpa, length in written)
    if device.broken:
        assert status & STATUS_DEVICE_NEEDS_RESET and driver.read(regs.INTERRUPT_STATUS) & 2 and irq.level
        driver.write(regs.STATUS, 0)                  # a reset always brings the device back
        assert driver.read(regs.STATUS) == 0 and not device.broken
    else:
        assert status & STATUS_DRIVER_OK and not status & STATUS_DEVICE_NEEDS_RESET
    if kind == "blk":
        device.drive.close()
