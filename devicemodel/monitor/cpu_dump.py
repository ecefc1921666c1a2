"""``info registers``: a vCPU's state in the layout of QEMU's x86_cpu_dump_state() with
the FPU part (target/i386/cpu-dump.c), read through the KVM API."""

from __future__ import annotations

from kvm import vmx

CR0_PE = 1
EFER_LMA = 1 << 10
RFLAGS_BITS = ((1 << 10, "D"), (1 << 11, "O"), (1 << 7, "S"), (1 << 6, "Z"), (1 << 4, "A"),
               (1 << 2, "P"), (1 << 0, "C"))
SYS_TYPES = (
    ("Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate", "IntGate16",
     "TrapGate16", "Reserved", "TSS32-avl", "Reserved", "TSS32-busy", "CallGate32", "Reserved",
     "IntGate32", "TrapGate32"),
    ("<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved", "Reserved", "Reserved",
     "Reserved", "TSS64-avl", "Reserved", "TSS64-busy", "CallGate64", "Reserved", "IntGate64",
     "TrapGate64"),
)


def descriptor_flags(seg) -> int:
    """QEMU's SegmentCache.flags (the descriptor's second dword, bits 8-23) from a
    kvm_segment; an unusable segment is not present, as QEMU's KVM code has it."""
    raw_limit = seg.limit >> 12 if seg.g else seg.limit
    return ((seg.type << 8) | (seg.s << 12) | (seg.dpl << 13)
            | ((1 if seg.present and not seg.unusable else 0) << 15)
            | (((raw_limit >> 16) & 0xF) << 16) | (seg.avl << 20) | (seg.l << 21)
            | (seg.db << 22) | (seg.g << 23))


def _segment_line(name: str, seg, cs64: bool, pe: bool, lma: bool) -> str:
    flags = descriptor_flags(seg)
    base = f"{seg.base:016x}" if cs64 else f"{seg.base & 0xFFFFFFFF:08x}"
    line = f"{name:<3}={seg.selector:04x} {base} {seg.limit:08x} {flags & 0x00FFFF00:08x}"
    if not pe or not flags & (1 << 15):
        return line
    line += f" DPL={seg.dpl} "
    if seg.s:
        if seg.type & 8:
            line += "CS64" if seg.l else ("CS32" if seg.db else "CS16")
            line += f" [{'C' if seg.type & 4 else '-'}{'R' if seg.type & 2 else '-'}"
        else:
            line += "DS  " if seg.db or lma else "DS16"
            line += f" [{'E' if seg.type & 4 else '-'}{'W' if seg.type & 2 else '-'}"
        line += f"{'A' if seg.type & 1 else '-'}]"
    else:
        line += SYS_TYPES[1 if lma else 0][seg.type & 15]
    return line


def _fpu_lines(fpu, sse_regs: int) -> list[str]:
    top = (fpu.fsw >> 11) & 7
    lines = [f"FCW={fpu.fcw:04x} FSW={fpu.fsw:04x} [ST={top}] FTW={fpu.ftwx:02x} MXCSR={fpu.mxcsr:08x}"]
    pair = []
    for physical in range(8):
        raw = fpu.fpr[(physical - top) & 7]     # FXSAVE stores ST(i); QEMU lists registers
        pair.append(f"FPR{physical}={int.from_bytes(raw[:8], 'little'):016x} "
                    f"{int.from_bytes(raw[8:10], 'little'):04x}")
        if len(pair) == 2:
            lines.append(" ".join(pair))
            pair = []
    for i in range(0, sse_regs, 2):
        lines.append(" ".join(
            f"XMM{n:02d}={int.from_bytes(fpu.xmm[n][8:16], 'little'):016x} "
            f"{int.from_bytes(fpu.xmm[n][:8], 'little'):016x}" for n in (i, i + 1)))
    return lines


