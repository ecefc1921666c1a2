"""The Multiboot v1 loader, on small ELF files built here byte by byte.

``elf32``, ``elf64`` and ``multiboot_header`` are also used by test_cli.py and
test_vcpu_loop.py to make kernels.
"""

import struct

import pytest

from devicemodel.loaders.multiboot import (BOOTLOADER_MAGIC, INFO_ADDR, LoaderError, MmapEntry,
                                           MultibootInfo, load_multiboot)

MiB = 1 << 20
EM_386, EM_X86_64, EM_ARM = 3, 62, 40
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_NOTE = 1, 4
MB_MAGIC = 0x1BADB002
DATA_OFFSET = 0x1000


def multiboot_header(flags=0x3, checksum=None, aout=None):
    """The Multiboot header; ``aout`` = (header_addr, load_addr, load_end, bss_end, entry)."""
    if aout is not None:
        flags |= 1 << 16
    if checksum is None:
        checksum = -(MB_MAGIC + flags) & 0xFFFFFFFF
    header = struct.pack("<III", MB_MAGIC, flags, checksum)
    if aout is not None:
        header += struct.pack("<5I", *aout)
    return header


def _layout(segments):
    """File offsets for the segments' data, each page-aligned from DATA_OFFSET."""
    offsets, offset = [], DATA_OFFSET
    for _, data, _ in segments:
        offsets.append(offset)
        offset += (len(data) + 0xFFF) & ~0xFFF or 0x1000
    return offsets


def _image(headers, segments, offsets):
    image = bytearray(headers)
    for (_, data, _), offset in zip(segments, offsets):
        image += bytes(offset - len(image)) + data
    return bytes(image)


def elf32(segments, entry, machine=EM_386, e_type=ET_EXEC, extra_phdrs=()):
    """An ELF32 executable; ``segments`` = [(paddr, file data, memsz)] as PT_LOAD headers."""
    offsets = _layout(segments)
    phdrs = [(PT_LOAD, offset, paddr, paddr, len(data), memsz)
             for (paddr, data, memsz), offset in zip(segments, offsets)] + list(extra_phdrs)
    ident = b"\x7fELF" + bytes([1, 1, 1, 0, 0]) + bytes(7)
    header = ident + struct.pack("<HHIIIIIHHHHHH", e_type, machine, 1, entry, 52, 0, 0,
                                 52, 32, len(phdrs), 40, 0, 0)
    for p_type, offset, vaddr, paddr, filesz, memsz in phdrs:
        header += struct.pack("<8I", p_type, offset, vaddr, paddr, filesz, memsz, 7, 0x1000)
    return _image(header, segments, offsets)


def elf64(segments, entry, machine=EM_X86_64):
    offsets = _layout(segments)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)
    header = ident + struct.pack("<HHIQQQIHHHHHH", ET_EXEC, machine, 1, entry, 64, 0, 0,
                                 64, 56, len(segments), 64, 0, 0)
    for (paddr, data, memsz), offset in zip(segments, offsets):
        header += struct.pack("<IIQQQQQQ", PT_LOAD, 7, offset, paddr, paddr, len(data), memsz, 0x1000)
    return _image(header, segments, offsets)


def simple_kernel(code=b"\xfa\xf4", bss=0x100, flags=0x3):
    """A Multiboot ELF32 kernel at 1 MiB: header + ``code`` then ``bss`` zero bytes."""
    text = multiboot_header(flags) + code
    return elf32([(0x100000, text, len(text) + bss)], entry=0x10000C)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def ram(size=16 * MiB, fill=0xCC):
    return bytearray([fill]) * size


def cstring(mem, addr):
    return bytes(mem[addr:mem.index(0, addr)]).decode()


# --- loading ------------------------------------------------------------------

def test_loads_segments_zeroes_bss_and_returns_the_entry_state(tmp_path):
    text = multiboot_header() + b"\x90" * 20
    data = b"DATA" * 4
    kernel = elf32([(0x100000, text, len(text)), (0x102000, data, 0x1000)], entry=0x10000C)
    mem = ram()
    boot = load_multiboot(write(tmp_path, "k.elf", kernel), mem, "k.elf console=ttyS0")
    assert boot.eip == 0x10000C
    assert boot.eax == BOOTLOADER_MAGIC == 0x2BADB002
    assert boot.ebx == boot.info_addr == INFO_ADDR
    assert mem[0x100000:0x100000 + len(text)] == text
    assert mem[0x102000:0x102010] == data
    assert mem[0x102010:0x103000] == bytes(0x1000 - 0x10)       # bss zeroed
    assert mem[0x103000] == 0xCC                               # nothing beyond the segment
    assert [(s.addr, s.filesz, s.memsz) for s in boot.segments] == [
        (0x100000, len(text), len(text)), (0x102000, 16, 0x1000)]


