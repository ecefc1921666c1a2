"""Linux bzImage loader: the x86 Linux boot protocol (Documentation/arch/x86/boot.rst),
for kernels with protocol version 2.12 or later (Linux 3.8 and up).

``load_bzimage(path, ram, cmdline, initrd, rsdp_addr, entry)`` checks the setup header,
copies the protected-mode kernel to 1 MiB (where a bzImage is loaded, as by QEMU), puts
the initrd as high as the kernel allows below the top of low RAM, builds the zero page
(``boot_params``: the setup header, the E820 map, the command line and initrd pointers,
the RSDP address) and returns the state to enter the kernel in:

* ``entry="64"`` (the default; needs ``XLF_KERNEL_64``): the 64-bit boot protocol,
  startup_64 at load address + 0x200 in long mode, RSI = boot_params, through a GDT with
  a flat 64-bit code segment at 0x10 and a flat data segment at 0x18 and page tables
  that identity-map the first 4 GiB (as Firecracker and cloud-hypervisor enter it);
* ``entry="32"``: the 32-bit boot protocol, ``code32_start`` in flat 32-bit protected
  mode with paging off, ESI = boot_params, EBX = EDI = EBP = 0 (as GRUB and QEMU's
  linuxboot option ROM enter it).

The kernel decompresses and relocates itself: the RAM it needs from the load address is
``init_size`` bytes from ``max(load address rounded up to kernel_alignment,
pref_address)``, which must fit below the initrd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from construct import Array, Bytes, Default, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

from devicemodel.errors import LoaderError
from devicemodel.firmware_tables.e820 import PcMemoryLayout
from devicemodel.loaders.elf import read_kernel_file
from devicemodel.loaders.initrd import place_initrd, read_initrd
from devicemodel.loaders.x86_boot import (BOOT_INFO_ADDR, CMDLINE_ADDR, CMDLINE_LIMIT, CODE32, CODE64,
                                          PAGE_SIZE, EntryState, write_long_mode_structures,
                                          write_protected_mode_gdt)

SETUP_HEADER_OFFSET = 0x1F1
BOOT_FLAG = 0xAA55
HEADER_MAGIC = b"HdrS"
MIN_VERSION = 0x020C                     # 2.12: xloadflags
DEFAULT_SETUP_SECTS = 4                  # "if this field is 0, the real value is 4"
SECTOR = 512
KERNEL_LOAD_ADDR = 0x100000              # where a bzImage's protected-mode kernel goes
STARTUP_64_OFFSET = 0x200
TYPE_OF_LOADER_UNDEFINED = 0xFF          # a boot loader with no assigned ID
VID_MODE_NORMAL = 0xFFFF
E820_MAX_ENTRIES = 128

LOADED_HIGH = 1 << 0                     # loadflags: protected-mode code at 0x100000 (bzImage)
QUIET_FLAG = 1 << 5
XLF_KERNEL_64 = 1 << 0                   # has the 64-bit entry at load address + 0x200
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1

# struct setup_header, at offset 0x1f1 of both the bzImage and boot_params.
SetupHeader = Struct(
    "setup_sects" / Int8ul,
    "root_flags" / Int16ul,
    "syssize" / Int32ul,
    "ram_size" / Int16ul,
    "vid_mode" / Int16ul,
    "root_dev" / Int16ul,
    "boot_flag" / Int16ul,
    "jump" / Int16ul,
    "header" / Bytes(4),
    "version" / Int16ul,
    "realmode_swtch" / Int32ul,
    "start_sys_seg" / Int16ul,
    "kernel_version" / Int16ul,
    "type_of_loader" / Int8ul,
    "loadflags" / Int8ul,
    "setup_move_size" / Int16ul,
    "code32_start" / Int32ul,
    "ramdisk_image" / Int32ul,
    "ramdisk_size" / Int32ul,
    "bootsect_kludge" / Int32ul,
    "heap_end_ptr" / Int16ul,
    "ext_loader_ver" / Int8ul,
    "ext_loader_type" / Int8ul,
    "cmd_line_ptr" / Int32ul,
    "initrd_addr_max" / Int32ul,
    "kernel_alignment" / Int32ul,
    "relocatable_kernel" / Int8ul,
    "min_alignment" / Int8ul,
    "xloadflags" / Int16ul,
    "cmdline_size" / Int32ul,
    "hardware_subarch" / Int32ul,
    "hardware_subarch_data" / Int64ul,
    "payload_offset" / Int32ul,
    "payload_length" / Int32ul,
    "setup_data" / Int64ul,
    "pref_address" / Int64ul,
    "init_size" / Int32ul,
    "handover_offset" / Int32ul,
    "kernel_info_offset" / Int32ul,
)
SETUP_HEADER_END = SETUP_HEADER_OFFSET + SetupHeader.sizeof()     # 0x26c

# struct boot_e820_entry
BootE820Entry = Struct("addr" / Int64ul, "size" / Int64ul, "type" / Int32ul)

# struct boot_params (arch/x86/include/uapi/asm/bootparam.h): the "zero page".
BootParams = Struct(
    Padding(0x70),                                    # screen_info, apm_bios_info, tboot_addr, ist_info
    "acpi_rsdp_addr" / Default(Int64ul, 0),           # 0x070
    Padding(0x48),                                    # 0x078: hd0/hd1_info, sys_desc_table, olpc_ofw_header
    "ext_ramdisk_image" / Default(Int32ul, 0),        # 0x0c0
    "ext_ramdisk_size" / Default(Int32ul, 0),         # 0x0c4
    "ext_cmd_line_ptr" / Default(Int32ul, 0),         # 0x0c8
    Padding(0x1E8 - 0xCC),                            # 0x0cc: ... edid_info, efi_info, alt_mem_k, scratch
    "e820_entries" / Default(Int8ul, 0),              # 0x1e8
    Padding(SETUP_HEADER_OFFSET - 0x1E9),             # 0x1e9: eddbuf_entries ... sentinel (0)
    "hdr" / SetupHeader,                              # 0x1f1
    Padding(0x2D0 - SETUP_HEADER_END),                # 0x26c: ..., edd_mbr_sig_buffer
    "e820_table" / Array(E820_MAX_ENTRIES, BootE820Entry),   # 0x2d0
    Padding(0x1000 - 0x2D0 - E820_MAX_ENTRIES * BootE820Entry.sizeof()),   # eddbuf, padding
)
assert BootParams.sizeof() == PAGE_SIZE


@dataclass(frozen=True)
class LinuxBoot:
    """What the loader placed in RAM and the state to enter the kernel in."""

    entry: EntryState
    boot_params_addr: int
    kernel_addr: int
    kernel_size: int
    cmdline_addr: int
    initrd_addr: int
    initrd_size: int
    protocol_version: int


@dataclass(frozen=True)
class BzImage:
    """A checked bzImage: its setup header and protected-mode kernel."""

    header: object            # the parsed SetupHeader (fields past the header's end are 0)
    kernel: bytes             # the protected-mode part, loaded at KERNEL_LOAD_ADDR

    @property
    def version(self) -> int:
        return self.header.version


def parse_bzimage(path: str, image: bytes) -> BzImage:
    """Check the setup header of the bzImage ``image``; LoaderError says what is wrong."""
    if len(image) < SETUP_HEADER_END:
        raise LoaderError(f"'{path}' is not a Linux kernel image (too short for a setup header)")
    # The header ends where its leading jump goes; fields past that are code, read as 0.
    header_end = min(0x202 + image[0x201], SETUP_HEADER_END)
    header_bytes = image[SETUP_HEADER_OFFSET:header_end]
    header = SetupHeader.parse(header_bytes.ljust(SetupHeader.sizeof(), b"\0"))
    if header.boot_flag != BOOT_FLAG or header.header != HEADER_MAGIC:
        raise LoaderError(f"'{path}' is not a Linux kernel image (no boot flag 0xaa55 and 'HdrS' "
                          f"at offset {SETUP_HEADER_OFFSET:#x})")
    if header.version < MIN_VERSION:
        raise LoaderError(f"'{path}': Linux boot protocol {header.version >> 8}.{header.version & 0xFF:02} "
                          f"is too old; pyhv needs 2.12 or later (Linux 3.8 and up)")
    if not header.loadflags & LOADED_HIGH:
        raise LoaderError(f"'{path}' is a zImage (loaded low); pyhv loads only bzImages")
    alignment = header.kernel_alignment
    if alignment == 0 or alignment & (alignment - 1):
        raise LoaderError(f"'{path}': kernel_alignment {alignment:#x} is not a power of two")
    setup_size = ((header.setup_sects or DEFAULT_SETUP_SECTS) + 1) * SECTOR
    if len(image) <= setup_size:
        raise LoaderError(f"'{path}' is truncated: no protected-mode kernel after the "
                          f"{setup_size}-byte setup code")
    return BzImage(header=header, kernel=image[setup_size:])


def load_bzimage(path: str, ram, cmdline: str = "", initrd: Optional[str] = None,
                 rsdp_addr: Optional[int] = None, entry: str = "64") -> LinuxBoot:
    """Load the bzImage at ``path`` (and the initrd file ``initrd``) into ``ram``."""
    if entry not in ("32", "64"):
        raise ValueError(f"entry must be '32' or '64', not {entry!r}")
    bz = parse_bzimage(path, read_kernel_file(path))
    h = bz.header
    if entry == "64" and not h.xloadflags & XLF_KERNEL_64:
        raise LoaderError(f"'{path}' has no 64-bit entry point (xloadflags {h.xloadflags:#x}); "
                          f"use the 32-bit entry")
    cmdline_bytes = cmdline.encode("utf-8", "surrogateescape")
    if len(cmdline_bytes) > h.cmdline_size:
        raise LoaderError(f"kernel command line too long: {len(cmdline_bytes)} bytes, "
                          f"'{path}' accepts {h.cmdline_size}")
    if CMDLINE_ADDR + len(cmdline_bytes) + 1 > CMDLINE_LIMIT:
        raise LoaderError(f"kernel command line too long: {len(cmdline_bytes)} bytes, pyhv passes at most "
                          f"{CMDLINE_LIMIT - CMDLINE_ADDR - 1}")
    initrd_data = read_initrd(initrd)

    with memoryview(ram) as mem:
        layout = PcMemoryLayout(len(mem))
        ram_top = layout.usable_low_top
        runtime_start = max(_align_up(KERNEL_LOAD_ADDR, h.kernel_alignment), h.pref_address)
        runtime_end = max(runtime_start + h.init_size, KERNEL_LOAD_ADDR + len(bz.kernel))
        if runtime_end > ram_top:
            raise LoaderError(f"'{path}': kernel too big for memory: it needs RAM up to {runtime_end:#x} "
                              f"(init_size {h.init_size:#x} from {runtime_start:#x}), guest RAM for it "
                              f"ends at {ram_top:#x}; use a larger -m")
        initrd_addr = place_initrd(initrd, len(initrd_data), min(h.initrd_addr_max + 1, ram_top), runtime_end)

        mem[KERNEL_LOAD_ADDR:KERNEL_LOAD_ADDR + len(bz.kernel)] = bz.kernel
        if initrd_data:
            mem[initrd_addr:initrd_addr + len(initrd_data)] = initrd_data
        mem[CMDLINE_ADDR:CMDLINE_ADDR + len(cmdline_bytes) + 1] = cmdline_bytes + b"\0"
        params = _boot_params(bz, layout, initrd_addr, len(initrd_data), rsdp_addr)
        mem[BOOT_INFO_ADDR:BOOT_INFO_ADDR + len(params)] = params
        if entry == "64":
            gdt, cr3 = write_long_mode_structures(mem)
            state = EntryState(rip=KERNEL_LOAD_ADDR + STARTUP_64_OFFSET, regs={"rsi": BOOT_INFO_ADDR},
                               code=CODE64, gdt=gdt, cr3=cr3)
        else:
            gdt = write_protected_mode_gdt(mem)
            state = EntryState(rip=h.code32_start, regs={"rsi": BOOT_INFO_ADDR}, code=CODE32, gdt=gdt)
    return LinuxBoot(entry=state, boot_params_addr=BOOT_INFO_ADDR, kernel_addr=KERNEL_LOAD_ADDR,
                     kernel_size=len(bz.kernel), cmdline_addr=CMDLINE_ADDR, initrd_addr=initrd_addr,
                     initrd_size=len(initrd_data), protocol_version=h.version)


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def _boot_params(bz: BzImage, layout: PcMemoryLayout, initrd_addr: int, initrd_size: int,
                 rsdp_addr: Optional[int]) -> bytes:
    """The zero page: the kernel's setup header with the loader's fields filled in."""
    regions = layout.memory_map()
    hdr = SetupHeader.parse(SetupHeader.build(bz.header))     # a copy to fill in
    hdr.vid_mode = VID_MODE_NORMAL
    hdr.type_of_loader = TYPE_OF_LOADER_UNDEFINED
    hdr.loadflags &= ~QUIET_FLAG
    hdr.cmd_line_ptr = CMDLINE_ADDR
    hdr.ramdisk_image = initrd_addr
    hdr.ramdisk_size = initrd_size
    hdr.setup_data = 0
    hdr.hardware_subarch = 0                  # a PC
    entries = [dict(addr=r.base, size=r.length, type=r.type) for r in regions]
    entries += [dict(addr=0, size=0, type=0)] * (E820_MAX_ENTRIES - len(entries))
    return BootParams.build(dict(
        acpi_rsdp_addr=rsdp_addr or 0,
        ext_ramdisk_image=initrd_addr >> 32, ext_ramdisk_size=initrd_size >> 32,
        ext_cmd_line_ptr=CMDLINE_ADDR >> 32,
        e820_entries=len(regions), hdr=hdr, e820_table=entries))

