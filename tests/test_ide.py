"""The PIIX3 IDE function and ATA disks on it, driven through the ports and configuration
space as a driver drives them: identity, the task file, IDENTIFY DEVICE, PIO and DMA
transfers with their interrupts, the bus-master engine's results, and the errors."""

import struct

import pytest

from devicemodel.ide.identify import identify_bytes
from ide_board import (ABRT, BM_ACTIVE, BM_ERROR, BM_INTR, BSY, DRDY, DRQ, DSC, ERR, HOB, IDNF, NIEN, PRIMARY,
                       RAM_SIZE, SECONDARY, SECTOR, SRST, Board, make_image, sector_pattern)

READY = DRDY | DSC
DISK_SECTORS = 1024


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    make_image(path, DISK_SECTORS)
    return path


@pytest.fixture
def board(image):
    b = Board({0: image})
    yield b
    b.close()


def read_sectors_pio(board, count, channel=PRIMARY):
    """The data of a PIO data-in command, checking DRQ before each sector."""
    data = b""
    for _ in range(count):
        assert board.altstatus(channel) & DRQ
        data += board.read_data(SECTOR, channel)
    return data


# --- the PCI function ---------------------------------------------------------------------

def test_identity_and_configuration_as_qemu():
    b = Board({}, firmware=False)
    assert b.config_read(0, 4) == 0x70108086
    assert b.config_read(0x08, 4) == 0x01018000          # IDE, bus-master capable legacy mode, rev 0
    assert b.config_read(0x04, 2) == 0                   # command after reset
    assert b.config_read(0x06, 2) == 0x0280              # fast back-to-back, medium DEVSEL
    assert b.config_read(0x0E, 1) == 0 and b.config_read(0x3D, 1) == 0
    assert b.config_read(0x2C, 4) == 0x11001AF4
    assert b.config_read(0x20, 4) == 0x00000001          # BMIBA: an I/O BAR
    b.config_write(0x20, 4, 0xFFFFFFFF)
    assert b.config_read(0x20, 4) == 0xFFFFFFF1          # 16 bytes
    for bar in (0x10, 0x14, 0x18, 0x1C, 0x24):
        assert b.config_read(bar, 4) == 0                # legacy mode: no other BARs


def test_firmware_enables_both_channels_and_the_bus_master_bar(board):
    assert board.config_read(0x40, 2) == 0x8000 and board.config_read(0x42, 2) == 0x8000
    assert board.bmiba >= 0xC000 and board.config_read(0x04, 2) & 0x1
    board.config_write(0x44, 1, 0x5A)                    # SIDETIM: storage
    assert board.config_read(0x44, 1) == 0x5A


def test_legacy_ports_and_interrupts_whatever_the_configuration(image):
    b = Board({0: image}, firmware=False)
    assert b.status() == READY                            # decoded with I/O space off, as in QEMU
    b.outb(0x1F7, 0xEC)
    assert b.irq_level() == 1 and b.irqs.levels[15] == 0


# --- registers, selection, signature --------------------------------------------------------

def test_power_on_signature_and_absent_devices(board):
    assert board.status() == READY and board.error() == 0
    assert board.taskfile() == [1, 1, 0, 0, 0xA0]
    board.select(1)
    assert board.status() == 0 and board.altstatus() == 0 and board.error() == 0
    assert board.taskfile() == [1, 1, 0xFF, 0xFF, 0xF0]  # the absent slave's copy of the task file
    for reg in range(1, 8):                              # an empty channel reads 0
        assert board.inb(SECONDARY[0] + reg) == 0
    assert board.inb(SECONDARY[1]) == 0


def test_task_file_writes_reach_both_devices_and_hob_reads_the_previous_bytes(board):
    for reg, values in ((2, (0x12, 0x34)), (3, (0x56, 0x78)), (4, (0x9A, 0xBC)), (5, (0xDE, 0xF0))):
        for value in values:
            board.outb(0x1F0 + reg, value)
    assert board.taskfile()[:4] == [0x34, 0x78, 0xBC, 0xF0]
    board.outb(0x3F6, HOB)
    assert board.taskfile()[:4] == [0x12, 0x56, 0x9A, 0xDE]
    board.outb(0x1F2, 0x99)                               # any task-file write clears HOB
    assert board.taskfile()[:2] == [0x99, 0x78]
    board.select(1)
    assert board.taskfile()[:4] == [0x99, 0x78, 0xBC, 0xF0]