def test_multiboot_info_structure(tmp_path):
    mem = ram(64 * MiB)
    boot = load_multiboot(write(tmp_path, "k.elf", simple_kernel()), mem, "/boot/k.elf quiet")
    info = MultibootInfo.parse(bytes(mem[boot.ebx:boot.ebx + MultibootInfo.sizeof()]))
    assert info.flags == (1 << 0) | (1 << 2) | (1 << 6) | (1 << 9)
    assert info.mem_lower == 639
    assert info.mem_upper == (64 * MiB - MiB - 128 * 1024) // 1024   # top 128 KiB reserved, as QEMU
    assert cstring(mem, info.cmdline) == "/boot/k.elf quiet"
    assert cstring(mem, info.boot_loader_name) == "pyhv"
    assert info.mmap_addr % 8 == 0
    entries, addr = [], info.mmap_addr
    while addr < info.mmap_addr + info.mmap_length:
        entry = MmapEntry.parse(bytes(mem[addr:addr + 24]))
        entries.append((entry.base_addr, entry.length, entry.type))
        addr += entry.size + 4
    assert entries == [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
                       (0x100000, 63 * MiB - 0x20000, 1), (64 * MiB - 0x20000, 0x20000, 2),
                       (0xFFFC0000, 0x40000, 2)]
    # Everything the loader wrote lies inside the area it reports.
    for pointer in (info.cmdline, info.boot_loader_name, info.mmap_addr):
        assert boot.info_addr <= pointer < boot.info_addr + boot.info_size


def test_empty_command_line(tmp_path):
    mem = ram()
    boot = load_multiboot(write(tmp_path, "k.elf", simple_kernel()), mem)
    info = MultibootInfo.parse(bytes(mem[boot.ebx:boot.ebx + 116]))
    assert cstring(mem, info.cmdline) == ""


def test_info_moves_after_the_kernel_when_the_kernel_uses_low_memory(tmp_path):
    text = multiboot_header() + b"\xf4"
    kernel = elf32([(0x8000, text, 0x3000)], entry=0x800C)
    mem = ram()
    boot = load_multiboot(write(tmp_path, "low.elf", kernel), mem)
    assert boot.ebx == 0xB000
    assert mem[0x8000:0x8000 + len(text)] == text
    assert mem[0x8000 + len(text):0xB000] == bytes(0x3000 - len(text))


def test_header_found_anywhere_4_byte_aligned_in_the_first_8k(tmp_path):
    text = bytes(0x700) + multiboot_header() + b"\xf4"
    kernel = elf32([(0x100000, text, len(text))], entry=0x100000)
    assert len(kernel) < 8192
    boot = load_multiboot(write(tmp_path, "k.elf", kernel), ram())
    assert boot.eip == 0x100000


def test_elf64_below_4g_is_accepted(tmp_path):
    text = multiboot_header() + b"\xf4"
    mem = ram()
    boot = load_multiboot(write(tmp_path, "k64.elf", elf64([(0x200000, text, 0x2000)], 0x20000C)), mem)
    assert boot.eip == 0x20000C
    assert mem[0x200000:0x200000 + len(text)] == text


def test_non_load_segments_are_ignored(tmp_path):
    text = multiboot_header() + b"\xf4"
    kernel = elf32([(0x100000, text, len(text))], entry=0x10000C,
                   extra_phdrs=[(PT_NOTE, 0, 0, 0x9000000, 4, 4)])
    load_multiboot(write(tmp_path, "k.elf", kernel), ram())


def test_aout_kludge_loads_a_flat_binary(tmp_path):
    # A flat image: the header at file offset 0x10 describes where it all goes.
    load, header_at = 0x100000, 0x100010
    body = bytearray(0x40)
    header = multiboot_header(0x2, aout=(header_at, load, load + 0x40, load + 0x1000, load + 0x30))
    body[0x10:0x10 + len(header)] = header
    body[0x30] = 0xF4
    mem = ram()
    boot = load_multiboot(write(tmp_path, "flat.bin", bytes(body)), mem)
    assert boot.eip == load + 0x30
    assert mem[load:load + 0x40] == body
    assert mem[load + 0x40:load + 0x1000] == bytes(0x1000 - 0x40)


# --- errors: one line, saying what is wrong -------------------------------------

