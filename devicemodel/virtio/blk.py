"""The virtio block device (VIRTIO 1.x section 5.2), with QEMU's virtio-blk choices.

``num_queues`` request queues (VIRTIO_BLK_F_MQ when more than one), all served alike. A
request is a chain: the header {le32 type; le32 reserved; le64
sector} and, for writes, discards and write-zeroes, the data, all device-readable; then,
device-writable, the data of reads (or the ID) and a final status byte. Requests are
served in order as soon as the driver notifies, however many are queued.

Types: IN (read), OUT (write), FLUSH (the image is fsync'ed), GET_ID (the ``serial``
property, NUL-terminated, at most 20 bytes), DISCARD and WRITE_ZEROES (one segment
{le64 sector; le32 num_sectors; le32 flags}); others complete with UNSUPP. A request
outside the disk, not a whole number of sectors, or one the image fails completes with
IOERR. A chain without a header or a status byte breaks the rules: the device needs a
reset, as in QEMU. As QEMU does, the used length is the size of the writable buffers.
"""

from __future__ import annotations

import struct

from construct import Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

from devicemodel.block.drive import Drive
from devicemodel.block.image import BlockError
from devicemodel.guest_memory import GuestMemory
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import ID_BLOCK, QEMU_QUEUE_MAX_SIZE, bit
from devicemodel.virtio.virtqueue import Chain, VirtqueueError, gather, scatter, segments

F_SEG_MAX = 2
F_GEOMETRY = 4
F_RO = 5
F_BLK_SIZE = 6
F_FLUSH = 9
F_TOPOLOGY = 10
F_MQ = 12
F_DISCARD = 13
F_WRITE_ZEROES = 14

T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
T_BARRIER = 1 << 31          # legacy; ignored, as QEMU does
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
WRITE_ZEROES_FLAG_UNMAP = 1

SECTOR_SIZE = 512
ID_BYTES = 20
MAX_REQUEST_SECTORS = 0x3FFFFF        # QEMU's BDRV_REQUEST_MAX_SECTORS
DEFAULT_QUEUE_SIZE = 256

BlkConfig = Struct(
    "capacity" / Int64ul,
    "size_max" / Int32ul,
    "seg_max" / Int32ul,
    "cylinders" / Int16ul,
    "heads" / Int8ul,
    "sectors" / Int8ul,
    "blk_size" / Int32ul,
    "physical_block_exp" / Int8ul,
    "alignment_offset" / Int8ul,
    "min_io_size" / Int16ul,
    "opt_io_size" / Int32ul,
    "writeback" / Int8ul,
    Padding(1),
    "num_queues" / Int16ul,
    "max_discard_sectors" / Int32ul,
    "max_discard_seg" / Int32ul,
    "discard_sector_alignment" / Int32ul,
    "max_write_zeroes_sectors" / Int32ul,
    "max_write_zeroes_seg" / Int32ul,
    "write_zeroes_may_unmap" / Int8ul,
)
CONFIG_SIZE = BlkConfig.sizeof()      # 57, as QEMU with DISCARD and WRITE_ZEROES

RequestHeader = struct.Struct("<IIQ")
Segment = struct.Struct("<QII")


