"""The processor state a 32-bit boot protocol hands to the kernel (Multiboot v1, section 3.2).

32-bit protected mode with paging off: CR0 = PE | ET; CS a flat 4 GiB execute/read code
segment (selector 0x10); DS, ES, FS, GS and SS flat read/write data segments (selector
0x18); a busy 32-bit TSS in TR and an unusable LDTR so that the state passes the VM-entry
guest-state checks; GDTR and IDTR are placeholders, the kernel loads its own; EFLAGS has
only its reserved bit 1 set (interrupts off).
"""

from __future__ import annotations

from kvm.structs import DTable, Segment

CR0_PE = 0x1
CR0_ET = 0x10
EFLAGS_RESERVED = 0x2

CODE_SELECTOR = 0x10
DATA_SELECTOR = 0x18
TYPE_CODE_EXEC_READ_ACCESSED = 0xB
TYPE_DATA_READ_WRITE_ACCESSED = 0x3
TYPE_TSS32_BUSY = 0xB
TYPE_LDT = 0x2


def _flat(selector: int, type_: int) -> Segment:
    return Segment(base=0, limit=0xFFFFFFFF, selector=selector, type=type_, present=1, dpl=0,
                   db=1, s=1, l=0, g=1, avl=0, unusable=0)


def set_protected_mode_entry(vcpu, eip: int, eax: int, ebx: int) -> None:
    """Put ``vcpu`` at ``eip`` in flat 32-bit protected mode with the given EAX and EBX."""
    sregs = vcpu.get_sregs()
    sregs.cs = _flat(CODE_SELECTOR, TYPE_CODE_EXEC_READ_ACCESSED)
    data = _flat(DATA_SELECTOR, TYPE_DATA_READ_WRITE_ACCESSED)
    sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss = data, data, data, data, data
    sregs.tr = Segment(base=0, limit=0x67, selector=0, type=TYPE_TSS32_BUSY, present=1, dpl=0,
                       db=0, s=0, l=0, g=0, avl=0, unusable=0)
    sregs.ldt = Segment(base=0, limit=0, selector=0, type=TYPE_LDT, present=0, dpl=0,
                        db=0, s=0, l=0, g=0, avl=0, unusable=1)
    sregs.gdt = DTable(base=0, limit=0xFFFF)
    sregs.idt = DTable(base=0, limit=0xFFFF)
    sregs.cr0 = CR0_PE | CR0_ET
    sregs.cr3 = 0
    sregs.cr4 = 0
    sregs.efer = 0
    vcpu.set_sregs(sregs)

    regs = vcpu.get_regs()
    for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"):
        setattr(regs, name, 0)
    regs.rax = eax
    regs.rbx = ebx
    regs.rip = eip
    regs.rflags = EFLAGS_RESERVED
    vcpu.set_regs(regs)