def test_data_register_access_sizes(board):
    assert board.pio.read(0x1F0, 1) == 0xFF               # byte reads of the data register
    assert board.pio.read(0x1F0, 2) == 0                  # no DRQ: nothing to read
    board.outb(0x1F2, 0x11)
    board.outb(0x1F3, 0x22)
    assert board.pio.read(0x1F2, 2) == 0x2211             # a word elsewhere: two registers
    assert board.pio.read(0x1F2, 4) == 0xFFFFFFFF


# --- IDENTIFY DEVICE ---------------------------------------------------------------------

def ata_text(words, first, count):
    return b"".join(struct.pack(">H", w) for w in words[first:first + count]).decode()


def test_identify_device(board):
    irqs = board.irq_rises()
    words = board.identify()
    assert board.irq_rises() == irqs + 1
    assert board.status() == READY
    assert ata_text(words, 27, 20).rstrip() == "QEMU HARDDISK"
    assert ata_text(words, 10, 10).rstrip() == "QM00001"
    assert ata_text(words, 23, 4).rstrip() == "2.5+"
    assert words[0] == 0x0040
    assert (words[1], words[3], words[6]) == (2, 16, 63)             # QEMU's standard guess
    assert words[47] == 0x8010 and words[59] == 0x0110              # READ/WRITE MULTIPLE: 16 sectors
    assert words[49] == 0x0B00                                      # IORDY, LBA, DMA
    assert words[60] | words[61] << 16 == DISK_SECTORS
    assert sum(words[100 + i] << (16 * i) for i in range(4)) == DISK_SECTORS
    assert words[83] & 0x0400 and words[86] & 0x0400                # LBA48
    assert words[83] & 0x3000 == 0x3000                             # FLUSH CACHE (EXT)
    assert (words[62], words[63], words[88]) == (0x0007, 0x0007, 0x203F)   # UDMA 5 selected
    assert words[85] & 0x0020                                       # write cache on (cache=writeback)
    assert words[255] & 0xFF == 0xA5 and sum(identify_bytes(words)) & 0xFF == 0


def test_identify_32_bit_reads_and_the_other_positions(tmp_path):
    paths = {}
    for position in range(4):
        paths[position] = tmp_path / f"d{position}.img"
        make_image(paths[position], 64, pattern=False)
    b = Board(paths)
    serials = []
    for channel in (PRIMARY, SECONDARY):
        for unit in (0, 1):
            b.select(unit, channel)
            b.outb(channel[0] + 7, 0xEC)
            words = list(struct.unpack("<256H", b.read_data(SECTOR, channel, size=4)))
            serials.append(ata_text(words, 10, 10).rstrip())
    assert serials == ["QM00001", "QM00002", "QM00003", "QM00004"]


def test_identify_capacity_beyond_lba28(tmp_path):
    path = tmp_path / "big.img"
    sectors = (1 << 28) + 16
    with open(path, "wb") as f:
        f.truncate(sectors * SECTOR)                   # sparse
    b = Board({0: path})
    words = b.identify()
    assert words[60] | words[61] << 16 == (1 << 28) - 1
    assert sum(words[100 + i] << (16 * i) for i in range(4)) == sectors
    assert words[1] == 16383                           # cylinders stop there
    # LBA48 reaches beyond 2^28 (the sparse image reads zeros) and stops at the end
    b.command48(0x24, lba=(1 << 28) + 8, count=1)
    assert read_sectors_pio(b, 1) == bytes(SECTOR)
    b.command48(0x24, lba=(1 << 28) + 16, count=1)
    assert b.status() == DRDY | ERR and b.error() == IDNF
    b.close()


