"""Reading a kernel file and copying ELF program segments into guest RAM, for the
loaders that take ELF kernels (Multiboot, PVH)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from construct import Int32ul, Struct
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from devicemodel.errors import LoaderError

FOUR_GIB = 1 << 32

# An entry of a PT_NOTE segment; name and descriptor follow, each padded to 4 bytes.
NoteHeader = Struct(
    "namesz" / Int32ul,
    "descsz" / Int32ul,
    "type" / Int32ul,
)


@dataclass(frozen=True)
class LoadedSegment:
    """``memsz`` bytes at guest-physical ``addr``: ``filesz`` from the file, the rest zeroed."""

    addr: int
    filesz: int
    memsz: int

    @property
    def end(self) -> int:
        return self.addr + self.memsz


@dataclass(frozen=True)
class ElfKernel:
    """The loadable part of an ELF executable: PT_LOAD segments by physical address with
    their file data, the entry point, and the contents of the PT_NOTE segments."""

    segments: tuple[tuple[LoadedSegment, bytes], ...]
    entry: int
    note_segments: tuple[bytes, ...]

    @property
    def loaded(self) -> tuple[LoadedSegment, ...]:
        return tuple(seg for seg, _ in self.segments)


def read_kernel_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LoaderError(f"could not open kernel file '{path}': {e.strerror}") from None


def read_elf_kernel(path: str, image: bytes, protocol: str) -> ElfKernel:
    """The x86 ELF executable ``image``, whose segments ``protocol`` (for messages: "a
    Multiboot kernel") must load below 4 GiB."""
    try:
        elf = ELFFile(io.BytesIO(image))
        header = elf.header
        segments = list(elf.iter_segments())
    except (ELFError, OverflowError, ValueError) as e:  # pyelftools raises all of these on garbage
        raise LoaderError(f"'{path}' is not a valid ELF file: {e}") from None
    if header["e_machine"] not in ("EM_386", "EM_X86_64"):
        raise LoaderError(f"'{path}' is not an x86 ELF file (machine {header['e_machine']})")
    if header["e_type"] != "ET_EXEC":
        raise LoaderError(f"'{path}' is not an ELF executable (type {header['e_type']})")
    loads, notes = [], []
    for index, seg in enumerate(segments):
        if seg["p_type"] == "PT_NOTE":
            notes.append(image[seg["p_offset"]:seg["p_offset"] + seg["p_filesz"]])
        if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
            continue
        addr, offset, filesz, memsz = seg["p_paddr"], seg["p_offset"], seg["p_filesz"], seg["p_memsz"]
        if filesz > memsz:
            raise LoaderError(f"'{path}': segment {index} has p_filesz {filesz:#x} > p_memsz {memsz:#x}")
        if addr + memsz > FOUR_GIB:
            raise LoaderError(f"'{path}': segment {index} [{addr:#x}..{addr + memsz - 1:#x}] is above "
                              f"4 GiB; {protocol} must load below 4 GiB")
        data = image[offset:offset + filesz]
        if len(data) != filesz:
            raise LoaderError(f"'{path}' is truncated: segment {index} needs file bytes "
                              f"[{offset:#x}..{offset + filesz - 1:#x}]")
        loads.append((LoadedSegment(addr, filesz, memsz), data))
    if not loads:
        raise LoaderError(f"'{path}' has no loadable segments")
    return ElfKernel(tuple(loads), header["e_entry"], tuple(notes))


def elf_notes(path: str, kernel: ElfKernel):
    """The (name, type, descriptor) of each note in the kernel's PT_NOTE segments."""
    for data in kernel.note_segments:
        pos = 0
        while pos + NoteHeader.sizeof() <= len(data):
            note = NoteHeader.parse(data[pos:])
            name_at = pos + NoteHeader.sizeof()
            desc_at = name_at + _align4(note.namesz)
            end = desc_at + _align4(note.descsz)
            if end > len(data):
                raise LoaderError(f"'{path}': malformed or truncated ELF note")
            yield data[name_at:name_at + note.namesz].rstrip(b"\0"), note.type, data[desc_at:desc_at + note.descsz]
            pos = end


def _align4(n: int) -> int:
    return (n + 3) & ~3


def check_fits(path: str, segments, ram_top: int) -> None:
    """Every segment must lie in guest RAM below ``ram_top``."""
    for seg in segments:
        if seg.addr >= ram_top:
            raise LoaderError(f"'{path}': segment [{seg.addr:#x}..{seg.end - 1:#x}] is outside guest RAM "
                              f"(0x0..{ram_top - 1:#x}); give the VM more memory with -m")
        if seg.end > ram_top:
            raise LoaderError(f"'{path}': kernel too big for memory: its segment [{seg.addr:#x}..{seg.end - 1:#x}] "
                              f"ends beyond guest RAM (0x0..{ram_top - 1:#x}); use a larger -m")


_ZEROS = memoryview(bytes(1 << 20))


def zero(mem: memoryview, start: int, end: int) -> None:
    """Zero ``mem[start:end]`` a chunk at a time (a bss can be large)."""
    for addr in range(start, end, len(_ZEROS)):
        n = min(len(_ZEROS), end - addr)
        mem[addr:addr + n] = _ZEROS[:n]


def write_segments(mem: memoryview, segments) -> None:
    """Copy each (segment, data) into ``mem`` and zero the rest of the segment."""
    for seg, data in segments:
        mem[seg.addr:seg.addr + seg.filesz] = data
        zero(mem, seg.addr + seg.filesz, seg.end)
