"""virtio-net through its virtio-mmio registers, driven as a guest driver would: features
and configuration, transmit (frames reach the backend without the header, in any
layout), receive with and without mergeable buffers, frames held while there are no
buffers (and the backend held back through a NetPort), the link switched off and on,
the backend's transmit stall, and broken rings."""

import random
import struct
import threading

import pytest

import virtio_driver as vd
from devicemodel.address_space import AddressSpace
from devicemodel.net.port import NetPort
from devicemodel.virtio import mmio as regs
from devicemodel.virtio.mmio import VirtioMmio
from devicemodel.virtio.net import F_MAC, F_MRG_RXBUF, F_STATUS, NetHeader, VirtioNet
from devicemodel.virtio.spec import (F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, INTERRUPT_CONFIG, INTERRUPT_VRING,
                                     STATUS_DEVICE_NEEDS_RESET, bit)

MAC = bytes.fromhex("525400abcdef")
HEADER = bytes(NetHeader.size)
MiB = 1 << 20


class FakePeer:
    """The NIC's side of a backend: records what the guest sent."""

    def __init__(self):
        self.sent = []
        self.room = True
        self.ready = 0

    def can_send(self):
        return self.room

    def send(self, frame):
        self.sent.append(frame)

    def receive_ready(self):
        self.ready += 1


class Nic:
    def __init__(self, features=bit(F_VERSION_1) | bit(F_MAC) | bit(F_STATUS), rx_size=16, tx_size=16):
        self.memory = vd.make_memory(8 * MiB)
        self.alloc = vd.Allocator()
        self.device = VirtioNet(self.memory, MAC)
        self.peer = self.device.peer = FakePeer()
        self.irq = vd.IrqRecorder()
        space = AddressSpace("memory")
        space.add_region(VirtioMmio(vd.BASE, self.irq, self.device).region)
        self.regs = vd.MmioDriver(space)
        self.status = self.regs.negotiate(features)
        self.rx = vd.DriverQueue(self.memory, self.alloc, size=rx_size)
        self.tx = vd.DriverQueue(self.memory, self.alloc, size=tx_size)
        self.regs.setup_queue(0, self.rx)
        self.regs.setup_queue(1, self.tx)
        self.regs.driver_ok()

    def buffer(self, data: bytes) -> int:
        addr = self.alloc(len(data))
        self.memory.write(addr, data)
        return addr

    def transmit(self, pieces, notify=True):
        """Queue a chain of device-readable buffers holding ``pieces``."""
        head = self.tx.add([(self.buffer(p), len(p), False) for p in pieces])
        if notify:
            self.regs.notify(1)
        return head

    def give(self, count, size):
        """Queue ``count`` one-buffer receive chains of ``size`` bytes; their addresses."""
        addrs = []
        for _ in range(count):
            addrs.append(self.alloc(size))
            self.rx.add([(addrs[-1], size, True)])
        self.regs.notify(0)
        return addrs

    def config(self, offset, size):
        return self.regs.read(regs.CONFIG + offset, size)


def frame(length: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(length))


def test_features_and_configuration():
    nic = Nic()
    offered = nic.regs.device_features()
    assert offered & (bit(F_MAC) | bit(F_STATUS) | bit(F_MRG_RXBUF) | bit(F_VERSION_1)) == \
        bit(F_MAC) | bit(F_STATUS) | bit(F_MRG_RXBUF) | bit(F_VERSION_1)
    # no checksum, segmentation, control-queue or multiqueue features
    for feature in (0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 22):
        assert not offered & bit(feature), feature
    assert nic.regs.read(regs.DEVICE_ID) == 1
    assert bytes(nic.config(i, 1) for i in range(6)) == MAC
    assert nic.config(6, 2) == 1                      # VIRTIO_NET_S_LINK_UP
    assert nic.config(8, 2) == 1                      # max_virtqueue_pairs
    nic.regs.write(regs.QUEUE_SEL, 0)
    assert nic.regs.read(regs.QUEUE_NUM_MAX) == 256
    assert not VirtioNet(vd.make_memory(), MAC, mergeable=False).host_features & bit(F_MRG_RXBUF)


