"""The virtio network device (VIRTIO 1.2 section 5.1), with QEMU's virtio-net choices.

One pair of queues: receiveq (0) and transmitq (1), 256 entries each (QEMU's
rx_queue_size and tx_queue_size). Features: VIRTIO_NET_F_MAC (the ``mac`` in the
configuration space), VIRTIO_NET_F_STATUS (the link state, VIRTIO_NET_S_LINK_UP, which
the monitor's ``set_link`` changes with a configuration change interrupt) and
VIRTIO_NET_F_MRG_RXBUF (unless ``mrg_rxbuf=off``). No checksum or segmentation offloads are offered, so the guest
sends complete frames and gets complete frames.

Every buffer starts with the 12-byte ``virtio_net_hdr`` (VERSION_1 always has
``num_buffers``): {u8 flags; u8 gso_type; le16 hdr_len, gso_size, csum_start,
csum_offset, num_buffers}.

Transmit: a chain's device-readable bytes are the header and the frame; the header is
dropped and the frame goes to the backend. A chain shorter than the header breaks the
rules (the device needs a reset, as QEMU's "virtio-net header incorrect"). While the
link is down frames are consumed and dropped; while the backend cannot take more, the
chains wait in the ring until it can.

Receive: without MRG_RXBUF a frame goes into one chain, header first (``num_buffers``
= 1); a frame too big for the chain is dropped and the chain left for the next one
(QEMU). With MRG_RXBUF the header and frame fill as many chains as they need, each
one whole but the last, ``num_buffers`` says how many, and the driver sees their used
entries together. A frame that does not fit in the buffers the driver has given yet
waits (``receive`` returns False) until it gives more; the backend is held back
meanwhile (devicemodel/net/port.py). Frames are dropped while the link is down and
once the device needs a reset.
"""

from __future__ import annotations

import struct

from construct import Bytes, Int16ul, Struct

from devicemodel.guest_memory import GuestMemory
from devicemodel.net.netdev import NET_BUFSIZE
from devicemodel.net.port import NoPeer
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import ID_NET, STATUS_DRIVER_OK, bit
from devicemodel.virtio.virtqueue import Chain, VirtqueueError, gather, scatter

F_MAC = 5
F_MRG_RXBUF = 15
F_STATUS = 16

S_LINK_UP = 1

RX, TX = 0, 1
QUEUE_SIZE = 256

NetHeader = struct.Struct("<BBHHHHH")   # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers
NetConfig = Struct(
    "mac" / Bytes(6),
    "status" / Int16ul,
    "max_virtqueue_pairs" / Int16ul,
)


class VirtioNet(VirtioDevice):
    device_id = ID_NET
    name = "virtio-net"

    def __init__(self, memory: GuestMemory, mac: bytes, mergeable: bool = True):
        self.mac = mac
        self.mergeable = mergeable     # QEMU's mrg_rxbuf property: offer VIRTIO_NET_F_MRG_RXBUF
        self.link_up = True
        self.peer = NoPeer()           # the backend, through a NetPort (set by whoever connects one)
        super().__init__(memory, [QUEUE_SIZE, QUEUE_SIZE])

    def device_features(self) -> int:
        return bit(F_MAC) | bit(F_STATUS) | (bit(F_MRG_RXBUF) if self.mergeable else 0)

    def config_bytes(self) -> bytes:
        return NetConfig.build(dict(mac=self.mac, status=S_LINK_UP if self.link_up else 0, max_virtqueue_pairs=1))

    def set_status(self, value: int, driver_features: int = 0) -> None:
        super().set_status(value, driver_features)
        self.peer.receive_ready()      # DRIVER_OK may let a held frame in

    def set_link(self, up: bool) -> None:
        """The monitor's set_link: the driver hears of a change by a configuration interrupt."""
        if up == self.link_up:
            return
        self.link_up = up
        self.config_generation += 1
        if self.status & STATUS_DRIVER_OK:
            self.transport.config_interrupt()
        self.peer.receive_ready()      # a held frame goes in, or is dropped with the link down

    # --- transmit -------------------------------------------------------------------

    def handle_queue(self, queue) -> None:
        if queue.index == RX:
            self.peer.receive_ready()
        else:
            self.drain(queue, self._transmit, self.peer.can_send)

    def tx_ready(self) -> None:
        """The backend takes frames again: send what waits in the transmit queue."""
        queue = self.queues[TX]
        if queue.ready and self.status & STATUS_DRIVER_OK:
            self.guarded(lambda: self.drain(queue, self._transmit, self.peer.can_send))

    def _transmit(self, chain: Chain) -> int:
        if chain.readable_length < NetHeader.size:
            raise VirtqueueError("virtio-net header incorrect")
        length = chain.readable_length - NetHeader.size
        if self.link_up and 0 < length <= NET_BUFSIZE:
            self.peer.send(gather(self.memory, chain.readable, NetHeader.size, length))
        return 0

    # --- receive --------------------------------------------------------------------

    def receive(self, frame: bytes) -> bool:
        """A frame from the backend (under the big lock): True if it was taken or dropped,
        False if it must wait for receive buffers."""
        queue = self.queues[RX]
        if not self.link_up or self.broken:
            return True
        if not self.status & STATUS_DRIVER_OK or not queue.ready:
            return False
        try:
            return self._fill(queue, frame)
        except VirtqueueError as e:
            self.needs_reset(str(e))
            return True

    def _take(self, queue) -> Chain:
        chain = queue.pop()
        if chain is not None and not chain.writable:
            raise VirtqueueError("virtio-net receive queue contains no in buffers")
        return chain

    def _fill(self, queue, frame: bytes) -> bool:
        mergeable = self.has_feature(F_MRG_RXBUF)
        size = NetHeader.size + len(frame)
        chains, room = [], 0
        while room < size and (mergeable or not chains):
            chain = self._take(queue)
            if chain is None:
                queue.wants_kicks()    # first: buffers given from now on come with a kick
                chain = self._take(queue)
            if chain is None:
                queue.unpop(len(chains))
                return False
            chains.append(chain)
            room += chain.writable_length
        if room < size:                # one chain, too small: the frame is dropped
            queue.unpop(len(chains))
            return True
        data = NetHeader.pack(0, 0, 0, 0, 0, 0, len(chains)) + frame
        entries, offset = [], 0
        for chain in chains:
            written = scatter(self.memory, chain.writable, 0, memoryview(data)[offset:offset + chain.writable_length])
            entries.append((chain, written))
            offset += written
        queue.push_all(entries)
        self.used_buffers(queue)
        return True
