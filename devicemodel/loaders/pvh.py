"""PVH loader: an ELF kernel entered at its XEN_ELFNOTE_PHYS32_ENTRY note (Xen's
docs/misc/pvh.pandoc, xen/include/public/arch-x86/hvm/start_info.h), as QEMU's and
Firecracker's ``-kernel vmlinux`` do it.

``load_pvh(path, ram, cmdline, initrd, rsdp_addr)`` loads the PT_LOAD segments at their
physical addresses, puts the initrd (as the one module) as high as possible in low RAM,
builds the ``hvm_start_info`` structure (version 1, with the E820-style memory map), the
module list and the command line, and returns the entry state: flat 32-bit protected
mode with paging off, EBX = hvm_start_info, CS/DS/ES/SS flat 4 GiB segments, CR0.PE,
EFLAGS with only the reserved bit set, a GDT with the same segments at 0x10 and 0x18.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from construct import Const, Int32ul, Int64ul, Struct

from devicemodel.errors import LoaderError
from devicemodel.firmware_tables.e820 import PcMemoryLayout
from devicemodel.loaders.elf import (LoadedSegment, check_fits, elf_notes, read_elf_kernel, read_kernel_file,
                                     write_segments)
from devicemodel.loaders.initrd import place_initrd, read_initrd
from devicemodel.loaders.x86_boot import (BOOT_INFO_ADDR, CMDLINE_ADDR, CMDLINE_LIMIT, EntryState,
                                          write_protected_mode_gdt)

XEN_ELFNOTE_PHYS32_ENTRY = 18
XEN_NOTE_NAME = b"Xen"
HVM_START_MAGIC = 0x336EC578
HVM_START_VERSION = 1             # with the memory map

HvmStartInfo = Struct(
    "magic" / Const(HVM_START_MAGIC, Int32ul),
    "version" / Int32ul,
    "flags" / Int32ul,
    "nr_modules" / Int32ul,
    "modlist_paddr" / Int64ul,
    "cmdline_paddr" / Int64ul,
    "rsdp_paddr" / Int64ul,
    "memmap_paddr" / Int64ul,      # version 1
    "memmap_entries" / Int32ul,
    "reserved" / Int32ul,
)

HvmModlistEntry = Struct(
    "paddr" / Int64ul,
    "size" / Int64ul,
    "cmdline_paddr" / Int64ul,
    "reserved" / Int64ul,
)

HvmMemmapTableEntry = Struct(
    "addr" / Int64ul,
    "size" / Int64ul,
    "type" / Int32ul,
    "reserved" / Int32ul,
)


@dataclass(frozen=True)
class PvhBoot:
    """What the loader placed in RAM and the state to enter the kernel in."""

    entry: EntryState
    start_info_addr: int
    segments: tuple[LoadedSegment, ...]
    cmdline_addr: int
    initrd_addr: int
    initrd_size: int


def pvh_entry_point(path: str, notes) -> int:
    """The 32-bit physical entry point of the kernel's PVH note (4 or 8 bytes)."""
    for name, kind, desc in notes:
        if name == XEN_NOTE_NAME and kind == XEN_ELFNOTE_PHYS32_ENTRY:
            if len(desc) not in (4, 8):
                raise LoaderError(f"'{path}': malformed PVH entry note ({len(desc)} bytes)")
            entry = int.from_bytes(desc, "little")
            if entry >= 1 << 32:
                raise LoaderError(f"'{path}': PVH entry point {entry:#x} is above 4 GiB")
            return entry
    raise LoaderError(f"'{path}' has no PVH entry note (Xen note XEN_ELFNOTE_PHYS32_ENTRY); "
                      f"is it a kernel built with CONFIG_PVH?")


def load_pvh(path: str, ram, cmdline: str = "", initrd: Optional[str] = None,
             rsdp_addr: Optional[int] = None) -> PvhBoot:
    """Load the PVH ELF kernel at ``path`` (and the initrd file ``initrd``) into ``ram``."""
    kernel = read_elf_kernel(path, read_kernel_file(path), "a PVH kernel")
    entry = pvh_entry_point(path, elf_notes(path, kernel))
    cmdline_bytes = cmdline.encode("utf-8", "surrogateescape") + b"\0"
    if CMDLINE_ADDR + len(cmdline_bytes) > CMDLINE_LIMIT:
        raise LoaderError(f"kernel command line too long: {len(cmdline_bytes) - 1} bytes, pyhv passes at most "
                          f"{CMDLINE_LIMIT - CMDLINE_ADDR - 1}")
    initrd_data = read_initrd(initrd)

    with memoryview(ram) as mem:
        layout = PcMemoryLayout(len(mem))
        check_fits(path, kernel.loaded, layout.usable_low_top)
        for seg in kernel.loaded:
            if seg.addr < CMDLINE_LIMIT:
                raise LoaderError(f"'{path}': segment [{seg.addr:#x}..{seg.end - 1:#x}] overlaps the boot "
                                  f"information pyhv puts below {CMDLINE_LIMIT:#x}")
            if not layout.is_usable(seg.addr, seg.memsz):
                raise LoaderError(f"'{path}': segment [{seg.addr:#x}..{seg.end - 1:#x}] overlaps memory "
                                  f"the firmware reserves")
        initrd_addr = place_initrd(initrd, len(initrd_data), layout.usable_low_top,
                                   max(seg.end for seg in kernel.loaded))

        write_segments(mem, kernel.segments)
        if initrd_data:
            mem[initrd_addr:initrd_addr + len(initrd_data)] = initrd_data
        mem[CMDLINE_ADDR:CMDLINE_ADDR + len(cmdline_bytes)] = cmdline_bytes
        info = _start_info(layout, initrd_addr, len(initrd_data), rsdp_addr)
        mem[BOOT_INFO_ADDR:BOOT_INFO_ADDR + len(info)] = info
        gdt = write_protected_mode_gdt(mem)
    state = EntryState(rip=entry, regs={"rbx": BOOT_INFO_ADDR}, gdt=gdt)
    return PvhBoot(entry=state, start_info_addr=BOOT_INFO_ADDR, segments=kernel.loaded,
                   cmdline_addr=CMDLINE_ADDR, initrd_addr=initrd_addr, initrd_size=len(initrd_data))


def _start_info(layout: PcMemoryLayout, initrd_addr: int, initrd_size: int, rsdp_addr: Optional[int]) -> bytes:
    """hvm_start_info, then the module list (the initrd, if any), then the memory map."""
    modules = [HvmModlistEntry.build(dict(paddr=initrd_addr, size=initrd_size, cmdline_paddr=0, reserved=0))
               ] if initrd_size else []
    modlist_addr = BOOT_INFO_ADDR + HvmStartInfo.sizeof()
    memmap_addr = modlist_addr + len(modules) * HvmModlistEntry.sizeof()
    regions = layout.memory_map()
    memmap = [HvmMemmapTableEntry.build(dict(addr=r.base, size=r.length, type=r.type, reserved=0))
              for r in regions]
    info = HvmStartInfo.build(dict(
        version=HVM_START_VERSION, flags=0, nr_modules=len(modules),
        modlist_paddr=modlist_addr if modules else 0, cmdline_paddr=CMDLINE_ADDR,
        rsdp_paddr=rsdp_addr or 0, memmap_paddr=memmap_addr, memmap_entries=len(memmap), reserved=0))
    return info + b"".join(modules) + b"".join(memmap)