def dump_registers(vcpu, a20: int = 1, fpu: bool = True) -> str:
    """QEMU's dump; without ``fpu`` the x87/SSE lines are left out, as in its -d int log."""
    regs, sregs = vcpu.get_regs(), vcpu.get_sregs()
    lma = bool(sregs.efer & EFER_LMA)
    cs64 = lma and bool(sregs.cs.l)
    pe = bool(sregs.cr0 & CR0_PE)
    flags = regs.rflags
    flag_text = "".join(ch if flags & bit else "-" for bit, ch in RFLAGS_BITS)
    cpl = sregs.ss.dpl if pe else 0
    ii = 1 if vcpu.vmread(vmx.GUEST_INTERRUPTIBILITY_INFO) & 3 else 0
    hlt = 1 if vcpu.vmread(vmx.GUEST_ACTIVITY_STATE) == 1 else 0
    status = f"CPL={cpl} II={ii} A20={a20} SMM=0 HLT={hlt}"
    lines = []
    if cs64:
        names = ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP",
                 "R8 ", "R9 ", "R10", "R11", "R12", "R13", "R14", "R15")
        values = [getattr(regs, n.strip().lower()) for n in names]
        for row in range(4):
            lines.append(" ".join(f"{names[i]}={values[i]:016x}" for i in range(row * 4, row * 4 + 4)))
        lines.append(f"RIP={regs.rip:016x} RFL={flags:08x} [{flag_text}] {status}")
    else:
        names = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP")
        values = [getattr(regs, "r" + n[1:].lower()) & 0xFFFFFFFF for n in names]
        lines.append(" ".join(f"{names[i]}={values[i]:08x}" for i in range(4)))
        lines.append(" ".join(f"{names[i]}={values[i]:08x}" for i in range(4, 8)))
        lines.append(f"EIP={regs.rip & 0xFFFFFFFF:08x} EFL={flags:08x} [{flag_text}] {status}")
    for name in ("es", "cs", "ss", "ds", "fs", "gs"):
        lines.append(_segment_line(name.upper(), getattr(sregs, name), cs64, pe, lma))
    lines.append(_segment_line("LDT", sregs.ldt, cs64, pe, lma))
    lines.append(_segment_line("TR", sregs.tr, cs64, pe, lma))
    debug = vcpu.get_debugregs()
    drs = " ".join(f"DR{i}={value:016x}" for i, value in enumerate(debug.db)) + " "
    if lma:
        lines.append(f"GDT=     {sregs.gdt.base:016x} {sregs.gdt.limit:08x}")
        lines.append(f"IDT=     {sregs.idt.base:016x} {sregs.idt.limit:08x}")
        lines.append(f"CR0={sregs.cr0 & 0xFFFFFFFF:08x} CR2={sregs.cr2:016x} CR3={sregs.cr3:016x} "
                     f"CR4={sregs.cr4 & 0xFFFFFFFF:08x}")
    else:
        lines.append(f"GDT=     {sregs.gdt.base & 0xFFFFFFFF:08x} {sregs.gdt.limit:08x}")
        lines.append(f"IDT=     {sregs.idt.base & 0xFFFFFFFF:08x} {sregs.idt.limit:08x}")
        lines.append(f"CR0={sregs.cr0 & 0xFFFFFFFF:08x} CR2={sregs.cr2 & 0xFFFFFFFF:08x} "
                     f"CR3={sregs.cr3 & 0xFFFFFFFF:08x} CR4={sregs.cr4 & 0xFFFFFFFF:08x}")
    lines.append(drs)
    lines.append(f"DR6={debug.dr6:016x} DR7={debug.dr7:016x}")
    lines.append(f"EFER={sregs.efer:016x}")
    if fpu:
        lines += _fpu_lines(vcpu.get_fpu(), 16 if cs64 else 8)
    return "\n".join(lines)


REGISTER_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10",
                  "r11", "r12", "r13", "r14", "r15", "rip", "rflags")


def register_value(vcpu, name: str) -> int:
    """``$name`` in monitor expressions: QEMU's names (pc, eax, rax, eflags, cr0, ...)."""
    name = name.lower()
    regs = vcpu.get_regs()
    if name == "pc":
        sregs = vcpu.get_sregs()
        return (sregs.cs.base + regs.rip) & ((1 << 64) - 1)
    if name in ("eflags", "rflags", "efl"):
        return regs.rflags
    if name in REGISTER_NAMES:
        return getattr(regs, name)
    if name.startswith("e") and "r" + name[1:] in REGISTER_NAMES:
        return getattr(regs, "r" + name[1:]) & 0xFFFFFFFF
    if name in ("cr0", "cr2", "cr3", "cr4", "efer"):
        return getattr(vcpu.get_sregs(), name)
    if name in ("cs", "ds", "es", "fs", "gs", "ss"):
        return getattr(vcpu.get_sregs(), name).selector
    raise KeyError(name)
