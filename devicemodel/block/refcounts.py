"""Host cluster allocation in a qcow2 image: the two-level refcount structure.

The refcount table (contiguous clusters) points to refcount blocks (one cluster each);
a block holds ``entries`` refcounts of ``bits`` bits each (sub-byte widths count from the
least significant bit), big-endian. A cluster whose block is missing has refcount 0.

Allocation is first-fit from ``free_hint`` among clusters whose refcount block exists.
When no such run exists the new clusters go at the end of the image, in an "area" laid
out like QEMU's: first any refcount blocks the area needs for itself, then a bigger copy
of the refcount table if the old one cannot point to those blocks, then the requested
clusters -- every cluster of the area counted in a block that is written before the table
points to it, and the header switched to a moved table last. Every update is written
through to the file at once.
"""

from __future__ import annotations

import struct
from typing import Callable, Optional

from devicemodel.block.image import BlockError, HostFile
from devicemodel.block.qcow2_format import MAX_REFCOUNT_TABLE_SIZE, REFT_OFFSET_MASK


class Refcounts:
    def __init__(self, file: HostFile, cluster_bits: int, refcount_order: int, table_offset: int,
                 table_clusters: int, end_cluster: int, on_table_moved: Callable[[int, int], None]):
        self.file = file
        self.cluster_bits = cluster_bits
        self.cluster_size = 1 << cluster_bits
        self.bits = 1 << refcount_order
        self.max_refcount = (1 << self.bits) - 1
        self.entries = self.cluster_size * 8 // self.bits
        self.table_offset = table_offset
        self.table_clusters = table_clusters
        raw = file.pread(table_offset, table_clusters * self.cluster_size)
        self.table = list(struct.unpack(f">{len(raw) // 8}Q", raw))
        for index, entry in enumerate(self.table):
            if entry & ~REFT_OFFSET_MASK or entry & (self.cluster_size - 1):
                raise BlockError(f"qcow2: refcount block {index} has an invalid offset {entry:#x}")
        self._blocks: dict[int, bytearray] = {}
        self.free_hint = 0
        self.end = end_cluster        # every cluster from here on is free
        self.on_table_moved = on_table_moved

    # --- entries ------------------------------------------------------------

    def _span(self, index: int) -> tuple[int, int]:
        """Byte offset and length in its block of refcount ``index``."""
        if self.bits >= 8:
            width = self.bits // 8
            return index * width, width
        return index * self.bits // 8, 1

    def _get(self, block, index: int) -> int:
        if self.bits >= 8:
            start, width = self._span(index)
            return int.from_bytes(block[start:start + width], "big")
        shift = index * self.bits % 8
        return (block[index * self.bits // 8] >> shift) & self.max_refcount

    def _put(self, block: bytearray, index: int, value: int) -> None:
        if self.bits >= 8:
            start, width = self._span(index)
            block[start:start + width] = value.to_bytes(width, "big")
        else:
            shift = index * self.bits % 8
            byte = index * self.bits // 8
            block[byte] = (block[byte] & ~(self.max_refcount << shift) & 0xFF) | (value << shift)

    def _block(self, table_index: int) -> Optional[bytearray]:
        """The refcount block for that table entry, or None where there is none."""
        if table_index >= len(self.table) or not self.table[table_index]:
            return None
        block = self._blocks.get(table_index)
        if block is None:
            block = bytearray(self.file.pread(self.table[table_index], self.cluster_size))
            self._blocks[table_index] = block
        return block

    def get(self, cluster: int) -> int:
        block = self._block(cluster // self.entries)
        return 0 if block is None else self._get(block, cluster % self.entries)

    def _update(self, clusters: range, delta: int, expect: Optional[int] = None) -> None:
        """Add ``delta`` to the refcount of each cluster (all in existing blocks), writing each
        block's changed bytes once; with ``expect``, every old refcount must be that value."""
        position = clusters.start
        while position < clusters.stop:
            table_index, first = divmod(position, self.entries)
            count = min(clusters.stop - position, self.entries - first)
            block = self._block(table_index)
            if block is None:
                raise BlockError(f"qcow2: cluster {position:#x} has no refcount block")
            for index in range(first, first + count):
                old = self._get(block, index)
                new = old + delta
                if (expect is not None and old != expect) or not 0 <= new <= self.max_refcount:
                    raise BlockError(f"qcow2: refcount of cluster {table_index * self.entries + index:#x} "
                                     f"is {old}; cannot change it by {delta} (is the image corrupt?)")
                self._put(block, index, new)
                if new == 0:
                    self.free_hint = min(self.free_hint, table_index * self.entries + index)
            start = self._span(first)[0]
            stop = sum(self._span(first + count - 1))
            self.file.pwrite(self.table[table_index] + start, block[start:stop])
            position += count

    # --- allocation -----------------------------------------------------------

    def allocate(self, count: int) -> int:
        """The byte offset of ``count`` contiguous new clusters, each with refcount 1."""
        start = self._find_free(count)
        if start is None:
            start = self._extend(count)
        else:
            self._update(range(start, start + count), +1, expect=0)
        self.end = max(self.end, start + count)
        return start << self.cluster_bits

    def free(self, offset: int, length: int) -> None:
        """Drop one reference to every cluster that ``[offset, offset + length)`` touches."""
        first = offset >> self.cluster_bits
        last = (offset + length - 1) >> self.cluster_bits
        self._update(range(first, last + 1), -1)

    def _find_free(self, count: int) -> Optional[int]:
        """First fit among the counted clusters before ``end``; moves ``free_hint`` on."""
        cluster, run, first_free = self.free_hint, None, None
        while cluster < self.end:
            block = self._block(cluster // self.entries)
            if block is None:
                cluster, run = (cluster // self.entries + 1) * self.entries, None
                continue
            if self._get(block, cluster % self.entries) == 0:
                first_free = cluster if first_free is None else first_free
                run = cluster if run is None else run
                if cluster - run + 1 == count:
                    self.free_hint = first_free
                    return run
            else:
                run = None
            cluster += 1
        self.free_hint = self.end if first_free is None else first_free
        return None

    def _covered(self, table_index: int) -> bool:
        return table_index < len(self.table) and bool(self.table[table_index])

    def _extend(self, count: int) -> int:
        """Place ``count`` clusters at the end, with the blocks and table they need."""
        start = self.end
        new_blocks: list[int] = []      # table indices of the blocks the area brings
        table_clusters = 0              # clusters of a new, bigger refcount table (0: none)
        while True:
            total = len(new_blocks) + table_clusters + count
            needed = [i for i in range(start // self.entries, (start + total - 1) // self.entries + 1)
                      if not self._covered(i)]
            clusters = table_clusters
            if needed and needed[-1] >= len(self.table):
                entries = max(needed[-1] + 1, len(self.table) * 3 // 2)
                clusters = max(clusters, -(-entries * 8 // self.cluster_size))
            if needed == new_blocks and clusters == table_clusters:
                break
            new_blocks, table_clusters = needed, clusters
        if table_clusters * self.cluster_size > MAX_REFCOUNT_TABLE_SIZE:
            raise BlockError("qcow2: the image has grown too large for its refcount table")
        blocks = {index: bytearray(self.cluster_size) for index in new_blocks}
        area = range(start, start + len(new_blocks) + table_clusters + count)
        for index in range(area.start // self.entries, (area.stop - 1) // self.entries + 1):
            part = range(max(area.start, index * self.entries), min(area.stop, (index + 1) * self.entries))
            if index in blocks:
                for cluster in part:
                    self._put(blocks[index], cluster % self.entries, 1)
            else:   # a range that already has its block (the last one, where the area starts)
                self._update(part, +1, expect=0)
        offsets = {}
        for position, index in enumerate(new_blocks):
            offsets[index] = (start + position) << self.cluster_bits
            self.file.pwrite(offsets[index], blocks[index])
            self._blocks[index] = blocks[index]
        if table_clusters:
            self._move_table(start + len(new_blocks), table_clusters, offsets)
        else:
            for index, offset in offsets.items():
                self.table[index] = offset
                self.file.pwrite(self.table_offset + 8 * index, struct.pack(">Q", offset))
        return start + len(new_blocks) + table_clusters

    def _move_table(self, cluster: int, clusters: int, new_offsets: dict[int, int]) -> None:
        table = self.table + [0] * (clusters * self.cluster_size // 8 - len(self.table))
        for index, offset in new_offsets.items():
            table[index] = offset
        offset = cluster << self.cluster_bits
        self.file.pwrite(offset, struct.pack(f">{len(table)}Q", *table))
        old_offset, old_clusters = self.table_offset, self.table_clusters
        self.table, self.table_offset, self.table_clusters = table, offset, clusters
        self.on_table_moved(offset, clusters)
        self.free(old_offset, old_clusters << self.cluster_bits)