def test_identify_follows_an_mbr_and_the_write_cache(tmp_path):
    path = tmp_path / "mbr.img"
    data = bytearray(2048 * SECTOR)
    data[0x1BE:0x1CE] = struct.pack("<B3sB3sII", 0x80, bytes([1, 1, 0]), 0x83, bytes([15, 32, 3]), 32, 2000)
    data[510:512] = b"\x55\xaa"
    path.write_bytes(data)
    b = Board({0: (path, ",cache=writethrough")})
    words = b.identify()
    assert (words[1], words[3], words[6]) == (4, 16, 32)
    assert not words[85] & 0x0020
    b.command28(0xEF, feature=0x02)                    # SET FEATURES: write cache on
    assert b.status() == READY and b.identify()[85] & 0x0020
    b.close()


# --- PIO ---------------------------------------------------------------------------------

def test_read_sectors_lba28_interrupt_and_drq_per_sector(board):
    rises = board.irq_rises()
    board.command28(0x20, lba=3, count=3)
    data = b""
    for n in range(3):
        assert board.irq_level() == 1 and board.irq_rises() == rises + n + 1
        assert board.status() == READY | DRQ and board.irq_level() == 0    # the status read lowers it
        data += board.read_data(SECTOR)
    assert data == b"".join(sector_pattern(n) for n in (3, 4, 5))
    assert board.status() == READY and board.irq_rises() == rises + 3       # no interrupt at the end
    assert board.taskfile() == [0, 6, 0, 0, 0xE0]                          # the next sector


def test_write_sectors(board, image):
    rises = board.irq_rises()
    board.command28(0x30, lba=10, count=2)
    assert board.status() == READY | DRQ and board.irq_rises() == rises    # the first block at once
    first, second = bytes([0x11]) * SECTOR, bytes([0x22]) * SECTOR
    board.write_data(first)
    assert board.irq_rises() == rises + 1 and board.status() == READY | DRQ
    board.write_data(second, size=4)
    assert board.irq_rises() == rises + 2 and board.status() == READY
    assert image.read_bytes()[10 * SECTOR:12 * SECTOR] == first + second
    board.command28(0x20, lba=10, count=2)
    assert read_sectors_pio(board, 2) == first + second


def test_lba48_address_count_and_high_order_bytes(board):
    board.command48(0x24, lba=0x12, count=0x102)      # 258 sectors: the high byte counts
    for n in range(0x102):
        assert board.read_data(SECTOR) == sector_pattern(0x12 + n)
    assert board.status() == READY
    unit = board.ide.channels[0].units[0]
    unit.select |= 0x40
    unit.lba48 = True
    unit.set_sector_number(0xABCDEF123456)
    assert unit.sector_number() == 0xABCDEF123456
    assert (unit.hob_hcyl, unit.hob_lcyl, unit.hob_sector, unit.hcyl, unit.lcyl, unit.sector) == \
        (0xAB, 0xCD, 0xEF, 0x12, 0x34, 0x56)
    board.command48(0x24, lba=1 << 40, count=1)
    assert board.status() == DRDY | ERR and board.error() == IDNF


def test_sector_count_zero_means_256(board):
    board.command28(0x20, lba=0, count=0)
    assert read_sectors_pio(board, 256) == b"".join(sector_pattern(n) for n in range(256))


def test_chs_addresses_and_initialize_device_parameters(board):
    def chs_read(c, h, s):
        board.outb(0x1F6, 0xA0 | h)
        for reg, value in ((2, 1), (3, s), (4, c & 0xFF), (5, c >> 8)):
            board.outb(0x1F0 + reg, value)
        board.outb(0x1F7, 0x20)

    chs_read(0, 2, 5)
    assert read_sectors_pio(board, 1) == sector_pattern(2 * 63 + 4)
    board.outb(0x1F6, 0xA3)                            # 4 heads
    board.outb(0x1F2, 32)                              # 32 sectors per track
    board.outb(0x1F7, 0x91)
    assert board.status() == READY
    chs_read(1, 2, 5)
    assert read_sectors_pio(board, 1) == sector_pattern((4 + 2) * 32 + 4)
    words = board.identify()
    assert (words[3], words[6]) == (16, 63) and (words[55], words[56]) == (4, 32)
    chs_read(0, 0, 0)                                  # there is no sector 0
    assert board.status() == DRDY | ERR and board.error() == IDNF
    board.outb(0x1F6, 0xA0)
    board.outb(0x1F2, 0)                               # no translation: CHS commands fail
    board.outb(0x1F7, 0x91)
    chs_read(0, 0, 1)
    assert board.error() == IDNF
    # SET FEATURES 0xcc: the next reset brings the power-on translation back
    board.command28(0xEF, feature=0xCC)
    board.outb(0x3F6, SRST)
    board.outb(0x3F6, 0)
    chs_read(0, 2, 5)
    assert read_sectors_pio(board, 1) == sector_pattern(2 * 63 + 4)


