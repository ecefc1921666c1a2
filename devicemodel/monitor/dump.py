"""``dump-guest-memory``: the guest as an ELF core file, as QEMU's dump.c writes it, so that
gdb and crash can read it.

* ELF64/EM_X86_64 when the guest is in long mode (or RAM reaches past 4 GiB), else
  ELF32/EM_386, as QEMU chooses;
* one PT_NOTE with, per vCPU, an NT_PRSTATUS note (the Linux core layout of the
  registers, pid = vCPU index + 1) and a "QEMU" note (QEMUCPUState: segments, descriptor
  tables and control registers, which crash reads);
* one PT_LOAD per RAM block (memslot), its guest-physical address as p_paddr and as
  p_vaddr (QEMU writes p_vaddr 0 here; the identity lets gdb read a guest that runs
  with paging off or identity-mapped); with ``-p``, one PT_LOAD per run of pages the
  guest's page tables map, with their virtual addresses.
"""

from __future__ import annotations

import struct
from typing import Callable, Optional

from devicemodel.monitor.cpu_dump import descriptor_flags
from devicemodel.monitor.paging import leaves, paging_mode

EM_386, EM_X86_64 = 3, 62
PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS = 1
ELFCLASS32, ELFCLASS64 = 1, 2
EFER_LMA = 1 << 10
CHUNK = 1 << 20
PROGRESS_MIN = 16 << 20      # dumps at least this big report progress

X86_64_PRSTATUS_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                        "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "rflags",
                        "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")
I386_PRSTATUS_REGS = ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rax", "ds", "es", "fs", "gs",
                      "orig_rax", "rip", "cs", "rflags", "rsp", "ss")


def _note(name: bytes, note_type: int, desc: bytes) -> bytes:
    name += b"\0"
    pad = lambda data: data + bytes(-len(data) % 4)
    return struct.pack("<III", len(name), len(desc), note_type) + pad(name) + pad(desc)


def _register_values(vcpu) -> dict:
    regs, sregs = vcpu.get_regs(), vcpu.get_sregs()
    values = {name: getattr(regs, name) for name in
              ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
               "r12", "r13", "r14", "r15", "rip", "rflags")}
    values.update(orig_rax=(1 << 64) - 1, fs_base=sregs.fs.base, gs_base=sregs.gs.base)
    for seg in ("cs", "ds", "es", "fs", "gs", "ss"):
        values[seg] = getattr(sregs, seg).selector
    return values


def prstatus(vcpu, index: int, elf64: bool) -> bytes:
    """struct elf_prstatus of the Linux core format for one vCPU."""
    values = _register_values(vcpu)
    if elf64:
        regs = struct.pack("<27Q", *(values[n] & ((1 << 64) - 1) for n in X86_64_PRSTATUS_REGS))
        head = struct.pack("<3ih2xQQ4I", 0, 0, 0, 0, 0, 0, index + 1, 0, 0, 0) + bytes(64)
        return head + regs + struct.pack("<i4x", 0)
    regs = struct.pack("<17I", *(values[n] & 0xFFFFFFFF for n in I386_PRSTATUS_REGS))
    head = struct.pack("<3ih2xII4I", 0, 0, 0, 0, 0, 0, index + 1, 0, 0, 0) + bytes(32)
    return head + regs + struct.pack("<i", 0)