@pytest.mark.parametrize("pieces", [
    [HEADER + b"\x01" * 60],                                  # header and frame together
    [HEADER, b"\x01" * 60],                                   # header alone
    [HEADER[:5], HEADER[5:] + b"\x01" * 10, b"\x01" * 50],    # header split (any layout)
])
def test_transmit_reaches_the_backend_without_the_header(pieces):
    nic = Nic()
    head = nic.transmit(pieces)
    assert nic.peer.sent == [b"\x01" * 60]
    assert nic.tx.take_used() == [(head, 0)]
    assert nic.regs.ack_interrupts() == INTERRUPT_VRING


def test_transmit_many_frames_in_order():
    nic = Nic()
    frames = [frame(64 + i, seed=i) for i in range(10)]
    for f in frames:
        nic.transmit([HEADER + f], notify=False)
    nic.regs.notify(1)
    assert nic.peer.sent == frames
    assert len(nic.tx.take_used()) == 10


def test_transmit_chain_shorter_than_the_header_needs_a_reset(capsys):
    nic = Nic()
    nic.transmit([b"\x00" * 11])
    assert nic.regs.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET
    assert nic.regs.ack_interrupts() & INTERRUPT_CONFIG
    assert "virtio-net header incorrect" in capsys.readouterr().err
    assert nic.peer.sent == []
    assert nic.device.receive(frame(60))                   # a broken device drops what arrives


def test_receive_without_mergeable_buffers():
    nic = Nic()
    addrs = nic.give(2, 1526)
    f = frame(1514)
    assert nic.device.receive(f)
    [(head, length)] = nic.rx.take_used()
    assert length == 12 + 1514
    data = nic.memory.read(addrs[0], length)
    assert NetHeader.unpack(data[:12]) == (0, 0, 0, 0, 0, 0, 1)
    assert data[12:] == f
    assert nic.regs.ack_interrupts() == INTERRUPT_VRING


def test_receive_into_a_chain_of_several_buffers():
    nic = Nic()
    a, b = nic.alloc(10), nic.alloc(200)
    head = nic.rx.add([(a, 10, True), (b, 200, True)])
    nic.regs.notify(0)
    f = frame(100)
    assert nic.device.receive(f)
    assert nic.rx.take_used() == [(head, 112)]
    assert nic.memory.read(a, 10) + nic.memory.read(b, 102) == struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 1) + f


def test_frame_too_big_for_the_chain_is_dropped_and_the_chain_kept():
    nic = Nic()
    nic.give(1, 100)
    assert nic.device.receive(frame(200))                  # dropped
    assert nic.rx.take_used() == []
    assert nic.device.receive(frame(50, seed=2))           # the next frame takes the chain
    assert [length for _, length in nic.rx.take_used()] == [62]


def test_mergeable_buffers_split_a_frame_and_count_them():
    nic = Nic(features=bit(F_VERSION_1) | bit(F_MRG_RXBUF))
    addrs = nic.give(4, 128)
    f = frame(300)
    assert nic.device.receive(f)
    used = nic.rx.take_used()
    assert [length for _, length in used] == [128, 128, 56]
    data = b"".join(nic.memory.read(addrs[i], length) for i, (_, length) in enumerate(used))
    assert NetHeader.unpack(data[:12])[-1] == 3            # num_buffers
    assert data[12:] == f
    assert nic.device.receive(frame(20, seed=3))           # the fourth buffer
    [(head, length)] = nic.rx.take_used()
    assert length == 32 and NetHeader.unpack(nic.memory.read(addrs[3], 12))[-1] == 1