def test_read_and_write_multiple(board, image):
    assert board.identify()[59] == 0x0110
    board.command28(0xC6, count=4)                    # SET MULTIPLE MODE 4
    assert board.status() == READY and board.identify()[59] == 0x0104
    rises = board.irq_rises()
    board.command28(0xC4, lba=20, count=10)
    data = b""
    for block in (4, 4, 2):
        assert board.status() == READY | DRQ
        data += board.read_data(block * SECTOR)
    assert data == b"".join(sector_pattern(20 + n) for n in range(10))
    assert board.irq_rises() == rises + 3
    board.command28(0xC5, lba=30, count=6)
    payload = bytes(range(256)) * 12
    board.write_data(payload[:4 * SECTOR])
    assert board.status() == READY | DRQ
    board.write_data(payload[4 * SECTOR:])
    assert board.status() == READY and image.read_bytes()[30 * SECTOR:36 * SECTOR] == payload
    for bad in (3, 32):                                # not a power of two; beyond 16
        board.command28(0xC6, count=bad)
        assert board.status() == DRDY | ERR and board.error() == ABRT
    board.command28(0xC6, count=0)                     # READ/WRITE MULTIPLE off
    assert board.status() == READY
    board.command28(0xC4, lba=0, count=1)
    assert board.status() == DRDY | ERR and board.error() == ABRT


# --- DMA ---------------------------------------------------------------------------------

def test_read_dma_through_a_three_entry_prd_table(board):
    board.prd_table([(0x10000, 512, False), (0x20000, 1024, False), (0x30000, 512, True)])
    rises = board.irq_rises()
    board.command28(0xC8, lba=40, count=4)
    assert board.status() == READY | DRQ and board.irq_rises() == rises   # waits for the engine
    board.bm_start()
    assert board.irq_rises() == rises + 1
    assert board.bm_status() == BM_INTR                                   # done, inactive
    assert board.status() == READY
    ram = board.ram
    assert ram[0x10000:0x10200] == sector_pattern(40)
    assert ram[0x20000:0x20400] == sector_pattern(41) + sector_pattern(42)
    assert ram[0x30000:0x30200] == sector_pattern(43)
    assert ram[0x30200:0x30210] == bytes(16)
    assert board.taskfile()[:4] == [0, 44, 0, 0]
    board.outb(board.bm_port(2), BM_INTR)                                 # write 1 to clear
    assert board.bm_status() == 0


def test_write_dma_ext_with_the_engine_started_first(board, image):
    board.ram[0x40000:0x40400] = bytes([0x5A]) * 1024
    board.prd_table([(0x40000, 1024, True)])
    board.bm_start(to_memory=False)
    assert board.bm_status() == BM_ACTIVE
    board.command48(0x35, lba=50, count=2)
    assert board.bm_status() == BM_INTR and board.status() == READY
    assert image.read_bytes()[50 * SECTOR:52 * SECTOR] == bytes([0x5A]) * 1024


def test_prd_table_too_short_stops_without_an_interrupt(board, image):
    board.prd_table([(0x10000, 512, True)])
    rises = board.irq_rises()
    board.command28(0xCA, lba=60, count=2)            # WRITE DMA of 2 sectors, 1 described
    board.bm_start(to_memory=False)
    assert board.bm_status() == 0 and board.irq_rises() == rises
    assert board.altstatus() == READY                 # DRQ dropped, no error
    assert image.read_bytes()[60 * SECTOR:62 * SECTOR] == sector_pattern(60) + sector_pattern(61)
    board.command28(0x20, lba=0, count=1)             # the device takes commands again
    assert read_sectors_pio(board, 1) == sector_pattern(0)


