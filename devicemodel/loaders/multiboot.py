"""Multiboot v1 loader (Multiboot Specification 0.6.96), as QEMU's ``-kernel`` does it.

``load_multiboot(path, ram, cmdline)`` copies the kernel into guest RAM (a writable
buffer whose offsets are guest-physical addresses), builds the Multiboot information
structure in RAM and returns the state the boot loader hands to the kernel:
EIP = entry point, EAX = 0x2BADB002, EBX = address of the information structure.

The kernel is an ELF32 file (or an ELF64 file loaded entirely below 4 GiB) whose
PT_LOAD segments are loaded at their physical addresses, or any file whose Multiboot
header carries the a.out-kludge address fields (flag 16). The header must lie in the
first 8192 bytes, 4-byte aligned, with magic + flags + checksum == 0 (mod 2**32).

The information structure gets MEM (mem_lower/mem_upper), CMDLINE, MMAP (a PC memory
map) and LOADER_NAME ("pyhv"). Header flag 2 (video mode) is accepted, as by QEMU, but
no video information is given: the kernel sees that the VBE/framebuffer flags are clear.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import Const, Default, Int8ul, Int16ul, Int32ul, Int64ul, Struct, Bytes

from devicemodel.errors import LoaderError
from devicemodel.firmware_tables.e820 import E820_RAM, LOW_MEMORY_END, PcMemoryLayout
from devicemodel.loaders.elf import (FOUR_GIB, LoadedSegment, check_fits, read_elf_kernel, read_kernel_file,
                                     write_segments)
from devicemodel.loaders.x86_boot import EntryState

__all__ = ["LoaderError", "LoadedSegment", "MultibootBoot", "load_multiboot"]

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
HEADER_SEARCH_LIMIT = 8192

# Multiboot header flags. Bits 0-15 are requirements: a loader that cannot meet one must fail.
HEADER_PAGE_ALIGN = 1 << 0    # modules page-aligned (we load no modules)
HEADER_MEMORY_INFO = 1 << 1   # mem_* fields wanted (always given)
HEADER_VIDEO_MODE = 1 << 2    # video mode information wanted (accepted, not given)
HEADER_AOUT_KLUDGE = 1 << 16  # the address fields below are valid
HEADER_SUPPORTED_REQUIREMENTS = HEADER_PAGE_ALIGN | HEADER_MEMORY_INFO | HEADER_VIDEO_MODE

# multiboot_info.flags
INFO_MEMORY = 1 << 0
INFO_CMDLINE = 1 << 2
INFO_MEM_MAP = 1 << 6
INFO_BOOT_LOADER_NAME = 1 << 9

BOOT_LOADER_NAME = b"pyhv"
INFO_ADDR = 0x9000  # preferred place of the information structure (free low memory)

U32 = Default(Int32ul, 0)
U16 = Default(Int16ul, 0)

MultibootHeader = Struct(
    "magic" / Int32ul,
    "flags" / Int32ul,
    "checksum" / Int32ul,
)

# Follows the header's first 12 bytes; valid when HEADER_AOUT_KLUDGE is set.
MultibootAddressFields = Struct(
    "header_addr" / Int32ul,
    "load_addr" / Int32ul,
    "load_end_addr" / Int32ul,
    "bss_end_addr" / Int32ul,
    "entry_addr" / Int32ul,
)

MultibootInfo = Struct(
    "flags" / U32,
    "mem_lower" / U32,
    "mem_upper" / U32,
    "boot_device" / U32,
    "cmdline" / U32,
    "mods_count" / U32,
    "mods_addr" / U32,
    "syms" / Default(Bytes(16), bytes(16)),
    "mmap_length" / U32,
    "mmap_addr" / U32,
    "drives_length" / U32,
    "drives_addr" / U32,
    "config_table" / U32,
    "boot_loader_name" / U32,
    "apm_table" / U32,
    "vbe_control_info" / U32,
    "vbe_mode_info" / U32,
    "vbe_mode" / U16,
    "vbe_interface_seg" / U16,
    "vbe_interface_off" / U16,
    "vbe_interface_len" / U16,
    "framebuffer_addr" / Default(Int64ul, 0),
    "framebuffer_pitch" / U32,
    "framebuffer_width" / U32,
    "framebuffer_height" / U32,
    "framebuffer_bpp" / Default(Int8ul, 0),
    "framebuffer_type" / Default(Int8ul, 0),
    "color_info" / Default(Bytes(6), bytes(6)),
)

# "size" counts the bytes after itself; a reader steps by size + 4.
MmapEntry = Struct(
    "size" / Const(20, Int32ul),
    "base_addr" / Int64ul,
    "length" / Int64ul,
    "type" / Int32ul,
)


@dataclass(frozen=True)
class MultibootBoot:
    """The kernel's entry state and what the loader placed in RAM."""

    eip: int
    eax: int
    ebx: int
    segments: tuple[LoadedSegment, ...]
    info_addr: int
    info_size: int

    @property
    def entry(self) -> EntryState:
        """Flat 32-bit protected mode, paging off, EAX = magic, EBX = information (no GDT)."""
        return EntryState(rip=self.eip, regs={"rax": self.eax, "rbx": self.ebx})


def _upper_memory(memory_map) -> int:
    """KiB of available memory from 1 MiB up to the first hole (Multiboot mem_upper)."""
    return next((length // 1024 for base, length, kind in memory_map
                 if base == 0x100000 and kind == E820_RAM), 0)


