"""The qcow2 on-disk format (QEMU's docs/interop/qcow2.txt), versions 2 and 3: the
header, its extensions, and the bits of L1, L2 and refcount table entries. Everything
is big-endian.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ub, Int32ub, Int64ub, Struct

QCOW2_MAGIC = b"QFI\xfb"

HeaderV2 = Struct(
    "magic" / Const(QCOW2_MAGIC),
    "version" / Int32ub,
    "backing_file_offset" / Int64ub,
    "backing_file_size" / Int32ub,
    "cluster_bits" / Int32ub,
    "size" / Int64ub,
    "crypt_method" / Int32ub,
    "l1_size" / Int32ub,
    "l1_table_offset" / Int64ub,
    "refcount_table_offset" / Int64ub,
    "refcount_table_clusters" / Int32ub,
    "nb_snapshots" / Int32ub,
    "snapshots_offset" / Int64ub,
)
HEADER_V2_LENGTH = HeaderV2.sizeof()          # 72

# Version 3 continues the version 2 header.
HeaderV3Fields = Struct(
    "incompatible_features" / Int64ub,
    "compatible_features" / Int64ub,
    "autoclear_features" / Int64ub,
    "refcount_order" / Int32ub,
    "header_length" / Int32ub,
)
HEADER_V3_MIN_LENGTH = HEADER_V2_LENGTH + HeaderV3Fields.sizeof()   # 104
COMPRESSION_TYPE_OFFSET = 104
HEADER_V3_LENGTH = 112    # what QEMU writes: the compression type byte, padded to 8

# Offsets of the header fields a writer updates in place.
REFCOUNT_TABLE_FIELDS_OFFSET = 48     # refcount_table_offset (u64), refcount_table_clusters (u32)
INCOMPATIBLE_FEATURES_OFFSET = 72
AUTOCLEAR_FEATURES_OFFSET = 88

HeaderExtension = Struct(
    "type" / Int32ub,
    "length" / Int32ub,
)
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441

FeatureName = Struct(
    "type" / Int8ub,
    "bit" / Int8ub,
    "name" / Bytes(46),
)

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_NAMES = {INCOMPAT_DIRTY: "dirty bit", INCOMPAT_CORRUPT: "corrupt bit",
                  INCOMPAT_DATA_FILE: "external data file", INCOMPAT_COMPRESSION: "compression type",
                  INCOMPAT_EXTL2: "extended L2 entries"}

CRYPT_NONE = 0
COMPRESSION_ZLIB = 0
ZLIB_WINDOW_BITS = -12      # raw deflate with a 4 KiB window, as QEMU compresses clusters
MAX_BACKING_FILE_SIZE = 1023
MIN_CLUSTER_BITS, MAX_CLUSTER_BITS = 9, 21
MAX_REFCOUNT_ORDER = 6
MAX_L1_SIZE = (32 << 20) // 8     # entries: QEMU's limit is a 32 MiB L1 table
MAX_REFCOUNT_TABLE_SIZE = 8 << 20  # QEMU's limit: an 8 MiB refcount table
SECTOR_SIZE = 512

# L1 entries: bits 9-55 the L2 table's offset, bit 63 "copied" (refcount is exactly 1).
L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
# L2 entries
OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1 << 0
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
# refcount table entries: bits 9-63 the refcount block's offset
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00


def compressed_descriptor(entry: int, cluster_bits: int) -> tuple[int, int]:
    """A compressed cluster's (host byte offset, number of 512-byte sectors it touches),
    the sectors counted from the one holding the offset."""
    x = 62 - (cluster_bits - 8)
    offset = entry & ((1 << x) - 1)
    sectors = ((entry >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1
    return offset, sectors