def test_prd_table_longer_than_the_transfer_stays_active(board):
    board.prd_table([(0x10000, 4096, True)])
    board.command28(0xC8, lba=5, count=1)
    board.bm_start()
    assert board.bm_status() == BM_ACTIVE | BM_INTR
    assert board.ram[0x10000:0x10200] == sector_pattern(5)
    # a second command without restarting the engine finds the table used up
    board.command28(0xC8, lba=6, count=1)
    assert board.bm_status() == BM_INTR and board.altstatus() == READY
    board.bm_stop()
    assert board.bm_status() == BM_INTR


def test_byte_count_zero_means_64k_and_bit_0_is_ignored(board):
    board.prd_table([(0x100001, 0, True)])            # odd base: bit 0 is not decoded
    board.command28(0xC8, lba=0, count=128)
    board.bm_start()
    assert board.bm_status() == BM_INTR
    assert board.ram[0x100000:0x110000] == b"".join(sector_pattern(n) for n in range(128))
    board.prd_table([(0x10000, 513, True)])           # odd count: bit 0 is not counted
    board.command28(0xC8, lba=7, count=1)
    board.bm_start()
    assert board.bm_status() == BM_INTR and board.ram[0x10000:0x10201] == sector_pattern(7) + b"\0"


def test_a_table_without_eot_ends_after_a_page(board):
    board.prd_table([(0x10000 + 2 * i, 2, False) for i in range(600)])   # 512 entries are read
    board.command28(0xC8, lba=0, count=3)
    board.bm_start()
    assert board.bm_status() == 0 and board.ram[0x10000] == 0     # 1024 bytes: too short
    board.command28(0xC8, lba=0, count=2)
    board.bm_start()
    assert board.bm_status() == BM_INTR                           # 1024 bytes: enough
    assert board.ram[0x10000:0x10400] == sector_pattern(0) + sector_pattern(1)


@pytest.mark.parametrize("entries, at", [
    ([(RAM_SIZE - 256, 512, True)], 0x1000),            # a region running past RAM
    ([(0x10000, 256, False), (0xFEC00000, 256, True)], 0x1000),   # a region in MMIO
    ([], RAM_SIZE + 0x1000),                            # the table itself outside RAM
])
def test_dma_outside_ram_sets_the_error_bit(board, image, entries, at):
    before = bytes(board.ram)
    if at < RAM_SIZE:
        board.prd_table(entries, at=at)
        before = bytes(board.ram)
    else:
        board.pio.write(board.bm_port(4), 4, at)
    board.command28(0xC8, lba=0, count=1)
    board.bm_start()
    assert board.bm_status() == BM_ERROR | BM_INTR
    assert board.status() == DRDY | ERR and board.error() == ABRT
    assert bytes(board.ram) == before                  # nothing moved
    board.outb(board.bm_port(2), BM_ERROR | BM_INTR)
    board.prd_table([(0x10000, 512, False), (RAM_SIZE, 512, True)])
    board.command28(0xCA, lba=0, count=2)              # a DMA write: the disk keeps its data
    board.bm_start(to_memory=False)
    assert board.bm_status() == BM_ERROR | BM_INTR
    assert image.read_bytes()[:2 * SECTOR] == sector_pattern(0) + sector_pattern(1)


def test_dma_out_of_range_and_read_only(tmp_path, board):
    board.prd_table([(0x10000, 512, True)])
    board.command28(0xC8, lba=DISK_SECTORS, count=1)
    board.bm_start()
    assert board.bm_status() == BM_INTR and board.status() == DRDY | ERR and board.error() == IDNF
    path = tmp_path / "ro.img"
    original = make_image(path, 8)
    ro = Board({0: (path, ",readonly=on")})
    for write in ((0x30, False), (0xCA, True), (0x35, True), (0xC5, False)):
        command, dma = write
        if command in (0x30, 0xCA, 0xC5):
            ro.command28(command, lba=0, count=1)
        else:
            ro.command48(command, lba=0, count=1)
        assert ro.status() == DRDY | ERR and ro.error() == ABRT and not ro.altstatus() & DRQ
    ro.command28(0x20, lba=1, count=1)                 # reads work
    assert read_sectors_pio(ro, 1) == sector_pattern(1)
    assert path.read_bytes() == original
    ro.close()