def load_multiboot(path: str, ram, cmdline: str = "") -> MultibootBoot:
    """Load the Multiboot kernel at ``path`` into ``ram``; LoaderError says why it cannot."""
    image = read_kernel_file(path)
    header_offset, flags = find_multiboot_header(path, image)
    if header_offset is not None and flags & HEADER_AOUT_KLUDGE:
        segments, entry = _aout_kludge_segments(path, image, header_offset)
    elif image[:4] != b"\x7fELF":
        raise LoaderError(f"'{path}' is not an ELF file")
    elif header_offset is None:
        raise LoaderError(f"'{path}' has no Multiboot header in its first {HEADER_SEARCH_LIMIT} bytes")
    else:
        segments, entry = _elf_segments(path, image)

    cmdline_bytes = cmdline.encode("utf-8", "surrogateescape")
    with memoryview(ram) as mem:
        layout = PcMemoryLayout(len(mem))
        loaded = tuple(seg for seg, _ in segments)
        check_fits(path, loaded, layout.low_top)
        info_size = len(_info_blob(0, cmdline_bytes, layout))  # the size does not depend on the place
        info_addr = _place_info(loaded, info_size, layout.low_top)
        write_segments(mem, segments)
        blob = _info_blob(info_addr, cmdline_bytes, layout)
        mem[info_addr:info_addr + len(blob)] = blob
    return MultibootBoot(eip=entry, eax=BOOTLOADER_MAGIC, ebx=info_addr, segments=loaded,
                         info_addr=info_addr, info_size=len(blob))


def find_multiboot_header(path: str, image: bytes):
    """(offset, flags) of the first valid Multiboot header, or (None, 0)."""
    bad = None
    limit = min(len(image), HEADER_SEARCH_LIMIT) - MultibootHeader.sizeof()
    for offset in range(0, limit + 1, 4):
        if image[offset:offset + 4] != b"\x02\xb0\xad\x1b":
            continue
        header = MultibootHeader.parse(image[offset:])
        if (header.magic + header.flags + header.checksum) & 0xFFFFFFFF == 0:
            unsupported = header.flags & 0xFFFF & ~HEADER_SUPPORTED_REQUIREMENTS
            if unsupported:
                raise LoaderError(f"'{path}': its Multiboot header requires features pyhv does not "
                                  f"support (flags {unsupported:#x})")
            return offset, header.flags
        if bad is None:
            bad = (offset, header)
    if bad is not None:
        offset, header = bad
        expected = -(header.magic + header.flags) & 0xFFFFFFFF
        raise LoaderError(f"'{path}': bad Multiboot header checksum at offset {offset:#x} "
                          f"({header.checksum:#010x}, expected {expected:#010x})")
    return None, 0


def _aout_kludge_segments(path: str, image: bytes, header_offset: int):
    fields_at = header_offset + MultibootHeader.sizeof()
    if len(image) < fields_at + MultibootAddressFields.sizeof():
        raise LoaderError(f"'{path}': truncated Multiboot header")
    a = MultibootAddressFields.parse(image[fields_at:])
    file_start = header_offset - (a.header_addr - a.load_addr)
    load_end = a.load_end_addr or a.load_addr + len(image) - file_start
    bss_end = a.bss_end_addr or load_end
    if not (a.load_addr <= a.header_addr and file_start >= 0 and a.load_addr <= load_end <= bss_end):
        raise LoaderError(f"'{path}': inconsistent Multiboot load addresses (header_addr "
                          f"{a.header_addr:#x}, load_addr {a.load_addr:#x}, load_end_addr "
                          f"{a.load_end_addr:#x}, bss_end_addr {a.bss_end_addr:#x})")
    data = image[file_start:file_start + load_end - a.load_addr]
    if len(data) != load_end - a.load_addr:
        raise LoaderError(f"'{path}' is truncated: the Multiboot header asks for "
                          f"{load_end - a.load_addr} bytes from file offset {file_start:#x}")
    return [(LoadedSegment(a.load_addr, len(data), bss_end - a.load_addr), data)], a.entry_addr


def _elf_segments(path: str, image: bytes):
    kernel = read_elf_kernel(path, image, "a Multiboot kernel")
    if kernel.entry >= FOUR_GIB:
        raise LoaderError(f"'{path}': entry point {kernel.entry:#x} is above 4 GiB")
    return list(kernel.segments), kernel.entry


def _info_blob(base: int, cmdline: bytes, layout: PcMemoryLayout) -> bytes:
    """The information structure placed at ``base``, then the memory map, command line and name."""
    memory_map = layout.memory_map()
    mmap_offset = MultibootInfo.sizeof() + 4       # 120: 8-byte aligned entries
    mmap = b"".join(MmapEntry.build(dict(base_addr=b, length=n, type=t)) for b, n, t in memory_map)
    cmdline_offset = mmap_offset + len(mmap)
    name_offset = cmdline_offset + len(cmdline) + 1
    info = MultibootInfo.build(dict(
        flags=INFO_MEMORY | INFO_CMDLINE | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME,
        mem_lower=min(layout.low_top, LOW_MEMORY_END) // 1024,
        mem_upper=min(_upper_memory(memory_map), 0xFFFFFFFF),
        cmdline=base + cmdline_offset,
        mmap_length=len(mmap),
        mmap_addr=base + mmap_offset,
        boot_loader_name=base + name_offset,
    ))
    return info.ljust(mmap_offset, b"\0") + mmap + cmdline + b"\0" + BOOT_LOADER_NAME + b"\0"


def _place_info(segments, size: int, ram_top: int) -> int:
    """INFO_ADDR if free, else the first page after the kernel."""
    def free(base: int) -> bool:
        return base + size <= ram_top and all(
            base + size <= s.addr or s.addr + s.memsz <= base for s in segments)

    after_kernel = (max(s.addr + s.memsz for s in segments) + 0xFFF) & ~0xFFF
    for base in (INFO_ADDR, after_kernel):
        if free(base):
            return base
    raise LoaderError(f"no room in guest RAM for the {size}-byte Multiboot information; use a larger -m")
