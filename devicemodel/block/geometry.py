"""The cylinder/head/sector geometry a disk reports, guessed as QEMU's hd_geometry_guess
(hw/block/hd-geometry.c) guesses it for a drive without explicit geometry:

* if sector 0 holds an MS-DOS partition table (0x55 0xaa at 510) with an entry whose
  end head is not 0, its ending head and sector give heads and sectors per track
  (partitions end on a cylinder boundary), and cylinders follow from the capacity --
  used when that means at most 16 heads and 1..16383 cylinders;
* otherwise 16 heads, 63 sectors per track, and the capacity's cylinders, between 2
  and 16383.
"""

from __future__ import annotations

import struct

SECTOR_SIZE = 512
PARTITION_TABLE = 0x1BE
PARTITION_ENTRY = struct.Struct("<B3sB3sII")    # boot, start CHS, type, end CHS, start LBA, sectors
MAX_CYLINDERS = 16383
STD_HEADS, STD_SECTORS = 16, 63


def standard_geometry(sectors: int) -> tuple[int, int, int]:
    """16 heads and 63 sectors per track, as many cylinders as fit (QEMU's guess_chs_for_size)."""
    return min(max(sectors // (STD_HEADS * STD_SECTORS), 2), MAX_CYLINDERS), STD_HEADS, STD_SECTORS


def partition_table_geometry(sector0: bytes, sectors: int):
    """(cylinders, heads, sectors) from the partition table in ``sector0``, or None."""
    if len(sector0) < SECTOR_SIZE or sector0[510:512] != b"\x55\xaa":
        return None
    for index in range(4):
        _, _, _, end_chs, _, count = PARTITION_ENTRY.unpack_from(sector0, PARTITION_TABLE + 16 * index)
        end_head, end_sector = end_chs[0], end_chs[1] & 63
        if not count or not end_head or not end_sector:
            continue
        heads = end_head + 1
        cylinders = sectors // (heads * end_sector)
        if 1 <= cylinders <= MAX_CYLINDERS:
            return cylinders, heads, end_sector
    return None


def guess_geometry(sector0: bytes, sectors: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) of a disk of ``sectors`` whose first sector is ``sector0``."""
    guess = partition_table_geometry(sector0, sectors)
    if guess is None or guess[1] > STD_HEADS:
        # no table, or one written for a BIOS that translated: a standard physical geometry
        return standard_geometry(sectors)
    return guess