def test_stopping_the_engine_leaves_the_command_waiting(board):
    board.command28(0xC8, lba=9, count=1)
    board.prd_table([(0x10000, 512, True)])
    board.bm_start()
    assert board.bm_status() == BM_INTR
    board.command28(0xC8, lba=9, count=1)
    board.bm_stop()
    assert board.altstatus() == READY | DRQ            # the command still waits for the engine
    board.bm_start()
    assert board.bm_status() == BM_INTR and board.altstatus() == READY


def test_bus_master_register_access(board):
    port = board.bm_port(0)
    assert board.pio.read(port, 2) == 0xFFFF           # command/status are byte registers
    assert board.inb(port + 1) == 0xFF and board.inb(port + 3) == 0xFF
    board.pio.write(port + 4, 4, 0x12345677)
    assert board.pio.read(port + 4, 4) == 0x12345674   # dword-aligned table
    board.outb(port + 6, 0xAB)
    assert board.pio.read(port + 4, 4) == 0x12AB5674
    board.outb(port + 2, 0x67)                          # DMA-capable bits stick; active is read-only
    assert board.bm_status() == 0x60
    board.outb(port, 0xFF)
    assert board.inb(port) == 0x09 and board.bm_status() == 0x61


def test_trim(board, monkeypatch):
    discarded = []
    drive = board.drives[0]
    monkeypatch.setattr(drive, "discard", lambda offset, length: discarded.append((offset, length)))
    ranges = struct.pack("<QQQ", 8 | 4 << 48, 0, 100 | 1 << 48) + bytes(SECTOR - 24)
    board.ram[0x10000:0x10200] = ranges
    board.prd_table([(0x10000, 512, True)])
    board.command28(0x06, count=1, feature=0x01)
    board.bm_start(to_memory=False)
    assert board.bm_status() == BM_INTR and board.status() == READY
    assert discarded == [(8 * SECTOR, 4 * SECTOR), (100 * SECTOR, SECTOR)]
    board.ram[0x10000:0x10008] = struct.pack("<Q", (DISK_SECTORS - 1) | 2 << 48)
    board.command28(0x06, count=1, feature=0x01)
    board.bm_start(to_memory=False)
    assert board.status() == DRDY | ERR and board.error() == ABRT


# --- other commands, errors, interrupts, resets ----------------------------------------------

def test_errors_abort_with_an_interrupt(board):
    for command in (0xF0, 0x00, 0xA1, 0xA0, 0x08):   # not a command; NOP; ATAPI; DEVICE RESET
        rises = board.irq_rises()
        board.command28(command)
        assert board.irq_rises() == rises + 1
        assert board.status() == DRDY | ERR and board.error() == ABRT
    board.command28(0x20, lba=DISK_SECTORS - 1, count=2)
    assert read_sectors_pio(board, 1) == sector_pattern(DISK_SECTORS - 1)
    assert board.status() == DRDY | ERR and board.error() == IDNF         # the second is past the end
    board.command28(0xEF, feature=0x77)
    assert board.status() == DRDY | ERR and board.error() == ABRT


def test_set_features_transfer_mode(board):
    for count, words in ((0x42, (0x0007, 0x0007, 0x043F)), (0x22, (0x0007, 0x0407, 0x003F)),
                         (0x12, (0x0407, 0x0007, 0x003F)), (0x0C, (0x0007, 0x0007, 0x003F))):
        board.command28(0xEF, count=count, feature=0x03)
        assert board.status() == READY
        w = board.identify()
        assert (w[62], w[63], w[88]) == words
    board.command28(0xEF, count=0x80, feature=0x03)
    assert board.error() == ABRT


def test_verify_flush_power_and_native_max(board, monkeypatch):
    flushes = []
    monkeypatch.setattr(board.drives[0].image, "flush", lambda: flushes.append(1))
    board.command28(0x40, lba=10, count=5)
    assert board.status() == READY
    board.command28(0x40, lba=DISK_SECTORS - 2, count=5)
    assert board.status() == DRDY | ERR and board.error() == IDNF
    board.command28(0xE7)
    board.command48(0xEA)
    assert board.status() == READY and len(flushes) == 2
    board.command28(0xE5)
    assert board.inb(0x1F2) == 0xFF
    board.command28(0xF8)
    assert board.taskfile()[1:4] == [(DISK_SECTORS - 1) & 0xFF, (DISK_SECTORS - 1) >> 8, 0]
    # write cache off: every write is flushed first
    board.command28(0xEF, feature=0x82)
    assert len(flushes) == 3 and not board.identify()[85] & 0x20
    board.command28(0x30, lba=1, count=1)
    board.write_data(bytes(SECTOR))
    assert len(flushes) == 4