def test_mergeable_receive_sees_all_used_entries_at_once():
    """The used index moves once for a frame, after all its entries are written."""
    nic = Nic(features=bit(F_VERSION_1) | bit(F_MRG_RXBUF))
    nic.give(3, 64)
    writes = []
    original = nic.memory.write_int

    def spy(gpa, size, value):
        if gpa == nic.rx.used + 2:
            writes.append(value)
        original(gpa, size, value)

    nic.memory.write_int = spy
    assert nic.device.receive(frame(150))
    assert writes == [3]


def test_no_buffers_hold_the_frame_until_the_driver_gives_some():
    nic = Nic(features=bit(F_VERSION_1) | bit(F_MRG_RXBUF))
    f = frame(300)
    assert not nic.device.receive(f)                       # no buffers at all
    nic.give(2, 128)                                       # 256 bytes: not enough for 312
    ready = nic.peer.ready
    assert not nic.device.receive(f)
    assert nic.rx.take_used() == []
    assert nic.device.queues[0].last_avail == 0            # nothing taken
    nic.give(1, 128)
    assert nic.peer.ready == ready + 1                     # the notify tells the backend
    assert nic.device.receive(f)
    assert [length for _, length in nic.rx.take_used()] == [128, 128, 56]


def test_no_buffers_ask_for_a_kick_with_event_idx():
    nic = Nic(features=bit(F_VERSION_1) | bit(F_EVENT_IDX))
    nic.give(1, 1526)
    assert nic.device.receive(frame(60))
    assert not nic.device.receive(frame(60))
    assert nic.rx.avail_event() == 1                       # kick when entry 1 is added


def test_receive_waits_for_driver_ok():
    nic = Nic()
    nic.regs.write(regs.STATUS, 0)                         # reset: the driver is gone
    assert not nic.device.receive(frame(60))


def test_link_down_and_up(capsys):
    nic = Nic()
    nic.regs.ack_interrupts()
    generation = nic.regs.read(regs.CONFIG_GENERATION)
    nic.device.set_link(False)
    assert nic.config(6, 2) == 0
    assert nic.regs.read(regs.CONFIG_GENERATION) != generation
    assert nic.regs.ack_interrupts() == INTERRUPT_CONFIG
    nic.give(1, 1526)
    assert nic.device.receive(frame(60))                   # dropped
    assert nic.rx.take_used() == []
    nic.transmit([HEADER + frame(60)])                     # consumed, not sent
    assert nic.peer.sent == [] and len(nic.tx.take_used()) == 1
    nic.regs.ack_interrupts()
    nic.device.set_link(False)
    assert nic.regs.ack_interrupts() == 0                  # no change, no interrupt
    nic.device.set_link(True)
    assert nic.config(6, 2) == 1 and nic.regs.ack_interrupts() == INTERRUPT_CONFIG
    assert nic.device.receive(frame(60))
    assert len(nic.rx.take_used()) == 1


def test_transmit_waits_while_the_backend_is_full():
    nic = Nic()
    nic.peer.room = False
    nic.transmit([HEADER + frame(60)])
    assert nic.peer.sent == [] and nic.tx.take_used() == []
    nic.peer.room = True
    nic.device.tx_ready()
    assert nic.peer.sent == [frame(60)] and len(nic.tx.take_used()) == 1


class FakeNetdev:
    def __init__(self):
        self.sent = []

    def can_send(self):
        return True

    def send(self, f):
        self.sent.append(f)


def test_a_held_frame_holds_the_backend_thread_until_buffers_come():
    nic = Nic()
    bql = threading.RLock()
    port = NetPort(nic.device, FakeNetdev(), bql)
    nic.device.peer = port
    done = threading.Event()
    f = frame(100)
    thread = threading.Thread(target=lambda: (port.deliver(f), done.set()))
    thread.start()
    assert not done.wait(0.3)                              # no buffers: the backend waits
    with bql:
        addrs = nic.give(1, 1526)                          # the notify wakes it
    assert done.wait(5)
    thread.join()
    [(_, length)] = nic.rx.take_used()
    assert nic.memory.read(addrs[0] + 12, length - 12) == f
    nic.transmit([HEADER + f])
    assert port.netdev.sent == [f]