def guess_geometry(sectors: int) -> tuple[int, int, int]:
    """QEMU's CHS guess for a disk without a partition table: 16 heads, 63 sectors."""
    return min(max(sectors // (16 * 63), 2), 16383), 16, 63


class VirtioBlk(VirtioDevice):
    device_id = ID_BLOCK
    name = "virtio-blk"

    def __init__(self, memory: GuestMemory, drive: Drive, serial: str = "", queue_size: int = DEFAULT_QUEUE_SIZE,
                 num_queues: int = 1):
        self.drive = drive
        self.serial = serial.encode()
        self.queue_size = queue_size
        self.num_queues = num_queues
        super().__init__(memory, [QEMU_QUEUE_MAX_SIZE] * num_queues, default_queue_size=queue_size)

    @property
    def capacity(self) -> int:
        return self.drive.size // SECTOR_SIZE

    def device_features(self) -> int:
        features = bit(F_SEG_MAX) | bit(F_GEOMETRY) | bit(F_BLK_SIZE) | bit(F_TOPOLOGY) | \
            bit(F_DISCARD) | bit(F_WRITE_ZEROES)
        if self.drive.cache.writeback:
            features |= bit(F_FLUSH)
        if self.drive.read_only:
            features |= bit(F_RO)
        if self.num_queues > 1:
            features |= bit(F_MQ)
        return features

    def config_bytes(self) -> bytes:
        cylinders, heads, sectors = guess_geometry(self.capacity)
        return BlkConfig.build(dict(
            capacity=self.capacity, size_max=0, seg_max=self.queue_size - 2, cylinders=cylinders,
            heads=heads, sectors=sectors, blk_size=SECTOR_SIZE, physical_block_exp=0, alignment_offset=0,
            min_io_size=0, opt_io_size=0, writeback=int(self.drive.cache.writeback), num_queues=self.num_queues,
            max_discard_sectors=MAX_REQUEST_SECTORS, max_discard_seg=1, discard_sector_alignment=1,
            max_write_zeroes_sectors=MAX_REQUEST_SECTORS, max_write_zeroes_seg=1, write_zeroes_may_unmap=1))

    def handle_queue(self, queue) -> None:
        self.drain(queue, self._request)

    def _request(self, chain: Chain) -> int:
        if chain.readable_length < RequestHeader.size or not chain.writable:
            raise VirtqueueError("virtio-blk request without its header or status byte")
        kind, _, sector = RequestHeader.unpack(gather(self.memory, chain.readable, 0, RequestHeader.size))
        try:
            status = self._serve(kind & ~T_BARRIER, sector, chain)
        except BlockError:
            status = S_IOERR
        last_addr, last_len = chain.writable[-1]
        self.memory.write(last_addr + last_len - 1, bytes([status]))
        return chain.writable_length

    def _range_ok(self, sector: int, length: int) -> bool:
        count = length // SECTOR_SIZE
        return (length % SECTOR_SIZE == 0 and count <= MAX_REQUEST_SECTORS and
                sector <= self.capacity and count <= self.capacity - sector)

    def _serve(self, kind: int, sector: int, chain: Chain) -> int:
        data_in = chain.writable_length - 1            # the status byte is last
        data_out = chain.readable_length - RequestHeader.size
        if kind == T_IN:
            if not self._range_ok(sector, data_in):
                return S_IOERR
            offset = sector * SECTOR_SIZE
            for addr, length in segments(chain.writable, 0, data_in):
                self.memory.write(addr, self.drive.read(offset, length))
                offset += length
            return S_OK
        if kind == T_OUT:
            if not self._range_ok(sector, data_out) or self.drive.read_only:
                return S_IOERR
            offset = sector * SECTOR_SIZE
            for addr, length in segments(chain.readable, RequestHeader.size, data_out):
                self.drive.write(offset, self.memory.read(addr, length))
                offset += length
            return S_OK
        if kind == T_FLUSH:
            self.drive.flush()
            return S_OK
        if kind == T_GET_ID:
            ident = (self.serial + b"\0")[:min(ID_BYTES, data_in)]
            scatter(self.memory, chain.writable, 0, ident)
            return S_OK
        if kind in (T_DISCARD, T_WRITE_ZEROES):
            return self._discard_or_zero(kind, chain, data_out)
        return S_UNSUPP

    def _discard_or_zero(self, kind: int, chain: Chain, data_out: int) -> int:
        if data_out < Segment.size:
            raise VirtqueueError("virtio-blk discard/write_zeroes header too short")
        if data_out > Segment.size:
            return S_UNSUPP             # one segment only (max_discard_seg = max_write_zeroes_seg = 1)
        sector, count, flags = Segment.unpack(gather(self.memory, chain.readable, RequestHeader.size, Segment.size))
        allowed = 0 if kind == T_DISCARD else WRITE_ZEROES_FLAG_UNMAP
        if flags & ~allowed:
            return S_UNSUPP
        if not self._range_ok(sector, count * SECTOR_SIZE) or self.drive.read_only:
            return S_IOERR
        if kind == T_DISCARD:
            self.drive.discard(sector * SECTOR_SIZE, count * SECTOR_SIZE)
        else:
            self.drive.write_zeroes(sector * SECTOR_SIZE, count * SECTOR_SIZE,
                                    unmap=bool(flags & WRITE_ZEROES_FLAG_UNMAP))
        return S_OK