def test_execute_device_diagnostic(board):
    board.command28(0x20, lba=0x123456, count=1)       # leaves a non-signature task file
    rises = board.irq_rises()
    board.command28(0x90)
    assert board.irq_rises() == rises + 1
    assert board.status() == READY and board.error() == 0x01               # passed; ERR clear
    assert board.taskfile() == [1, 1, 0, 0, 0xA0]


def test_nien_masks_interrupts(board):
    board.outb(0x3F6, NIEN)
    rises = board.irq_rises()
    board.identify()
    board.prd_table([(0x10000, 512, True)])
    board.command28(0xC8, count=1)
    board.bm_start()
    assert board.irq_rises() == rises and board.bm_status() == 0            # no interrupt bit either
    board.outb(0x3F6, 0)
    board.command28(0xE7)
    assert board.irq_rises() == rises + 1 and board.bm_status() == BM_INTR


def test_busy_device_ignores_task_file_writes_and_commands(board):
    board.command28(0x20, lba=7, count=1)
    board.outb(0x1F3, 0x55)                            # ignored while DRQ is set
    board.outb(0x1F7, 0xEC)                            # so is a command
    assert board.read_data(SECTOR) == sector_pattern(7)
    assert board.inb(0x1F3) == 8


def test_commands_to_an_absent_slave_are_ignored(board):
    rises = board.irq_rises()
    board.command28(0xEC, unit=1)
    assert board.irq_rises() == rises and board.status() == 0
    board.select(0)
    assert board.status() == READY


def test_software_reset(board):
    board.command28(0x20, lba=5, count=2)              # in the middle of a PIO read
    assert board.status() == READY | DRQ and board.irq_level() == 0
    board.outb(0x3F6, SRST | NIEN)
    assert board.altstatus() & BSY and not board.altstatus() & DRQ
    board.outb(0x1F3, 0x55)                            # ignored while busy
    rises = board.irq_rises()
    board.outb(0x3F6, 0)
    assert board.irq_rises() == rises + 1              # the diagnostic, interrupts enabled
    assert board.status() == READY and board.error() == 0x01
    assert board.taskfile() == [1, 1, 0, 0, 0xA0]
    assert board.pio.read(0x1F0, 2) == 0               # the transfer is gone
    board.command28(0xC6, count=2)
    board.outb(0x3F6, SRST)
    board.outb(0x3F6, 0)
    assert board.identify()[59] == 0x0110              # READ/WRITE MULTIPLE back to 16


def test_software_reset_selects_device_0(board):
    board.select(1)
    board.outb(0x3F6, SRST | NIEN)
    board.outb(0x3F6, NIEN)
    assert board.status() == READY                     # device 0 answers again


def test_machine_reset_puts_the_function_back(board):
    board.command28(0x20, lba=5, count=1)
    board.outb(board.bm_port(0), 0x09)
    board.ide.reset()
    assert board.config_read(0x04, 2) == 0 and board.config_read(0x20, 4) == 1
    assert board.ide.bars[4].mapped_at is None
    assert board.status() == READY and board.taskfile() == [1, 1, 0, 0, 0xA0]
    assert board.ide.channels[0].bm.command == 0 and board.irq_level() == 0


def test_state_survives_save_and_load_in_the_middle_of_a_transfer(board, image, tmp_path):
    board.command28(0x20, lba=3, count=2)
    first = board.read_data(SECTOR // 2)
    state = board.ide.save_state()
    other = Board({0: image})
    other.ide.load_state(state)
    assert first + other.read_data(SECTOR // 2) == sector_pattern(3)
    assert other.read_data(SECTOR) == sector_pattern(4)
    assert other.status() == READY
    other.close()
