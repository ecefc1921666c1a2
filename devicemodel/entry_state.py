"""Putting a vCPU into the state in which a boot protocol enters the kernel.

A loader describes that state as an ``EntryState`` (devicemodel.loaders.x86_boot):
flat 32-bit protected mode with paging off (Multiboot v1 section 3.2, PVH, Linux's
32-bit boot protocol) or 64-bit mode with paging on (Linux's 64-bit boot protocol).
Besides CS and the data segments (DS, ES, FS, GS and SS) the state has a busy TSS in TR
and an unusable LDTR, so that it passes the VM-entry guest-state checks; IDTR is a
placeholder, and so is GDTR when the protocol gives the kernel no GDT: the kernel loads
its own before it takes an interrupt or reloads a segment. EFLAGS has only its reserved
bit 1 set (interrupts off).
"""

from __future__ import annotations

from kvm.structs import DTable, Segment

from devicemodel.loaders.x86_boot import EFLAGS_RESERVED, EntryState, FlatSegment

TYPE_TSS_BUSY = 0xB    # a busy 32-bit TSS, or in IA-32e mode a busy 64-bit TSS
TYPE_LDT = 0x2
PLACEHOLDER_TABLE = DTable(base=0, limit=0xFFFF)

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def _segment(seg: FlatSegment) -> Segment:
    return Segment(base=0, limit=0xFFFFFFFF, selector=seg.selector, type=seg.type, present=1, dpl=0,
                   db=seg.db, s=1, l=seg.l, g=1, avl=0, unusable=0)


def apply_entry_state(vcpu, state: EntryState) -> None:
    """Put ``vcpu`` into ``state``: control registers, segments, descriptor tables, registers."""
    unknown = set(state.regs) - set(GPRS)
    if unknown:
        raise ValueError(f"not general registers: {sorted(unknown)}")
    sregs = vcpu.get_sregs()
    sregs.cs = _segment(state.code)
    data = _segment(state.data)
    sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss = data, data, data, data, data
    sregs.tr = Segment(base=0, limit=0x67, selector=0, type=TYPE_TSS_BUSY, present=1, dpl=0,
                       db=0, s=0, l=0, g=0, avl=0, unusable=0)
    sregs.ldt = Segment(base=0, limit=0, selector=0, type=TYPE_LDT, present=0, dpl=0,
                        db=0, s=0, l=0, g=0, avl=0, unusable=1)
    sregs.gdt = PLACEHOLDER_TABLE if state.gdt is None else DTable(*state.gdt)
    sregs.idt = PLACEHOLDER_TABLE
    sregs.cr0 = state.cr0
    sregs.cr3 = state.cr3
    sregs.cr4 = state.cr4
    sregs.efer = state.efer
    vcpu.set_sregs(sregs)

    regs = vcpu.get_regs()
    for name in GPRS:
        setattr(regs, name, state.regs.get(name, 0))
    regs.rip = state.rip
    regs.rflags = EFLAGS_RESERVED
    vcpu.set_regs(regs)


def set_protected_mode_entry(vcpu, eip: int, eax: int, ebx: int) -> None:
    """Put ``vcpu`` at ``eip`` in flat 32-bit protected mode with the given EAX and EBX."""
    apply_entry_state(vcpu, EntryState(rip=eip, regs={"rax": eax, "rbx": ebx}))