def load_error(tmp_path, data, mem=None, name="k.elf"):
    """The LoaderError's message, with the file's path replaced by <path>."""
    path = write(tmp_path, name, data)
    with pytest.raises(LoaderError) as info:
        load_multiboot(path, ram() if mem is None else mem)
    message = str(info.value)
    assert "\n" not in message
    assert path in message
    return message.replace(path, "<path>")


def test_missing_file(tmp_path):
    with pytest.raises(LoaderError, match="could not open kernel file '.*nope.elf': No such file"):
        load_multiboot(str(tmp_path / "nope.elf"), ram())


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(LoaderError, match="could not open kernel file"):
        load_multiboot(str(tmp_path), ram())


def test_not_an_elf_file(tmp_path):
    assert "is not an ELF file" in load_error(tmp_path, b"#!/bin/sh\necho hello\n" * 10)
    assert "is not an ELF file" in load_error(tmp_path, b"")


def test_elf_without_multiboot_header(tmp_path):
    kernel = elf32([(0x100000, b"\x90" * 64, 64)], entry=0x100000)
    assert "no Multiboot header in its first 8192 bytes" in load_error(tmp_path, kernel)


def test_header_beyond_8k_is_not_found(tmp_path):
    text = bytes(0x2000) + multiboot_header()
    kernel = elf32([(0x100000, text, len(text))], entry=0x100000)
    assert "no Multiboot header" in load_error(tmp_path, kernel)


def test_bad_checksum(tmp_path):
    text = multiboot_header(checksum=0x12345678) + b"\xf4"
    kernel = elf32([(0x100000, text, len(text))], entry=0x10000C)
    message = load_error(tmp_path, kernel)
    assert "bad Multiboot header checksum" in message and "0x12345678" in message


def test_unsupported_required_flags(tmp_path):
    text = multiboot_header(flags=0x3 | 0x8) + b"\xf4"
    kernel = elf32([(0x100000, text, len(text))], entry=0x10000C)
    assert "flags 0x8" in load_error(tmp_path, kernel)


def test_segment_outside_ram(tmp_path):
    text = multiboot_header() + b"\xf4"
    kernel = elf32([(0x40000000, text, len(text))], entry=0x4000000C)
    message = load_error(tmp_path, kernel)
    assert "outside guest RAM" in message and "0x40000000" in message


def test_kernel_too_big_for_memory(tmp_path):
    text = multiboot_header() + b"\xf4"
    kernel = elf32([(0x100000, text, 32 * MiB)], entry=0x10000C)
    assert "kernel too big for memory" in load_error(tmp_path, kernel, ram(16 * MiB))


def test_failed_load_leaves_ram_untouched(tmp_path):
    text = multiboot_header() + b"\xf4"
    kernel = elf32([(0x100000, text, len(text)), (0x2000000, b"x", 1)], entry=0x10000C)
    mem = ram(16 * MiB)
    load_error(tmp_path, kernel, mem)
    assert mem == ram(16 * MiB)


def test_elf64_above_4g(tmp_path):
    text = multiboot_header() + b"\xf4"
    assert "above 4 GiB" in load_error(tmp_path, elf64([(0x100000000, text, len(text))], 0x10000000C))


def test_wrong_machine_and_type(tmp_path):
    text = multiboot_header() + b"\xf4"
    assert "not an x86 ELF" in load_error(tmp_path, elf32([(0x100000, text, 16)], 0x100000, machine=EM_ARM))
    assert "not an ELF executable" in load_error(tmp_path, elf32([(0x100000, text, 16)], 0x100000, e_type=ET_DYN))


def test_truncated_elf(tmp_path):
    kernel = simple_kernel()  # 12-byte header + 2 bytes of code at DATA_OFFSET
    message = load_error(tmp_path, kernel[:DATA_OFFSET + 13])
    assert message == "'<path>' is truncated: segment 0 needs file bytes [0x1000..0x100d]"


def test_garbage_after_elf_magic(tmp_path):
    # ELF magic, a Multiboot header, but nonsense everywhere else.
    image = b"\x7fELF" + bytes([9, 9, 9]) + bytes(0x101) + multiboot_header()  # header at 0x108
    assert load_error(tmp_path, image) == "'<path>' is not a valid ELF file: Invalid EI_CLASS b'\\t'"


def test_no_loadable_segments(tmp_path):
    header = multiboot_header()
    kernel = elf32([], entry=0x100000, extra_phdrs=[(PT_NOTE, 0, 0, 0, 0, 0)]) + header
    assert "no loadable segments" in load_error(tmp_path, kernel)
