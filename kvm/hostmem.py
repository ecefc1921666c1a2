"""Host-physical memory as the hypervisor sees it: the machine's RAM map that the
silicon walks (VMCS regions, EPT tables, bitmaps and guest memory all live in it)."""

import mmap
import threading

from kvm._silicon import ffi, lib

PAGE_SIZE = 4096
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)   # Linux value; Python < 3.13 lacks the name
# Pages the hypervisor allocates for itself (VMCS, EPT tables, bitmaps).
POOL_BASE = 0x0010_0000
POOL_SIZE = 1 << 30
# Guest memory is placed above, 1 GiB aligned, below the 40-bit physical limit.
GUEST_RAM_BASE = 0x40_0000_0000
PHYS_LIMIT = 1 << 40
# The silicon maps at most 64 RAM ranges: the pool and one per memslot.
MAX_MEMSLOTS = 63


class HostMemoryError(Exception):
    pass


class HostPhysicalMemory:
    """One machine's host-physical address space."""

    def __init__(self):
        self.silicon = ffi.gc(lib.silicon_new(), lib.silicon_free)
        self._lock = threading.Lock()
        # the pool is reserved, not committed: untouched pages cost nothing
        self._pool = mmap.mmap(-1, POOL_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
        self._pool_words = memoryview(self._pool).cast("Q")
        self._buffers = {}
        self._map(POOL_BASE, self._pool)
        # the allocator is kvm/'s compiled half, which takes EPT tables from it too
        self.pool = ffi.gc(lib.root_pool_new(self.silicon, POOL_BASE, POOL_SIZE), lib.root_pool_free)
        self._next_ram = GUEST_RAM_BASE

    def _map(self, hpa, buffer):
        pointer = ffi.from_buffer(buffer)
        if lib.silicon_map_ram(self.silicon, hpa, pointer, len(buffer)) != 0:
            raise HostMemoryError(f"cannot map {len(buffer):#x} bytes at host-physical {hpa:#x}")
        self._buffers[hpa] = (buffer, pointer)

    def alloc_page(self) -> int:
        """A zeroed 4 KiB page of the hypervisor's pool; returns its host-physical address."""
        hpa = lib.root_pool_alloc(self.pool)
        if hpa == 0:
            raise HostMemoryError("hypervisor page pool exhausted")
        return hpa

    def free_page(self, hpa: int):
        lib.root_pool_release(self.pool, hpa)

    def read64(self, hpa: int) -> int:
        return self._pool_words[(hpa - POOL_BASE) >> 3]

    def read_table(self, hpa: int):
        """The 512 entries of the paging-structure page at hpa."""
        first = (hpa - POOL_BASE) >> 3
        return self._pool_words[first:first + 512].tolist()

    def write64(self, hpa: int, value: int):
        self._pool_words[(hpa - POOL_BASE) >> 3] = value

    def page_view(self, hpa: int) -> memoryview:
        """The pool page at hpa as writable memory (what the processors see there)."""
        offset = hpa - POOL_BASE
        return memoryview(self._pool)[offset:offset + PAGE_SIZE]

    def atomic_or32(self, hpa: int, bits: int):
        """A locked OR into the 32-bit word at hpa, atomic with the processors' accesses."""
        lib.silicon_atomic_or32(self.silicon, hpa, bits)

    def write_bytes(self, hpa: int, data: bytes):
        offset = hpa - POOL_BASE
        self._pool[offset:offset + len(data)] = data

    def map_guest_buffer(self, buffer) -> int:
        """Give a userspace buffer host-physical pages (as the kernel backs a memslot)."""
        size = len(buffer)
        with self._lock:
            hpa = self._next_ram
            self._next_ram = (hpa + size + (1 << 30) - 1) & ~((1 << 30) - 1)
        if hpa + size > PHYS_LIMIT:
            raise HostMemoryError("guest memory exceeds the host-physical address space")
        self._map(hpa, buffer)
        return hpa

    def unmap_guest_buffer(self, hpa: int):
        lib.silicon_unmap_ram(self.silicon, hpa)
        self._buffers.pop(hpa, None)

    def invalidate_code(self, hpa: int, size: int):
        lib.silicon_invalidate_code(self.silicon, hpa, size)
