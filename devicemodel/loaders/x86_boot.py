"""What a loader hands the kernel besides the kernel itself: the processor state of the
hand-over (``EntryState``) and the structures that state points at, built in guest RAM.

The boot protocols enter the kernel in flat 32-bit protected mode with paging off
(Multiboot, PVH, Linux's 32-bit entry) or in 64-bit mode with paging on (Linux's 64-bit
entry). For both we build a GDT with Linux's boot selectors (``__BOOT_CS`` = 0x10,
``__BOOT_DS`` = 0x18), so that a kernel that reloads a segment register before it loads
its own GDT finds the segment it already has. Long mode also needs page tables: the
first 4 GiB identity-mapped with 2 MiB pages, as Linux's 64-bit boot protocol asks for
the kernel, its boot_params and command line (QEMU and Firecracker do the same).

``devicemodel.entry_state.apply_entry_state`` puts an ``EntryState`` into a vCPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from construct import Array, BitStruct, BitsInteger, Flag, Int8ul, Int16ul, Int64ul, Struct

# Low memory the loaders use, below the EBDA and away from the real-mode IVT and BDA
# (0x0-0x4ff), the Multiboot information (0x9000) and a kernel at 1 MiB.
GDT_ADDR = 0x500
BOOT_INFO_ADDR = 0x7000           # boot_params (the zero page) or hvm_start_info
PAGE_TABLES_ADDR = 0x10000        # PML4, PDPT, 4 page directories: 0x10000-0x15fff
CMDLINE_ADDR = 0x20000
CMDLINE_LIMIT = 0x80000           # the command line ends below this

CODE_SELECTOR = 0x10
DATA_SELECTOR = 0x18

TYPE_CODE_EXEC_READ_ACCESSED = 0xB
TYPE_DATA_READ_WRITE_ACCESSED = 0x3

CR0_PE = 1 << 0
CR0_ET = 1 << 4
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFLAGS_RESERVED = 1 << 1

PTE_PRESENT = 1 << 0
PTE_WRITE = 1 << 1
PTE_LARGE = 1 << 7               # a 2 MiB page in a page directory
PAGE_SIZE = 0x1000
IDENTITY_MAPPED = 1 << 32        # the 64-bit entry's page tables map [0, 4 GiB)


@dataclass(frozen=True)
class FlatSegment:
    """A segment with base 0 and a 4 GiB limit (4 KiB granularity), ring 0."""

    selector: int
    type: int
    db: int       # 32-bit default operand size
    l: int        # noqa: E741 (the descriptor's name): 64-bit code segment


CODE32 = FlatSegment(CODE_SELECTOR, TYPE_CODE_EXEC_READ_ACCESSED, db=1, l=0)
CODE64 = FlatSegment(CODE_SELECTOR, TYPE_CODE_EXEC_READ_ACCESSED, db=0, l=1)
DATA = FlatSegment(DATA_SELECTOR, TYPE_DATA_READ_WRITE_ACCESSED, db=1, l=0)

# SDM Vol. 3A, 3.4.5 "Segment Descriptors"
SegmentDescriptor = Struct(
    "limit_low" / Int16ul,
    "base_low" / Int16ul,
    "base_mid" / Int8ul,
    "access" / BitStruct("present" / Flag, "dpl" / BitsInteger(2), "s" / Flag, "type" / BitsInteger(4)),
    "flags" / BitStruct("g" / Flag, "db" / Flag, "l" / Flag, "avl" / Flag, "limit_high" / BitsInteger(4)),
    "base_high" / Int8ul,
)

PageTable = Array(512, Int64ul)


def _descriptor(seg: Optional[FlatSegment]) -> bytes:
    if seg is None:
        return bytes(SegmentDescriptor.sizeof())
    return SegmentDescriptor.build(dict(
        limit_low=0xFFFF, base_low=0, base_mid=0, base_high=0,
        access=dict(present=True, dpl=0, s=True, type=seg.type),
        flags=dict(g=True, db=bool(seg.db), l=bool(seg.l), avl=False, limit_high=0xF)))


def build_gdt(code: FlatSegment) -> bytes:
    """The boot GDT: two null descriptors, ``code`` at 0x10, the flat data segment at 0x18."""
    return b"".join(_descriptor(seg) for seg in (None, None, code, DATA))


def build_identity_page_tables(base: int) -> bytes:
    """4-level page tables at ``base`` (page-aligned) that identity-map [0, 4 GiB) with 2 MiB pages:
    the PML4, then the PDPT, then one page directory per GiB."""
    pdpt, first_pd = base + PAGE_SIZE, base + 2 * PAGE_SIZE
    directories = IDENTITY_MAPPED >> 30
    pml4 = [pdpt | PTE_PRESENT | PTE_WRITE] + [0] * 511
    pdpt_entries = [first_pd + i * PAGE_SIZE | PTE_PRESENT | PTE_WRITE for i in range(directories)]
    tables = [PageTable.build(pml4), PageTable.build(pdpt_entries + [0] * (512 - directories))]
    for gib in range(directories):
        tables.append(PageTable.build([(gib << 30) + (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE
                                       for i in range(512)]))
    return b"".join(tables)


PAGE_TABLES_SIZE = (2 + (IDENTITY_MAPPED >> 30)) * PAGE_SIZE


@dataclass(frozen=True)
class EntryState:
    """The processor state in which a boot protocol enters the kernel.

    ``regs`` names the general registers that have a value (``rax``, ``rsi``...); all
    others are zero. ``gdt`` is (base, limit) of the GDT the loader built, or None when
    the protocol gives the kernel none (Multiboot: a placeholder is loaded). With a
    64-bit ``code`` segment the state is long mode with paging through ``cr3``;
    otherwise protected mode with paging off.
    """

    rip: int
    regs: Mapping[str, int] = field(default_factory=dict)
    code: FlatSegment = CODE32
    data: FlatSegment = DATA
    gdt: Optional[tuple[int, int]] = None
    cr3: int = 0

    @property
    def long_mode(self) -> bool:
        return bool(self.code.l)

    @property
    def cr0(self) -> int:
        return CR0_PE | CR0_ET | (CR0_PG if self.long_mode else 0)

    @property
    def cr4(self) -> int:
        return CR4_PAE if self.long_mode else 0

    @property
    def efer(self) -> int:
        return EFER_LME | EFER_LMA if self.long_mode else 0


def write_protected_mode_gdt(mem) -> tuple[int, int]:
    """Build the 32-bit boot GDT in ``mem``; its (base, limit)."""
    gdt = build_gdt(CODE32)
    mem[GDT_ADDR:GDT_ADDR + len(gdt)] = gdt
    return GDT_ADDR, len(gdt) - 1


def write_long_mode_structures(mem) -> tuple[tuple[int, int], int]:
    """Build the 64-bit boot GDT and the identity-mapping page tables in ``mem``:
    ((GDT base, limit), CR3)."""
    gdt = build_gdt(CODE64)
    mem[GDT_ADDR:GDT_ADDR + len(gdt)] = gdt
    tables = build_identity_page_tables(PAGE_TABLES_ADDR)
    mem[PAGE_TABLES_ADDR:PAGE_TABLES_ADDR + len(tables)] = tables
    return (GDT_ADDR, len(gdt) - 1), PAGE_TABLES_ADDR
