"""The guest's page tables as the monitor reads them (QEMU's target/i386/monitor.c):
every present leaf of the current vCPU's paging structures -- 32-bit (4 KiB and, with
CR4.PSE, 4 MiB pages), PAE, and 4-level long-mode paging -- for ``info mem``,
``info tlb`` and ``dump-guest-memory -p``. Nothing is written (no accessed flags)."""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Optional

PG_PRESENT, PG_RW, PG_USER, PG_PWT, PG_PCD = 0x1, 0x2, 0x4, 0x8, 0x10
PG_ACCESSED, PG_DIRTY, PG_PSE, PG_GLOBAL = 0x20, 0x40, 0x80, 0x100
PG_NX = 1 << 63
PROT_MASK = PG_USER | PG_RW | PG_PRESENT
CR0_PG, CR4_PSE, CR4_PAE, EFER_LMA = 1 << 31, 1 << 4, 1 << 5, 1 << 10
ADDR_MASK = ((1 << 52) - 1) & ~0xFFF

ReadPhys = Callable[[int, int], Optional[bytes]]


class Leaf(NamedTuple):
    vaddr: int        # canonical virtual address of the page
    size: int
    pte: int          # the leaf entry
    paddr: int        # the physical address it maps
    prot: int         # U/W/P of every level ANDed


class PagingMode(NamedTuple):
    enabled: bool
    levels: int       # 2 (32-bit), 3 (PAE), 4 (long mode)
    pse: bool


def paging_mode(cr0: int, cr4: int, efer: int) -> PagingMode:
    if not cr0 & CR0_PG:
        return PagingMode(False, 0, False)
    if efer & EFER_LMA:
        return PagingMode(True, 4, True)
    if cr4 & CR4_PAE:
        return PagingMode(True, 3, True)
    return PagingMode(True, 2, bool(cr4 & CR4_PSE))


def canonical(vaddr: int) -> int:
    return vaddr | (((1 << 64) - 1) ^ ((1 << 48) - 1)) if vaddr & (1 << 47) else vaddr


def _entries(read: ReadPhys, addr: int, count: int, width: int) -> list[int]:
    data = read(addr, count * width)
    if data is None:
        return [0] * count
    return [int.from_bytes(data[i:i + width], "little") for i in range(0, len(data), width)]


class _Level(NamedTuple):
    shift: int        # address bits below this level's index
    count: int        # entries per table
    width: int        # bytes per entry
    large: bool       # whether PS=1 makes a leaf here
    has_prot: bool    # whether U/W count (PAE's PDPTEs have neither)


def _levels(mode: PagingMode) -> list[_Level]:
    if mode.levels == 2:
        return [_Level(22, 1024, 4, mode.pse, True), _Level(12, 1024, 4, False, True)]
    if mode.levels == 3:
        return [_Level(30, 4, 8, False, False), _Level(21, 512, 8, True, True),
                _Level(12, 512, 8, False, True)]
    return [_Level(39, 512, 8, False, True), _Level(30, 512, 8, True, True),
            _Level(21, 512, 8, True, True), _Level(12, 512, 8, False, True)]


def _next_table(entry: int, level: _Level) -> int:
    return entry & (0xFFFFF000 if level.width == 4 else ADDR_MASK)


def _leaf(vaddr: int, entry: int, level: _Level, prot: int) -> Leaf:
    size = 1 << level.shift
    if level.width == 4 and level.shift == 22:     # a 4 MiB page: PSE-36 bits 13..20
        paddr = (entry & 0xFFC00000) | ((entry >> 13) & 0xFF) << 32
    else:
        paddr = _next_table(entry, level) & ~(size - 1)
    return Leaf(canonical(vaddr), size, entry, paddr, prot)


def _walk(read: ReadPhys, levels: list[_Level], table: int, base: int, prot: int,
          only: Optional[int] = None) -> Iterator[Leaf]:
    level = levels[0]
    if only is None:
        indices = enumerate(_entries(read, table, level.count, level.width))
    else:
        index = (only >> level.shift) & (level.count - 1)
        indices = [(index, _entries(read, table + index * level.width, 1, level.width)[0])]
    for i, entry in indices:
        if not entry & PG_PRESENT:
            continue
        vaddr = base | (i << level.shift)
        entry_prot = prot & entry & PROT_MASK if level.has_prot else prot
        if len(levels) == 1 or (level.large and entry & PG_PSE):
            yield _leaf(vaddr, entry, level, entry_prot)
        else:
            yield from _walk(read, levels[1:], _next_table(entry, level), vaddr, entry_prot, only)


def leaves(read: ReadPhys, cr3: int, mode: PagingMode) -> Iterator[Leaf]:
    """The present leaves, in ascending virtual-address order."""
    if mode.enabled:
        root = cr3 & (~0x1F & 0xFFFFFFFF if mode.levels == 3 else ~0xFFF & ADDR_MASK)
        yield from _walk(read, _levels(mode), root, 0, PROT_MASK)
