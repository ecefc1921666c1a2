"""virtio-blk over virtio-mmio, driven as a guest driver drives it: reads, writes, flush
(a real fsync), discard, write-zeroes, get-id, several requests per notification, and
the requests that must fail (outside the disk, read-only, malformed)."""

import os
import struct

import pytest

import virtio_driver as vd
from devicemodel.address_space import AddressSpace
from devicemodel.block.drive import open_drive, parse_drive
from devicemodel.virtio import blk, mmio as regs
from devicemodel.virtio.blk import VirtioBlk
from devicemodel.virtio.mmio import VirtioMmio
from devicemodel.virtio.spec import (F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_DEVICE_NEEDS_RESET,
                                     STATUS_FEATURES_OK, bit)

DISK_SIZE = 1 << 20
SECTOR = 512
ALL = bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX) | bit(blk.F_FLUSH) | \
    bit(blk.F_DISCARD) | bit(blk.F_WRITE_ZEROES) | bit(blk.F_BLK_SIZE) | bit(blk.F_SEG_MAX)


class Disk:
    """A raw image, its virtio-blk device on a transport, and a driver with one queue."""

    def __init__(self, tmp_path, options="", content=None, serial=""):
        self.path = tmp_path / "disk.img"
        if not self.path.exists():
            self.path.write_bytes(content if content is not None else bytes(range(256)) * (DISK_SIZE // 256))
        self.drive = open_drive(parse_drive(f"file={self.path},if=none,format=raw{options}", []))
        self.memory = vd.make_memory()
        self.device = VirtioBlk(self.memory, self.drive, serial=serial)
        self.irq = vd.IrqRecorder()
        self.transport = VirtioMmio(vd.BASE, self.irq, self.device)
        space = AddressSpace("memory")
        space.add_region(self.transport.region)
        self.regs = vd.MmioDriver(space)
        self.alloc = vd.Allocator()
        self.status = self.regs.negotiate(ALL)
        self.queue = vd.DriverQueue(self.memory, self.alloc, size=64)
        self.regs.setup_queue(0, self.queue)
        self.regs.driver_ok()

    def submit(self, kind, sector, out=b"", in_length=0, indirect=False):
        """Queue one request; its (status address, data-in address)."""
        header = self.alloc(16)
        self.memory.write(header, struct.pack("<IIQ", kind, 0, sector))
        buffers = [(header, 16, False)]
        if out:
            addr = self.alloc(len(out))
            self.memory.write(addr, out)
            buffers.append((addr, len(out), False))
        data_in = self.alloc(in_length) if in_length else None
        if in_length:
            buffers.append((data_in, in_length, True))
        status = self.alloc(1)
        self.memory.write(status, b"\xff")
        buffers.append((status, 1, True))
        self.queue.add(buffers, indirect=indirect)
        return status, data_in

    def request(self, kind, sector, out=b"", in_length=0, indirect=False):
        status, data_in = self.submit(kind, sector, out, in_length, indirect)
        self.regs.notify(0)
        used = self.queue.take_used()
        assert len(used) == 1
        data = self.memory.read(data_in, in_length) if in_length else b""
        return self.memory.read(status, 1)[0], data, used[0][1]

    def close(self):
        self.drive.close()


@pytest.fixture
def disk(tmp_path):
    d = Disk(tmp_path)
    yield d
    d.close()


def test_device_identity_and_config(disk):
    r = disk.regs
    assert r.read(regs.MAGIC_VALUE) == 0x74726976 and r.read(regs.VERSION_REG) == 2
    assert r.read(regs.DEVICE_ID) == 2 and r.read(regs.VENDOR_ID) == 0x554D4551
    assert disk.status & STATUS_FEATURES_OK
    config = bytes(r.read(regs.CONFIG + i, 1) for i in range(blk.CONFIG_SIZE))
    c = blk.BlkConfig.parse(config)
    assert c.capacity == DISK_SIZE // SECTOR
    assert c.blk_size == 512 and c.seg_max == 254 and c.writeback == 1
    assert (c.cylinders, c.heads, c.sectors) == (2, 16, 63)
    assert c.max_discard_seg == 1 and c.write_zeroes_may_unmap == 1
    assert r.read(regs.CONFIG, 8) == DISK_SIZE // SECTOR          # 64-bit read: two 32-bit halves
    assert r.read(regs.CONFIG + blk.CONFIG_SIZE, 1) == 0xFF       # beyond the config space


def test_read_write_and_used_length(disk):
    status, data, used = disk.request(blk.T_IN, 2, in_length=2 * SECTOR)
    assert status == blk.S_OK and data == bytes(range(256)) * 4 and used == 2 * SECTOR + 1
    payload = os.urandom(3 * SECTOR)
    status, _, used = disk.request(blk.T_OUT, 100, out=payload)
    assert status == blk.S_OK and used == 1
    assert disk.request(blk.T_IN, 100, in_length=3 * SECTOR)[1] == payload
    with open(disk.path, "rb") as f:
        f.seek(100 * SECTOR)
        assert f.read(3 * SECTOR) == payload
    assert disk.irq.level == 1 and disk.regs.ack_interrupts() == 1 and disk.irq.level == 0


def test_indirect_requests(disk):
    payload = os.urandom(SECTOR)
    assert disk.request(blk.T_OUT, 7, out=payload, indirect=True)[0] == blk.S_OK
    assert disk.request(blk.T_IN, 7, in_length=SECTOR, indirect=True)[1] == payload


def test_several_requests_in_one_notification(disk):
    payloads = [os.urandom(SECTOR) for _ in range(5)]
    for i, payload in enumerate(payloads):
        disk.submit(blk.T_OUT, 10 + i, out=payload)
    reads = [disk.submit(blk.T_IN, 10 + i, in_length=SECTOR) for i in range(5)]
    disk.regs.notify(0)
    assert len(disk.queue.take_used()) == 10
    for (status, data_in), payload in zip(reads, payloads):
        assert disk.memory.read(status, 1) == b"\0" and disk.memory.read(data_in, SECTOR) == payload


def test_flush_fsyncs_the_image(disk, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    assert disk.request(blk.T_FLUSH, 0)[0] == blk.S_OK
    assert synced == [disk.drive.image.file.fd]


def test_get_id_is_the_serial(tmp_path):
    disk = Disk(tmp_path, serial="PYHV-DISK-0001")
    status, data, _ = disk.request(blk.T_GET_ID, 0, in_length=20)
    assert status == blk.S_OK and data == b"PYHV-DISK-0001\0" + b"\0" * 5
    disk.close()


def test_requests_outside_the_disk_fail(disk):
    last = DISK_SIZE // SECTOR
    assert disk.request(blk.T_IN, last, in_length=SECTOR)[0] == blk.S_IOERR
    assert disk.request(blk.T_IN, last - 1, in_length=2 * SECTOR)[0] == blk.S_IOERR
    assert disk.request(blk.T_OUT, 1 << 62, out=bytes(SECTOR))[0] == blk.S_IOERR
    assert disk.request(blk.T_IN, 0, in_length=100)[0] == blk.S_IOERR      # not whole sectors
    assert disk.request(blk.T_IN, last - 1, in_length=SECTOR)[0] == blk.S_OK
    assert disk.request(99, 0)[0] == blk.S_UNSUPP


def test_discard_and_write_zeroes(disk):
    segment = struct.pack("<QII", 4, 2, 0)
    assert disk.request(blk.T_DISCARD, 0, out=segment)[0] == blk.S_OK
    assert disk.request(blk.T_DISCARD, 0, out=struct.pack("<QII", 4, 2, 1))[0] == blk.S_UNSUPP
    assert disk.request(blk.T_DISCARD, 0, out=segment * 2)[0] == blk.S_UNSUPP      # one segment only
    assert disk.request(blk.T_WRITE_ZEROES, 0, out=struct.pack("<QII", 8, 3, 1))[0] == blk.S_OK
    assert disk.request(blk.T_IN, 8, in_length=3 * SECTOR)[1] == bytes(3 * SECTOR)
    assert disk.request(blk.T_IN, 11, in_length=SECTOR)[1] == bytes(range(256)) * 2
    assert disk.request(blk.T_WRITE_ZEROES, 0, out=struct.pack("<QII", DISK_SIZE // SECTOR, 1, 0))[0] == blk.S_IOERR


def test_read_only_drive(tmp_path):
    disk = Disk(tmp_path, options=",readonly=on")
    assert disk.regs.device_features() & bit(blk.F_RO)
    assert disk.request(blk.T_OUT, 0, out=bytes(SECTOR))[0] == blk.S_IOERR
    assert disk.request(blk.T_IN, 0, in_length=SECTOR)[0] == blk.S_OK
    disk.close()


def test_writethrough_drive_flushes_every_write_and_offers_no_flush(tmp_path, monkeypatch):
    disk = Disk(tmp_path, options=",cache=writethrough")
    assert not disk.regs.device_features() & bit(blk.F_FLUSH)
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    disk.request(blk.T_OUT, 0, out=bytes(SECTOR))
    assert synced
    disk.close()


def test_request_without_status_byte_needs_reset(disk):
    header = disk.alloc(16)
    disk.memory.write(header, struct.pack("<IIQ", blk.T_IN, 0, 0))
    disk.queue.add([(header, 16, False)])
    disk.regs.notify(0)
    assert disk.regs.read(regs.STATUS) & STATUS_DEVICE_NEEDS_RESET
    assert disk.regs.read(regs.INTERRUPT_STATUS) & 2        # configuration change
    disk.regs.write(regs.STATUS, 0)                           # reset brings it back
    assert disk.regs.read(regs.STATUS) == 0 and disk.irq.level == 0


def test_discard_punches_a_hole_in_a_raw_image(tmp_path):
    disk = Disk(tmp_path, content=b"\x77" * DISK_SIZE)
    blocks = os.stat(disk.path).st_blocks
    segment = struct.pack("<QII", 128, 256, 0)                   # 128 KiB at 64 KiB
    assert disk.request(blk.T_DISCARD, 0, out=segment)[0] == blk.S_OK
    assert os.stat(disk.path).st_blocks <= blocks - 256 and os.path.getsize(disk.path) == DISK_SIZE
    assert disk.request(blk.T_IN, 128, in_length=SECTOR)[1] == bytes(SECTOR)
    assert disk.request(blk.T_IN, 127, in_length=SECTOR)[1] == b"\x77" * SECTOR
    blocks = os.stat(disk.path).st_blocks
    assert disk.request(blk.T_WRITE_ZEROES, 0, out=struct.pack("<QII", 512, 256, 1))[0] == blk.S_OK   # unmap
    assert os.stat(disk.path).st_blocks <= blocks - 256
    assert disk.request(blk.T_IN, 600, in_length=SECTOR)[1] == bytes(SECTOR)
