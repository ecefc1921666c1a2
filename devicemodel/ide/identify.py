"""The 256 words of IDENTIFY DEVICE data (ATA/ATAPI-6 section 8.15) of an IDE hard disk,
word for word what QEMU's ide_identify() reports for ide-hd, with two differences
where ATA-6 asks for more than QEMU gives:

* the words reflect the device's current settings each time (QEMU builds them once and
  later misses a new READ/WRITE MULTIPLE block size in word 59, or the CHS translation
  of INITIALIZE DEVICE PARAMETERS in words 54-58);
* word 255 is the integrity word: signature 0xa5 in bits 7:0 and, in bits 15:8, the
  two's complement of the sum of the other 511 bytes (QEMU leaves it zero).

Strings (serial number, firmware revision, model) are ASCII padded with spaces, two
characters per word with the first in the high byte.
"""

from __future__ import annotations

from devicemodel.ide import ata

WORDS = 256
INTEGRITY_SIGNATURE = 0xA5
ATA3_TO_ATA6 = 0xF0          # word 80: major versions supported
ATA5_MINOR = 0x16            # word 81
CYCLE_TIME_NS = 120          # words 65-68


def ata_string(text: str, length: int) -> list[int]:
    """``text`` as ``length // 2`` words (QEMU's padstr)."""
    raw = text.encode("ascii", "replace")[:length].ljust(length, b" ")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, length, 2)]


def transfer_mode_words(mode: tuple[int, int]) -> tuple[int, int, int]:
    """Words 62, 63 and 88: the modes supported (single-word and multiword DMA 0-2,
    Ultra DMA 0-5) and the one SET FEATURES selected, ``(XFER_* kind, mode number)``."""
    kind, number = mode
    selected = 1 << (number + 8)
    return (0x07 | (selected if kind == ata.XFER_SW_DMA else 0),
            0x07 | (selected if kind == ata.XFER_MW_DMA else 0),
            0x3F | (selected if kind == ata.XFER_UDMA else 0))


def identify_words(*, serial: str, firmware: str, model: str, sectors: int,
                   geometry: tuple[int, int, int], current_geometry: tuple[int, int, int],
                   mult_sectors: int, write_cache: bool,
                   transfer_mode: tuple[int, int], trim: bool) -> list[int]:
    cylinders, heads, per_track = geometry
    w = [0] * WORDS
    w[0] = 0x0040                                   # fixed (non-removable) device
    w[1], w[3], w[6] = cylinders, heads, per_track
    w[4], w[5] = (512 * per_track) & 0xFFFF, 512    # retired: bytes per track and sector
    w[10:20] = ata_string(serial, 20)
    w[20], w[21], w[22] = 3, 512, 4                 # retired: buffer type and size, ECC bytes
    w[23:27] = ata_string(firmware, 8)
    w[27:47] = ata_string(model, 40)
    w[47] = 0x8000 | ata.MAX_MULT_SECTORS
    w[48] = 1                                       # doubleword I/O
    w[49] = 1 << 11 | 1 << 9 | 1 << 8               # IORDY, LBA, DMA
    w[51] = w[52] = 0x200                           # PIO and DMA timing modes (obsolete)
    w[53] = 0x07                                    # words 54-58, 64-70 and 88 are valid
    w[54], w[55], w[56] = current_geometry
    chs_capacity = (current_geometry[0] * current_geometry[1] * current_geometry[2]) & 0xFFFFFFFF
    w[57], w[58] = chs_capacity & 0xFFFF, chs_capacity >> 16
    if mult_sectors:
        w[59] = 0x100 | mult_sectors
    lba28 = min(sectors, ata.LBA28_LIMIT - 1)
    w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
    w[62], w[63], w[88] = transfer_mode_words(transfer_mode)
    w[64] = 0x03                                    # PIO modes 3 and 4
    w[65] = w[66] = w[67] = w[68] = CYCLE_TIME_NS
    if trim:
        w[69] = 1 << 14                             # deterministic read after TRIM
        w[169] = 1                                  # DATA SET MANAGEMENT TRIM supported
    w[80], w[81] = ATA3_TO_ATA6, ATA5_MINOR
    w[82] = 1 << 14 | 1 << 5 | 1                    # NOP, write cache, SMART supported
    w[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10   # FLUSH CACHE EXT, FLUSH CACHE, LBA48
    w[84] = 1 << 14
    w[85] = 1 << 14 | (1 << 5 if write_cache else 0) | 1
    w[86] = 1 << 13 | 1 << 12 | 1 << 10
    w[87] = 1 << 14
    w[93] = 0x6001                                  # hardware reset result: device 0
    for i in range(4):
        w[100 + i] = (sectors >> (16 * i)) & 0xFFFF
    w[106] = 0x6000                                 # logical sector = physical sector (512 bytes)
    data = b"".join(word.to_bytes(2, "little") for word in w[:255]) + bytes([INTEGRITY_SIGNATURE])
    w[255] = ((-sum(data)) & 0xFF) << 8 | INTEGRITY_SIGNATURE
    return w


def identify_bytes(words: list[int]) -> bytes:
    return b"".join(word.to_bytes(2, "little") for word in words)