def qemu_cpu_state(vcpu) -> bytes:
    """QEMU's QEMUCPUState (version 1), the "QEMU" note crash reads."""
    values, sregs = _register_values(vcpu), vcpu.get_sregs()

    def segment(seg) -> bytes:
        return struct.pack("<IIIIQ", seg.selector, seg.limit, descriptor_flags(seg), 0, seg.base)
    body = struct.pack("<18Q", *(values[n] for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp",
                                                      "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
                                                      "r14", "r15", "rip", "rflags")))
    body += b"".join(segment(getattr(sregs, n)) for n in ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr"))
    body += b"".join(struct.pack("<IIIIQ", 0, table.limit, 0, 0, table.base) for table in (sregs.gdt, sregs.idt))
    body += struct.pack("<5QQ", sregs.cr0, 0, sregs.cr2, sregs.cr3, sregs.cr4, 0)
    return struct.pack("<II", 1, 8 + len(body)) + body


def _paged_segments(machine, vcpu, read) -> list[tuple[int, int, int]]:
    """(vaddr, paddr, size) runs of the pages the guest maps onto RAM."""
    sregs = vcpu.get_sregs()
    runs: list[list[int]] = []
    for leaf in leaves(read, sregs.cr3, paging_mode(sregs.cr0, sregs.cr4, sregs.efer)):
        if machine.vm.memslots.find(leaf.paddr) is None:
            continue
        if runs and runs[-1][0] + runs[-1][2] == leaf.vaddr and runs[-1][1] + runs[-1][2] == leaf.paddr:
            runs[-1][2] += leaf.size
        else:
            runs.append([leaf.vaddr, leaf.paddr, leaf.size])
    return [tuple(run) for run in runs]


def dump_guest_memory(machine, path: str, paging: bool, read, begin: Optional[int] = None,
                      length: Optional[int] = None,
                      progress: Callable[[str], None] = lambda text: None) -> int:
    """Write the core file; the number of bytes of guest memory in it. The vCPUs must be
    parked. ``read(gpa, size)`` reads guest RAM (for the page walk)."""
    vcpus = machine.vcpus
    slots = sorted(machine.vm.memslots, key=lambda s: s.guest_phys_addr)
    lma = bool(vcpus[0].get_sregs().efer & EFER_LMA)
    elf64 = lma or any(s.end > 1 << 32 for s in slots)
    if paging:
        segments = _paged_segments(machine, vcpus[0], read)
    else:
        segments = [(s.guest_phys_addr, s.guest_phys_addr, s.memory_size) for s in slots]
    if begin is not None:
        end = begin + length
        segments = [(v + max(begin - p, 0), max(p, begin), min(p + n, end) - max(p, begin))
                    for v, p, n in segments if p < end and begin < p + n]
    notes = b"".join(_note(b"CORE", NT_PRSTATUS, prstatus(vcpu, i, elf64)) + _note(b"QEMU", 0, qemu_cpu_state(vcpu))
                     for i, vcpu in enumerate(vcpus))
    if elf64:
        ehdr_size, phdr_size = 64, 56
    else:
        ehdr_size, phdr_size = 52, 32
    phnum = 1 + len(segments)
    offset = ehdr_size + phnum * phdr_size
    note_offset, data_offset = offset, offset + len(notes)
    ident = b"\x7fELF" + bytes((ELFCLASS64 if elf64 else ELFCLASS32, 1, 1, 0)) + bytes(8)
    if elf64:
        ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 4, EM_X86_64, 1, 0, ehdr_size, 0, 0, ehdr_size,
                                   phdr_size, phnum, 0, 0, 0)
        phdr = lambda t, off, v, p, n: struct.pack("<IIQQQQQQ", t, 0 if t == PT_NOTE else 7, off, v, p, n, n, 0)
    else:
        ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 4, EM_386, 1, 0, ehdr_size, 0, 0, ehdr_size,
                                   phdr_size, phnum, 0, 0, 0)
        phdr = lambda t, off, v, p, n: struct.pack("<IIIIIIII", t, off, v & 0xFFFFFFFF, p & 0xFFFFFFFF,
                                                   n, n, 0 if t == PT_NOTE else 7, 0)
    headers = [phdr(PT_NOTE, note_offset, 0, 0, len(notes))]
    position = data_offset
    for vaddr, paddr, size in segments:
        headers.append(phdr(PT_LOAD, position, vaddr, paddr, size))
        position += size
    total = sum(size for _, _, size in segments)
    written, next_report = 0, total // 4
    with open(path, "wb") as out:
        out.write(ehdr + b"".join(headers) + notes)
        for _, paddr, size in segments:
            for chunk_start in range(paddr, paddr + size, CHUNK):
                chunk = min(CHUNK, paddr + size - chunk_start)
                data = read(chunk_start, chunk)
                out.write(data if data is not None else bytes(chunk))
                written += chunk
                if total >= PROGRESS_MIN and written >= next_report and written < total:
                    progress(f"dump-guest-memory: {written * 100 // total}% "
                             f"({written >> 20} of {total >> 20} MiB)")
                    next_report += total // 4
    return total
