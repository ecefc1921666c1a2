"""The PVH loader, on ELF kernels built here with the Xen PVH entry note and on Debian's vmlinux."""

import mmap
import struct

import pytest

from boot_check import DEBUG_PORT, gdt_descriptors, run_until_port_write
from devicemodel.errors import LoaderError
from devicemodel.firmware_tables.e820 import pc_memory_map
from devicemodel.loaders.pvh import HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, load_pvh
from devicemodel.loaders.x86_boot import CODE32

MiB = 1 << 20
ENTRY = 0x100000
PT_LOAD, PT_NOTE = 1, 4

# 32-bit code at the entry: out 0xf4, eax with eax = hvm_start_info.magic (through EBX); hlt
ENTRY_CODE = b"\x8b\x03" + b"\xe7\xf4\xf4"


def note(name, kind, desc):
    name += b"\0"
    return (struct.pack("<III", len(name), len(desc), kind) + name.ljust(-(-len(name) // 4) * 4, b"\0")
            + desc.ljust(-(-len(desc) // 4) * 4, b"\0"))


def pvh_elf(segments=((ENTRY, ENTRY_CODE, 0x2000),), notes=None, entry_note_size=8, elf_class=64):
    """An ELF executable: ``segments`` [(paddr, data, memsz)] as PT_LOAD, then a PT_NOTE with
    ``notes`` (by default the PVH entry note for ENTRY)."""
    if notes is None:
        notes = note(b"Xen", 6, b"linux\0") + note(b"Xen", 18, ENTRY.to_bytes(entry_note_size, "little"))
    wide = elf_class == 64
    ehsize, phentsize = (64, 56) if wide else (52, 32)
    phnum = len(segments) + 1
    offset = 0x1000
    phdrs, blobs = [], []
    for paddr, data, memsz in segments:
        phdrs.append((PT_LOAD, offset, 0xFFFFFFFF80000000 + paddr if wide else paddr, paddr, len(data), memsz))
        blobs.append((offset, data))
        offset += (len(data) + 0xFFF) & ~0xFFF or 0x1000
    phdrs.append((PT_NOTE, offset, 0, 0, len(notes), len(notes)))
    blobs.append((offset, notes))
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1, 1]) + bytes(9)
    if wide:
        header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0xFFFFFFFF81000000, ehsize, 0, 0,
                                     ehsize, phentsize, phnum, 64, 0, 0)
        for p_type, off, vaddr, paddr, filesz, memsz in phdrs:
            header += struct.pack("<IIQQQQQQ", p_type, 7, off, vaddr, paddr, filesz, memsz, 0x1000)
    else:
        header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, ENTRY, ehsize, 0, 0, ehsize, phentsize, phnum,
                                     40, 0, 0)
        for p_type, off, vaddr, paddr, filesz, memsz in phdrs:
            header += struct.pack("<8I", p_type, off, vaddr, paddr, filesz, memsz, 7, 0x1000)
    image = bytearray(header)
    for off, data in blobs:
        image += bytes(off - len(image)) + data
    return bytes(image)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def ram(size=64 * MiB):
    return mmap.mmap(-1, size)


def start_info(mem, boot):
    return HvmStartInfo.parse(bytes(mem[boot.start_info_addr:boot.start_info_addr + HvmStartInfo.sizeof()]))


def load_error(tmp_path, image, mem=None, **kw):
    with pytest.raises(LoaderError) as e:
        load_pvh(write(tmp_path, "vmlinux", image), ram() if mem is None else mem, **kw)
    return str(e.value).replace(str(tmp_path / "vmlinux"), "<path>")


def test_segments_start_info_modules_and_memory_map(tmp_path):
    mem = ram()
    initrd = write(tmp_path, "initrd", b"RD" * 5000)
    boot = load_pvh(write(tmp_path, "vmlinux", pvh_elf()), mem, "console=ttyS0", initrd=initrd, rsdp_addr=0xF0000)
    assert mem[ENTRY:ENTRY + len(ENTRY_CODE)] == ENTRY_CODE
    assert mem[ENTRY + len(ENTRY_CODE):ENTRY + 0x2000] == bytes(0x2000 - len(ENTRY_CODE))     # bss
    info = start_info(mem, boot)
    assert info.magic == 0x336EC578 and info.version == 1
    assert bytes(mem[info.cmdline_paddr:info.cmdline_paddr + 14]) == b"console=ttyS0\0"
    assert info.rsdp_paddr == 0xF0000
    assert info.nr_modules == 1
    module = HvmModlistEntry.parse(bytes(mem[info.modlist_paddr:info.modlist_paddr + 32]))
    assert (module.paddr, module.size) == (boot.initrd_addr, 10000)
    assert module.paddr % 4096 == 0 and module.paddr + module.size <= 64 * MiB - 0x20000
    assert mem[module.paddr:module.paddr + 10000] == b"RD" * 5000
    memmap = [HvmMemmapTableEntry.parse(bytes(mem[info.memmap_paddr + 24 * i:info.memmap_paddr + 24 * i + 24]))
              for i in range(info.memmap_entries)]
    assert [(e.addr, e.size, e.type) for e in memmap] == pc_memory_map(64 * MiB)


def test_no_initrd_means_no_modules(tmp_path):
    mem = ram()
    boot = load_pvh(write(tmp_path, "vmlinux", pvh_elf()), mem)
    info = start_info(mem, boot)
    assert (info.nr_modules, info.modlist_paddr, info.rsdp_paddr, boot.initrd_size) == (0, 0, 0, 0)


def test_entry_state(tmp_path):
    mem = ram()
    boot = load_pvh(write(tmp_path, "vmlinux", pvh_elf(entry_note_size=4)), mem)
    e = boot.entry
    assert e.rip == ENTRY and e.regs == {"rbx": boot.start_info_addr}
    assert e.code == CODE32 and not e.long_mode and e.cr0 & 0x80000001 == 1 and e.cr4 == 0 and e.efer == 0
    _, _, code, data = gdt_descriptors(mem, e.gdt)
    assert code.flags.db and code.flags.g and code.access.type == 0xB and data.access.type == 0x3


def test_elf32_kernel(tmp_path):
    boot = load_pvh(write(tmp_path, "vmlinux", pvh_elf(elf_class=32, entry_note_size=4)), ram())
    assert boot.entry.rip == ENTRY


def test_entry_runs_on_pyhv(tmp_path):
    mem = ram(32 * MiB)
    boot = load_pvh(write(tmp_path, "vmlinux", pvh_elf()), mem)
    assert run_until_port_write(mem, boot.entry) == (DEBUG_PORT, 0x336EC578)


def test_no_pvh_note(tmp_path):
    message = load_error(tmp_path, pvh_elf(notes=note(b"GNU", 3, bytes(20))))
    assert message.startswith("'<path>' has no PVH entry note")


def test_malformed_note(tmp_path):
    assert "malformed PVH entry note" in load_error(tmp_path, pvh_elf(notes=note(b"Xen", 18, b"\1\2")))
    assert "malformed or truncated ELF note" in load_error(tmp_path, pvh_elf(notes=struct.pack("<III", 4, 100, 18) + b"Xen\0"))


def test_not_elf(tmp_path):
    assert "not a valid ELF file" in load_error(tmp_path, b"\x7fELF" + bytes([9]) + bytes(100))


def test_kernel_too_big_for_memory(tmp_path):
    image = pvh_elf(segments=((ENTRY, ENTRY_CODE, 64 * MiB),))
    assert "kernel too big for memory" in load_error(tmp_path, image, mem=ram(32 * MiB))


def test_segment_in_reserved_or_boot_memory(tmp_path):
    assert "firmware reserves" in load_error(tmp_path, pvh_elf(segments=((0xF0000, ENTRY_CODE, 0x100),)))
    assert "boot information" in load_error(tmp_path, pvh_elf(segments=((0x8000, ENTRY_CODE, 0x100),)))


def test_initrd_does_not_fit(tmp_path):
    initrd = write(tmp_path, "initrd", bytes(40 * MiB))
    image = pvh_elf(segments=((ENTRY, ENTRY_CODE, 30 * MiB),))
    assert "does not fit in guest RAM" in load_error(tmp_path, image, initrd=initrd)


@pytest.mark.slow
def test_debian_vmlinux_loads():
    import debian
    linux = debian.debian_linux()
    mem = ram(256 * MiB)
    boot = load_pvh(str(linux.vmlinux), mem, "console=ttyS0", initrd=str(linux.initrd), rsdp_addr=0xF0000)
    assert 16 * MiB <= boot.entry.rip < 32 * MiB
    assert min(s.addr for s in boot.segments) == 16 * MiB
    assert boot.initrd_addr >= max(s.end for s in boot.segments)
    assert start_info(mem, boot).nr_modules == 1
