"""virtio-serial with virtconsole/virtserialport ports: port 0 alone without
VIRTIO_CONSOLE_F_MULTIPORT, and the control-queue protocol with it (ports announced,
named, opened), data both ways, input held until the guest can take it, and the
emergency write register."""

import struct

import pytest

import virtio_driver as vd
from devicemodel.address_space import AddressSpace
from devicemodel.virtio import mmio as regs
from devicemodel.virtio import serial as vs
from devicemodel.virtio.mmio import VirtioMmio
from devicemodel.virtio.serial import SerialPort, VirtioSerial
from devicemodel.virtio.spec import F_VERSION_1, bit


class Recorder:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data


class Console:
    def __init__(self, multiport):
        self.memory = vd.make_memory(2 << 20)
        self.alloc = vd.Allocator()
        self.device = VirtioSerial(self.memory, max_ports=4)
        self.console, self.port = Recorder(), Recorder()
        self.device.add_port(SerialPort(self.console, is_console=True))
        self.device.add_port(SerialPort(self.port, name="org.pyhv.test"))
        space = AddressSpace("memory")
        space.add_region(VirtioMmio(vd.BASE, vd.IrqRecorder(), self.device).region)
        self.regs = vd.MmioDriver(space)
        wanted = bit(F_VERSION_1) | (bit(vs.F_MULTIPORT) if multiport else 0)
        self.regs.negotiate(wanted)
        self.queues = {}
        for index in ((0, 1, 2, 3, 4, 5) if multiport else (0, 1)):
            self.queues[index] = vd.DriverQueue(self.memory, self.alloc, size=8)
            self.regs.setup_queue(index, self.queues[index])
        self.regs.driver_ok()

    def send(self, queue, data):
        addr = self.alloc(len(data))
        self.memory.write(addr, data)
        self.queues[queue].add([(addr, len(data), False)])
        self.regs.notify(queue)

    def give_buffers(self, queue, count=1, size=64):
        addrs = [self.alloc(size) for _ in range(count)]
        for addr in addrs:
            self.queues[queue].add([(addr, size, True)])
        self.regs.notify(queue)
        return addrs

    def received(self, queue, addrs):
        return [bytes(self.memory.read(addrs[i], length)) for i, (_, length) in
                enumerate(self.queues[queue].take_used())]

    def control(self, port, event, value):
        self.send(3, struct.pack("<IHH", port, event, value))


def test_port_numbers():
    device = VirtioSerial(vd.make_memory(), max_ports=3)
    device.add_port(SerialPort(Recorder()))
    console = SerialPort(Recorder(), is_console=True)
    device.add_port(console)
    assert sorted(device.ports) == [0, 1] and console.nr == 0   # consoles take port 0
    device.add_port(SerialPort(Recorder()))
    with pytest.raises(Exception, match="all 3 ports are in use"):
        device.add_port(SerialPort(Recorder()))


def test_single_port_without_multiport():
    c = Console(multiport=False)
    c.send(1, b"hello from the guest\n")
    assert c.console.data == b"hello from the guest\n" and c.port.data == b""
    c.device.ports[0].receive(b"typed")                        # no buffer yet: it waits
    addrs = c.give_buffers(0, 2, size=3)
    assert c.received(0, addrs) == [b"typ", b"ed"]
    c.regs.write(regs.CONFIG + vs.EMERG_WR_OFFSET, ord("!"))    # emergency write
    assert c.console.data.endswith(b"!")


def test_multiport_control_protocol():
    c = Console(multiport=True)
    control_buffers = c.give_buffers(2, 8, size=64)
    c.control(0xFFFFFFFF, vs.DEVICE_READY, 1)
    messages = c.received(2, control_buffers)
    assert [struct.unpack("<IHH", m[:8]) for m in messages] == [(0, vs.DEVICE_ADD, 1), (1, vs.DEVICE_ADD, 1)]
    c.control(1, vs.PORT_READY, 1)
    c.control(0, vs.PORT_READY, 1)
    messages = [m for m in c.received(2, control_buffers[2:])]
    assert [struct.unpack("<IHH", m[:8]) for m in messages] == [
        (1, vs.PORT_NAME, 1), (1, vs.PORT_OPEN, 1), (0, vs.CONSOLE_PORT, 1), (0, vs.PORT_OPEN, 1)]
    assert messages[0][8:] == b"org.pyhv.test\0"
    c.send(5, b"to port 1")
    c.send(1, b"to the console")
    assert (c.port.data, c.console.data) == (b"to port 1", b"to the console")
    rx = c.give_buffers(4, 1)
    c.device.ports[1].receive(b"for port 1")                    # the guest has not opened it
    assert c.queues[4].take_used() == []
    c.control(1, vs.PORT_OPEN, 1)
    assert c.received(4, rx) == [b"for port 1"]
    c.regs.write(regs.CONFIG + vs.EMERG_WR_OFFSET, ord("!"))    # not with MULTIPORT (as QEMU)
    assert c.console.data == b"to the console"


def test_control_messages_wait_for_buffers():
    c = Console(multiport=True)
    c.control(0xFFFFFFFF, vs.DEVICE_READY, 1)
    buffers = c.give_buffers(2, 4)
    assert [struct.unpack("<IHH", m[:8])[0] for m in c.received(2, buffers)] == [0, 1]
