"""qcow2 images, versions 2 and 3 (QEMU's docs/interop/qcow2.txt).

A guest cluster maps through the L1 table (in memory) and an L2 table (cached, one
cluster each) to an L2 entry: unallocated (the backing file's data, or zeros), a zero
cluster (v3), a compressed cluster (raw deflate, read-only here), or a host cluster.

Writes allocate on first touch: a cluster that is not a host cluster of refcount 1 (the
entry's "copied" flag) gets a new host cluster holding the old contents merged with the
new bytes, and the old cluster loses its reference; an L2 table shared with a snapshot is
copied the same way. The order is QEMU's: refcount first, then the data, then the L2
entry, so an interrupted write can leak a cluster but never point at a free one.
Metadata is written through at once; ``flush`` makes it all durable with fsync.

Refused, with a message saying why: encryption, external data files, extended L2
entries, compression types other than zlib, and -- for writing -- images whose dirty
(lazy refcounts) or corrupt bit is set.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict
from typing import Callable, Optional

from devicemodel.block.image import BlockError, BlockImage, HostFile
from devicemodel.block.qcow2_format import (
    AUTOCLEAR_FEATURES_OFFSET, COMPRESSION_TYPE_OFFSET, COMPRESSION_ZLIB, CRYPT_NONE,
    EXT_BACKING_FORMAT, EXT_END, EXT_FEATURE_NAMES, FeatureName, HEADER_V2_LENGTH, HEADER_V3_MIN_LENGTH,
    HeaderExtension, HeaderV2, HeaderV3Fields, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, INCOMPAT_NAMES,
    L1E_OFFSET_MASK, L2E_OFFSET_MASK, MAX_BACKING_FILE_SIZE, MAX_CLUSTER_BITS, MAX_L1_SIZE,
    MAX_REFCOUNT_ORDER, MAX_REFCOUNT_TABLE_SIZE, MIN_CLUSTER_BITS, OFLAG_COMPRESSED, OFLAG_COPIED,
    OFLAG_ZERO, QCOW2_MAGIC, REFCOUNT_TABLE_FIELDS_OFFSET, SECTOR_SIZE, ZLIB_WINDOW_BITS,
    compressed_descriptor)
from devicemodel.block.refcounts import Refcounts

L2_CACHE_TABLES = 256
SUPPORTED_INCOMPATIBLE = INCOMPAT_DIRTY | INCOMPAT_CORRUPT

OpenBacking = Callable[[str, Optional[str]], BlockImage]   # (path, format or None) -> read-only image


class Qcow2Image(BlockImage):
    format = "qcow2"

    def __init__(self, path: str, read_only: bool = False, open_backing: Optional[OpenBacking] = None):
        self.filename = path
        self.read_only = read_only
        self.file = HostFile(path, read_only)
        self.backing: Optional[BlockImage] = None
        try:
            self._open(open_backing)
        except BaseException:
            self.close()
            raise

    # --- opening ----------------------------------------------------------------

    def _fail(self, reason: str) -> BlockError:
        return BlockError(f"'{self.filename}': {reason}")

    def _open(self, open_backing: Optional[OpenBacking]) -> None:
        raw = self.file.pread(0, HEADER_V3_MIN_LENGTH)
        if raw[:4] != QCOW2_MAGIC:
            raise self._fail("Image is not in qcow2 format")
        h = HeaderV2.parse(raw)
        if h.version not in (2, 3):
            raise self._fail(f"Unsupported qcow2 version {h.version}")
        if not MIN_CLUSTER_BITS <= h.cluster_bits <= MAX_CLUSTER_BITS:
            raise self._fail("Cluster size must be a power of two between 512 and 2048k")
        self.version = h.version
        self.cluster_bits = h.cluster_bits
        self.cluster_size = cs = 1 << h.cluster_bits
        self.l2_entries = cs // 8
        self.size = h.size
        refcount_order, header_length, incompatible, autoclear = 4, HEADER_V2_LENGTH, 0, 0
        if h.version == 3:
            v3 = HeaderV3Fields.parse(raw[HEADER_V2_LENGTH:])
            refcount_order, header_length = v3.refcount_order, v3.header_length
            incompatible, autoclear = v3.incompatible_features, v3.autoclear_features
            if header_length < HEADER_V3_MIN_LENGTH or header_length % 8 or header_length > cs:
                raise self._fail(f"qcow2 header length {header_length} is invalid")
            if refcount_order > MAX_REFCOUNT_ORDER:
                raise self._fail("Reference count entry width too large; may not exceed 64 bits")
        names = self._read_extensions(header_length)
        unknown = incompatible & ~SUPPORTED_INCOMPATIBLE
        if unknown:
            features = [names.get(bit) or INCOMPAT_NAMES.get(1 << bit) or f"bit {bit}"
                        for bit in range(64) if unknown >> bit & 1]
            raise self._fail(f"Unsupported qcow2 feature(s): {', '.join(features)}")
        if header_length > COMPRESSION_TYPE_OFFSET:
            compression = self.file.pread(COMPRESSION_TYPE_OFFSET, 1)[0]
            if compression != COMPRESSION_ZLIB:
                raise self._fail(f"compression type {compression} is not supported (only zlib)")
        if h.crypt_method != CRYPT_NONE:
            raise self._fail("encrypted images are not supported")
        if not self.read_only and incompatible & INCOMPAT_CORRUPT:
            raise self._fail("qcow2: Image is corrupt; cannot be opened read/write")
        if not self.read_only and incompatible & INCOMPAT_DIRTY:
            raise self._fail("image is dirty (lazy refcounts); repair it with 'qemu-img check -r all' first")
        self._read_l1(h)
        if (h.refcount_table_offset & (cs - 1) or
                h.refcount_table_clusters * cs > MAX_REFCOUNT_TABLE_SIZE):
            raise self._fail("invalid refcount table")
        self._open_backing(h, open_backing)
        self._l2_cache: OrderedDict[int, list[int]] = OrderedDict()
        self._compressed = (None, b"")   # the last cluster decompressed: (L2 entry, data)
        self.refcounts = None
        if not self.read_only:
            if autoclear:   # features this writer cannot keep consistent lose their bit first
                self.file.pwrite(AUTOCLEAR_FEATURES_OFFSET, struct.pack(">Q", 0))
            self.refcounts = Refcounts(self.file, self.cluster_bits, refcount_order, h.refcount_table_offset,
                                       h.refcount_table_clusters, -(-self.file.size() // cs),
                                       self._refcount_table_moved)

    def _read_extensions(self, header_length: int) -> dict[int, str]:
        """Header extensions after the header: the backing format; the incompatible feature
        names (by bit) for error messages."""
        self.backing_format = None
        names = {}
        offset = header_length
        while offset + HeaderExtension.sizeof() <= self.cluster_size:
            ext = HeaderExtension.parse(self.file.pread(offset, HeaderExtension.sizeof()))
            if ext.type == EXT_END:
                break
            data_offset = offset + HeaderExtension.sizeof()
            if data_offset + ext.length > self.cluster_size:
                raise self._fail("Invalid qcow2 header extension (it overruns the first cluster)")
            data = self.file.pread(data_offset, ext.length)
            if ext.type == EXT_BACKING_FORMAT:
                self.backing_format = data.decode("utf-8", "replace")
            elif ext.type == EXT_FEATURE_NAMES:
                for start in range(0, len(data) - FeatureName.sizeof() + 1, FeatureName.sizeof()):
                    entry = FeatureName.parse(data[start:])
                    if entry.type == 0 and entry.bit < 64:
                        names[entry.bit] = entry.name.rstrip(b"\0").decode("utf-8", "replace")
            offset = data_offset + (ext.length + 7) // 8 * 8
        return names

    def _read_l1(self, h) -> None:
        cs = self.cluster_size
        needed = -(-self.size // (cs * self.l2_entries))
        if h.l1_size > MAX_L1_SIZE:
            raise self._fail("Active L1 table too large")
        if h.l1_size < needed:
            raise self._fail(f"L1 table of {h.l1_size} entries is too small for {self.size} bytes")
        if h.l1_table_offset & (cs - 1):
            raise self._fail("Invalid L1 table offset")
        self.l1_offset = h.l1_table_offset
        raw = self.file.pread(h.l1_table_offset, 8 * h.l1_size)
        self.l1 = list(struct.unpack(f">{h.l1_size}Q", raw))

    def _open_backing(self, h, open_backing: Optional[OpenBacking]) -> None:
        self.backing_filename = None
        if not h.backing_file_offset:
            return
        if h.backing_file_size > MAX_BACKING_FILE_SIZE or \
                h.backing_file_offset + h.backing_file_size > self.cluster_size:
            raise self._fail("Backing file name too long or outside the header cluster")
        name = self.file.pread(h.backing_file_offset, h.backing_file_size).decode("utf-8", "surrogateescape")
        self.backing_filename = name
        if open_backing is None:
            raise self._fail(f"has a backing file ('{name}') but no way to open it")
        path = name if os.path.isabs(name) else os.path.join(os.path.dirname(self.filename), name)
        self.backing = open_backing(path, self.backing_format)

    def _refcount_table_moved(self, offset: int, clusters: int) -> None:
        self.file.pwrite(REFCOUNT_TABLE_FIELDS_OFFSET, struct.pack(">QI", offset, clusters))

    # --- the mapping ------------------------------------------------------------

    def _l2_table(self, offset: int) -> list[int]:
        if offset & (self.cluster_size - 1):
            raise self._fail(f"L2 table offset {offset:#x} unaligned (the image is corrupt)")
        table = self._l2_cache.get(offset)
        if table is None:
            table = list(struct.unpack(f">{self.l2_entries}Q", self.file.pread(offset, self.cluster_size)))
            self._l2_cache[offset] = table
            if len(self._l2_cache) > L2_CACHE_TABLES:
                self._l2_cache.popitem(last=False)
        else:
            self._l2_cache.move_to_end(offset)
        return table

    def _entry(self, cluster: int) -> int:
        l1_index, l2_index = divmod(cluster, self.l2_entries)
        l2_offset = self.l1[l1_index] & L1E_OFFSET_MASK
        return self._l2_table(l2_offset)[l2_index] if l2_offset else 0

    def _host_offset(self, entry: int) -> int:
        host = entry & L2E_OFFSET_MASK
        if host & (self.cluster_size - 1):
            raise self._fail(f"cluster offset {host:#x} unaligned (the image is corrupt)")
        return host

    # --- reading ----------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        parts = []
        pending = None     # [host offset, length]: adjacent host clusters read at once
        position, end = offset, offset + length
        while position < end:
            cluster, within = divmod(position, self.cluster_size)
            count = min(end - position, self.cluster_size - within)
            entry = self._entry(cluster)
            host = 0 if entry & (OFLAG_COMPRESSED | OFLAG_ZERO) else self._host_offset(entry)
            if host and pending is not None and pending[0] + pending[1] == host + within:
                pending[1] += count
            else:
                if pending is not None:
                    parts.append(self.file.pread(*pending))
                    pending = None
                if host:
                    pending = [host + within, count]
                else:
                    parts.append(self._unmapped(entry, position, within, count))
            position += count
        if pending is not None:
            parts.append(self.file.pread(*pending))
        return b"".join(parts)

    def _unmapped(self, entry: int, position: int, within: int, count: int) -> bytes:
        """Bytes of a cluster that is not a plain host cluster."""
        if entry & OFLAG_COMPRESSED:
            return self._decompress(entry)[within:within + count]
        if entry & OFLAG_ZERO:
            return bytes(count)
        return self._backing_read(position, count)

    def _backing_read(self, position: int, count: int) -> bytes:
        if self.backing is None:
            return bytes(count)
        available = max(0, min(count, self.backing.size - position))
        data = self.backing.read(position, available) if available else b""
        return data + bytes(count - available)

    def _decompress(self, entry: int) -> bytes:
        if self._compressed[0] == entry:
            return self._compressed[1]
        offset, sectors = compressed_descriptor(entry, self.cluster_bits)
        raw = self.file.pread(offset, sectors * SECTOR_SIZE - offset % SECTOR_SIZE)
        try:
            data = zlib.decompressobj(ZLIB_WINDOW_BITS).decompress(raw, self.cluster_size)
        except zlib.error as e:
            raise self._fail(f"compressed cluster at {offset:#x} is corrupt ({e})") from None
        if len(data) != self.cluster_size:
            raise self._fail(f"compressed cluster at {offset:#x} is truncated")
        self._compressed = (entry, data)
        return data

    def _cluster_contents(self, cluster: int, entry: int) -> bytes:
        start = cluster * self.cluster_size
        if entry & (OFLAG_COMPRESSED | OFLAG_ZERO) or not self._host_offset(entry):
            return self._unmapped(entry, start, 0, self.cluster_size)
        return self.file.pread(self._host_offset(entry), self.cluster_size)

    # --- writing ----------------------------------------------------------------

    def write(self, offset: int, data) -> None:
        self.check_writable()
        self.check_range(offset, len(data))
        view, done = memoryview(data), 0
        while done < len(view):
            cluster, within = divmod(offset + done, self.cluster_size)
            count = min(len(view) - done, self.cluster_size - within)
            self._write_cluster(cluster, within, view[done:done + count])
            done += count

    def _write_cluster(self, cluster: int, within: int, chunk) -> None:
        l2_offset, table, l2_index = self._writable_l2(cluster)
        entry = table[l2_index]
        host = 0 if entry & OFLAG_COMPRESSED else self._host_offset(entry)
        if host and entry & OFLAG_COPIED:
            if entry & OFLAG_ZERO:    # a preallocated zero cluster becomes a data cluster
                contents = bytearray(self.cluster_size)
                contents[within:within + len(chunk)] = chunk
                self.file.pwrite(host, contents)
                self._set_l2(l2_offset, table, l2_index, host | OFLAG_COPIED)
            else:
                self.file.pwrite(host + within, chunk)
            return
        if len(chunk) == self.cluster_size:
            contents = chunk
        else:
            contents = bytearray(self._cluster_contents(cluster, entry))
            contents[within:within + len(chunk)] = chunk
        new = self.refcounts.allocate(1)
        self.file.pwrite(new, contents)
        self._set_l2(l2_offset, table, l2_index, new | OFLAG_COPIED)
        self._release(entry)

    def _writable_l2(self, cluster: int) -> tuple[int, list[int], int]:
        """The L2 table holding ``cluster``'s entry, allocated or copied so that it has
        refcount 1: (its offset, its entries, the entry's index)."""
        l1_index, l2_index = divmod(cluster, self.l2_entries)
        l1_entry = self.l1[l1_index]
        old = l1_entry & L1E_OFFSET_MASK
        if old and l1_entry & OFLAG_COPIED:
            return old, self._l2_table(old), l2_index
        table = list(self._l2_table(old)) if old else [0] * self.l2_entries
        new = self.refcounts.allocate(1)
        self.file.pwrite(new, struct.pack(f">{self.l2_entries}Q", *table))
        self._l2_cache[new] = table
        self.l1[l1_index] = new | OFLAG_COPIED
        self.file.pwrite(self.l1_offset + 8 * l1_index, struct.pack(">Q", self.l1[l1_index]))
        if old:
            self._l2_cache.pop(old, None)
            self.refcounts.free(old, self.cluster_size)
        return new, table, l2_index

    def _set_l2(self, l2_offset: int, table: list[int], index: int, entry: int) -> None:
        table[index] = entry
        self.file.pwrite(l2_offset + 8 * index, struct.pack(">Q", entry))

    def _release(self, entry: int) -> None:
        """Drop the reference an L2 entry held on its host cluster(s)."""
        if entry & OFLAG_COMPRESSED:
            offset, sectors = compressed_descriptor(entry, self.cluster_bits)
            start = offset & ~(SECTOR_SIZE - 1)
            self.refcounts.free(start, sectors * SECTOR_SIZE)
            if self._compressed[0] == entry:
                self._compressed = (None, b"")
        elif self._host_offset(entry):
            self.refcounts.free(self._host_offset(entry), self.cluster_size)

    def _whole_clusters(self, offset: int, length: int) -> range:
        """The clusters that ``[offset, offset + length)`` covers completely (the disk's
        last, partial cluster counts as complete when the range reaches the disk's end)."""
        first = -(-offset // self.cluster_size)
        end = offset + length
        last = -(-end // self.cluster_size) if end == self.size else end // self.cluster_size
        return range(first, max(first, last))

    def _set_clusters(self, clusters: range, entry: int) -> None:
        """Point whole clusters at ``entry`` (0 or a zero cluster), releasing what they held."""
        for cluster in clusters:
            old = self._entry(cluster)
            if old == entry or (entry == 0 and self.l1[cluster // self.l2_entries] & L1E_OFFSET_MASK == 0):
                continue
            l2_offset, table, index = self._writable_l2(cluster)
            self._set_l2(l2_offset, table, index, entry)
            self._release(old)

    def discard(self, offset: int, length: int) -> None:
        self.check_writable()
        self.check_range(offset, length)
        if self.backing is None:
            self._set_clusters(self._whole_clusters(offset, length), 0)
        elif self.version >= 3:     # zero, not unallocated: the backing file must not show through
            self._set_clusters(self._whole_clusters(offset, length), OFLAG_ZERO)

    def write_zeroes(self, offset: int, length: int, unmap: bool = False) -> None:
        self.check_writable()
        self.check_range(offset, length)
        if self.version < 3:
            super().write_zeroes(offset, length, unmap)
            return
        clusters = self._whole_clusters(offset, length)
        head_end = min(offset + length, clusters.start * self.cluster_size)
        tail_start = max(head_end, clusters.stop * self.cluster_size)
        super().write_zeroes(offset, head_end - offset)
        super().write_zeroes(tail_start, max(0, offset + length - tail_start))
        self._set_clusters(clusters, OFLAG_ZERO)

    def flush(self) -> None:
        if not self.read_only:
            self.file.sync()

    def close(self) -> None:
        if self.backing is not None:
            self.backing.close()
            self.backing = None
        self.file.close()