def test_closing_the_port_releases_a_held_frame():
    nic = Nic()
    port = NetPort(nic.device, FakeNetdev(), threading.RLock())
    nic.device.peer = port
    thread = threading.Thread(target=port.deliver, args=(frame(60),))
    thread.start()
    port.close()
    thread.join(5)
    assert not thread.is_alive()


def test_receive_queue_without_writable_buffers_needs_a_reset(capsys):
    nic = Nic()
    nic.rx.add([(nic.buffer(b"x" * 64), 64, False)])
    nic.regs.notify(0)
    assert nic.device.receive(frame(60))
    assert nic.regs.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET
    assert "no in buffers" in capsys.readouterr().err


def test_device_reset_keeps_the_link_and_works_again():
    nic = Nic()
    nic.transmit([b"\x00"])                                # breaks it
    assert nic.regs.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET
    nic.device.set_link(False)
    fresh_rx = vd.DriverQueue(nic.memory, nic.alloc, size=16)
    nic.regs.negotiate(bit(F_VERSION_1) | bit(F_STATUS))
    nic.regs.setup_queue(0, fresh_rx)
    nic.regs.driver_ok()
    assert nic.config(6, 2) == 0                           # the link state is the host's
    nic.device.set_link(True)
    addr = nic.alloc(1526)
    fresh_rx.add([(addr, 1526, True)])
    assert nic.device.receive(frame(60))
    assert len(fresh_rx.take_used()) == 1


# --- random ring contents ---------------------------------------------------------

def _scribble(rng, nic, queue, writable):
    """Mostly plausible chains in a random layout, then a few random corruptions."""
    for i in range(queue.size):
        flags = rng.choice([0, 1]) | (2 if writable and rng.random() < 0.9 else 0)
        if rng.random() < 0.05:
            flags = rng.choice([4, 5, 6, rng.randrange(1 << 16)])
        addr, length = nic.alloc(256), rng.choice([1, 11, 12, 13, 64, 200, 256])
        nic.memory.write(queue.desc + 16 * i, struct.pack("<QIHH", addr, length, flags, rng.randrange(queue.size)))
        nic.memory.write_int(queue.avail + 4 + 2 * i, 2, rng.randrange(queue.size))
    nic.memory.write_int(queue.avail + 2, 2, rng.randrange(1, queue.size + 1))
    for _ in range(rng.choice([0, 0, 1, 2])):
        target = rng.choice([queue.desc + rng.randrange(16 * queue.size), queue.avail + rng.randrange(4 + 2 * queue.size)])
        nic.memory.write(target, bytes([rng.randrange(256)]))


@pytest.mark.parametrize("seed", range(80))
def test_random_rings_never_raise(seed, capsys):
    rng = random.Random(seed)
    features = bit(F_VERSION_1) | rng.choice([0, bit(F_MRG_RXBUF)]) | rng.choice([0, bit(F_INDIRECT_DESC)]) | \
        rng.choice([0, bit(F_EVENT_IDX)])
    nic = Nic(features=features, rx_size=8, tx_size=8)
    _scribble(rng, nic, nic.tx, writable=False)
    _scribble(rng, nic, nic.rx, writable=True)
    nic.regs.notify(1)
    nic.regs.notify(0)
    for _ in range(6):
        taken = nic.device.receive(frame(rng.randrange(1, 1600), seed))
        assert taken in (True, False)
    if nic.regs.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET:
        assert nic.device.receive(frame(60))               # broken: frames are dropped
        assert "the device needs a reset" in capsys.readouterr().err
        return
    # not broken: whatever was used is well-formed
    for _, length in nic.rx.take_used():
        assert 0 < length
    for _, length in nic.tx.take_used():
        assert length == 0
    assert all(0 < len(f) <= 69632 for f in nic.peer.sent)
