"""The virtio console device (VIRTIO 1.x section 5.3) as QEMU's virtio-serial: a bus of
ports (``virtconsole`` and ``virtserialport``), each on a character device.

Queues: port 0's receive and transmit queues (0, 1), the control receive and transmit
queues (2, 3), then port n's at 2n + 2 and 2n + 3. With VIRTIO_CONSOLE_F_MULTIPORT
(always offered, as QEMU does) ports are announced over the control queues with
{le32 id; le16 event; le16 value} messages:

    driver: DEVICE_READY  ->  device: DEVICE_ADD for each port
    driver: PORT_READY n  ->  device: CONSOLE_PORT (a console), PORT_NAME + name (a named
                              port), PORT_OPEN 1 (the host side is always connected)
    driver: PORT_OPEN n v ->  the guest opened (1) or closed (0) port n

Without MULTIPORT only port 0 exists and is always open. What the guest transmits goes
to the port's character device; what the character device receives waits until the
guest has the port open and has queued receive buffers. With VIRTIO_CONSOLE_F_EMERG_WRITE
a byte written to ``emerg_wr`` goes straight to port 0 (without MULTIPORT, as QEMU).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Optional

from construct import Int16ul, Int32ul, Struct

from devicemodel.errors import ConfigError
from devicemodel.guest_memory import GuestMemory
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import ID_CONSOLE, QEMU_QUEUE_MAX_SIZE, STATUS_DRIVER_OK, bit
from devicemodel.virtio.virtqueue import Chain, gather, scatter

F_MULTIPORT = 1
F_EMERG_WRITE = 2

DEVICE_READY, DEVICE_ADD, DEVICE_REMOVE, PORT_READY, CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME = range(8)

ConsoleConfig = Struct(
    "cols" / Int16ul,
    "rows" / Int16ul,
    "max_nr_ports" / Int32ul,
    "emerg_wr" / Int32ul,
)
EMERG_WR_OFFSET = 8
Control = struct.Struct("<IHH")

DEFAULT_MAX_PORTS = 31
MAX_PORTS = 511              # QEMU: two queues per port and the control pair fit in its 1024
CONTROL_QUEUE_SIZE = 32


class SerialPort:
    """One port: ``nr`` (its number), a name for the guest, a console or not, and the
    character device on the host side."""

    regions = ()      # no registers of its own: it lives on the virtio-serial device

    def __init__(self, chardev, name: Optional[str] = None, is_console: bool = False):
        self.chardev = chardev
        self.name = name
        self.is_console = is_console
        self.nr: Optional[int] = None
        self.serial: Optional[VirtioSerial] = None
        self.guest_connected = False
        self.pending = bytearray()     # received from the chardev, not yet in the guest's buffers

    def receive(self, data: bytes) -> None:
        """Bytes from the character device (the caller holds the big lock)."""
        self.pending += data
        if self.serial is not None:
            self.serial.deliver(self)


class VirtioSerial(VirtioDevice):
    device_id = ID_CONSOLE
    name = "virtio-serial"

    def __init__(self, memory: GuestMemory, max_ports: int = DEFAULT_MAX_PORTS, emergency_write: bool = True):
        if not 1 <= max_ports <= MAX_PORTS:
            raise ConfigError(f"max_ports must be between 1 and {MAX_PORTS}")
        self.max_ports = max_ports
        self.emergency_write = emergency_write
        self.ports: dict[int, SerialPort] = {}
        self.control_out: deque[bytes] = deque()
        super().__init__(memory, [QEMU_QUEUE_MAX_SIZE] * (2 * max_ports + 2), default_queue_size=CONTROL_QUEUE_SIZE)

    # --- ports ---------------------------------------------------------------------

    def add_port(self, port: SerialPort, nr: Optional[int] = None) -> None:
        """Plug a port in: number ``nr``, or port 0 for the first console, else the lowest free."""
        if nr is None:
            free = [n for n in range(self.max_ports) if n not in self.ports and (n or port.is_console)]
            if not free:
                raise ConfigError(f"virtio-serial: all {self.max_ports} ports are in use")
            nr = free[0]
        if nr >= self.max_ports:
            raise ConfigError(f"virtio-serial: port number {nr} is out of range (max_ports={self.max_ports})")
        if nr in self.ports:
            raise ConfigError(f"virtio-serial: port number {nr} is already in use")
        if nr == 0 and not port.is_console:
            raise ConfigError("virtio-serial: port number 0 is reserved for virtconsole devices")
        port.nr, port.serial = nr, self
        self.ports[nr] = port

    @staticmethod
    def _queues_of(nr: int) -> tuple[int, int]:
        return (0, 1) if nr == 0 else (2 * nr + 2, 2 * nr + 3)

    def _multiport(self) -> bool:
        return self.has_feature(F_MULTIPORT)

    # --- device -------------------------------------------------------------------

    def device_features(self) -> int:
        return bit(F_MULTIPORT) | (bit(F_EMERG_WRITE) if self.emergency_write else 0)

    def config_bytes(self) -> bytes:
        return ConsoleConfig.build(dict(cols=0, rows=0, max_nr_ports=self.max_ports, emerg_wr=0))

    def config_written(self, offset: int, data: bytes) -> None:
        port = self.ports.get(0)
        if (offset == EMERG_WR_OFFSET and self.emergency_write and port is not None
                and not self._multiport()):
            port.chardev.write(data[:1])

    def device_reset(self) -> None:
        self.control_out.clear()
        for port in self.ports.values():
            port.guest_connected = False

    def handle_queue(self, queue) -> None:
        if queue.index == 2:
            self._send_control()
        elif queue.index == 3:
            self.drain(queue, self._control_from_guest)
        else:
            nr = 0 if queue.index < 2 else (queue.index - 2) // 2
            port = self.ports.get(nr)
            if queue.index % 2 == 1:
                self.drain(queue, lambda chain: self._transmit(port, chain))
            elif port is not None:
                self.deliver(port)

    def _transmit(self, port: Optional[SerialPort], chain: Chain) -> int:
        if port is not None:
            port.chardev.write(gather(self.memory, chain.readable, 0, chain.readable_length))
        return 0

    def _open(self, port: SerialPort) -> bool:
        return port.guest_connected or not self._multiport()

    def deliver(self, port: SerialPort) -> None:
        """Move what the port received into the guest's receive buffers, if it can take it."""
        if not port.pending or not self.status & STATUS_DRIVER_OK or not self._open(port):
            return
        if port.nr and not self._multiport():
            return
        queue = self.queues[self._queues_of(port.nr)[0]]
        if not queue.ready:
            return
        self.guarded(lambda: self._fill_receive(queue, port))

    def _fill_receive(self, queue, port: SerialPort) -> None:
        filled = False
        while port.pending and (chain := queue.pop()) is not None:
            count = scatter(self.memory, chain.writable, 0, port.pending)
            del port.pending[:count]
            queue.push(chain, count)
            filled = True
        queue.wants_kicks()
        if filled:
            self.used_buffers(queue)

    # --- the control queues -------------------------------------------------------

    def _control(self, nr: int, event: int, value: int, payload: bytes = b"") -> None:
        self.control_out.append(Control.pack(nr, event, value) + payload)
        queue = self.queues[2]
        if queue.ready:
            self.guarded(self._send_control)

    def _send_control(self) -> None:
        queue, sent = self.queues[2], False
        while self.control_out and (chain := queue.pop()) is not None:
            queue.push(chain, scatter(self.memory, chain.writable, 0, self.control_out.popleft()))
            sent = True
        queue.wants_kicks()
        if sent:
            self.used_buffers(queue)

    def _control_from_guest(self, chain: Chain) -> int:
        if chain.readable_length < Control.size:
            return 0        # QEMU ignores short control messages
        nr, event, value = Control.unpack(gather(self.memory, chain.readable, 0, Control.size))
        if event == DEVICE_READY and value:
            for number in sorted(self.ports):
                self._control(number, DEVICE_ADD, 1)
            return 0
        port = self.ports.get(nr)
        if port is None:
            return 0
        if event == PORT_READY and value:
            if port.is_console:
                self._control(nr, CONSOLE_PORT, 1)
            if port.name is not None:
                self._control(nr, PORT_NAME, 1, port.name.encode() + b"\0")
            self._control(nr, PORT_OPEN, 1)
        elif event == PORT_OPEN:
            port.guest_connected = bool(value)
            self.deliver(port)
        return 0
