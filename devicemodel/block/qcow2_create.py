"""Creating empty qcow2 images, laid out as ``qemu-img create -f qcow2`` lays them out:
the header (with its extensions and the backing file name) in cluster 0, the refcount
table in cluster 1, the refcount blocks from cluster 2, then the L1 table -- every one of
those clusters counted once, nothing else allocated."""

from __future__ import annotations

import os
import struct
from typing import Optional

from devicemodel.block.image import BlockError
from devicemodel.block.qcow2_format import (
    EXT_BACKING_FORMAT, EXT_END, HEADER_V2_LENGTH, HEADER_V3_LENGTH, HeaderExtension, HeaderV2,
    HeaderV3Fields, MAX_BACKING_FILE_SIZE)

DEFAULT_CLUSTER_BITS = 16


def _extension(kind: int, data: bytes) -> bytes:
    return HeaderExtension.build(dict(type=kind, length=len(data))) + data.ljust((len(data) + 7) // 8 * 8, b"\0")


def create_qcow2(path: str, size: int, *, version: int = 3, cluster_bits: int = DEFAULT_CLUSTER_BITS,
                 refcount_order: int = 4, backing_file: Optional[str] = None,
                 backing_format: Optional[str] = None) -> None:
    """Write a new, empty qcow2 image of ``size`` virtual bytes at ``path`` (replacing it)."""
    if version == 2 and refcount_order != 4:
        raise BlockError("qcow2 version 2 images have 16-bit refcounts")
    cs = 1 << cluster_bits
    l1_size = -(-size // (cs * (cs // 8)))
    l1_clusters = max(1, -(-l1_size * 8 // cs))
    entries_per_block = cs * 8 // (1 << refcount_order)
    blocks = 1
    while -(-(2 + blocks + l1_clusters) // entries_per_block) > blocks:
        blocks += 1
    if blocks > cs // 8:
        raise BlockError(f"a qcow2 image of {size} bytes needs more refcount blocks than one table cluster holds")
    l1_cluster = 2 + blocks
    total = l1_cluster + l1_clusters

    header_length = HEADER_V3_LENGTH if version == 3 else HEADER_V2_LENGTH
    extensions = b""
    if backing_format is not None:
        extensions += _extension(EXT_BACKING_FORMAT, backing_format.encode())
    extensions += HeaderExtension.build(dict(type=EXT_END, length=0))
    name = os.fsencode(backing_file) if backing_file is not None else b""
    if len(name) > MAX_BACKING_FILE_SIZE or header_length + len(extensions) + len(name) > cs:
        raise BlockError(f"backing file name too long: {backing_file}")
    header = HeaderV2.build(dict(
        version=version, backing_file_offset=header_length + len(extensions) if name else 0,
        backing_file_size=len(name), cluster_bits=cluster_bits, size=size, crypt_method=0,
        l1_size=l1_size, l1_table_offset=l1_cluster * cs, refcount_table_offset=cs,
        refcount_table_clusters=1, nb_snapshots=0, snapshots_offset=0))
    if version == 3:
        header += HeaderV3Fields.build(dict(incompatible_features=0, compatible_features=0,
                                            autoclear_features=0, refcount_order=refcount_order,
                                            header_length=header_length))
        header = header.ljust(header_length, b"\0")     # compression type 0 (zlib) and padding

    image = bytearray(total * cs)
    first = header + extensions + name
    image[:len(first)] = first
    table = struct.pack(f">{blocks}Q", *((2 + i) * cs for i in range(blocks)))
    image[cs:cs + len(table)] = table
    width = 1 << refcount_order
    for cluster in range(total):         # each of these clusters has refcount 1
        block, index = divmod(cluster, entries_per_block)
        base = (2 + block) * cs
        if width >= 8:
            end = base + (index + 1) * width // 8
            image[end - 1] = 1
        else:
            image[base + index * width // 8] |= 1 << (index * width % 8)
    try:
        with open(path, "wb") as f:
            f.write(image)
    except OSError as e:
        raise BlockError(f"Could not create '{path}': {e.strerror}") from None
