"""64-bit call gates in IA-32e mode (SDM Vol. 3 5.8.6): a far CALL from ring 3 through a
DPL-3 gate switches to RSP0 of the 64-bit TSS with a null SS and pushes SS, RSP, CS
and RIP as quadwords; at the same level it pushes CS and RIP; the gate's and the target's
checks fault with the SDM's error codes. (The 32-bit gates, with the parameter copy, are
checked by the usermode system kernel against QEMU.)"""

import struct

from kvm.constants import KVM_EXIT_HLT
from kvm.structs import DTable, Segment
from kvm_guest import CODE64, CODE32, CODE_GPA, DATA_GPA, GDT_GPA, TSS_GPA, USER_DATA32, KvmGuest

GATE, GATE_DPL0, GATE_16, GATE_TO32 = 0x40, 0x50, 0x60, 0x70
USER_CODE64 = 0x80
RSP0 = 0x70000
TARGET = 0x200
FAULT_HANDLER = 0x300
FAR_POINTER = DATA_GPA


def call_gate64(target: int, selector: int, dpl: int, gate_type: int = 0xC) -> bytes:
    low = struct.pack("<HHBBH", target & 0xFFFF, selector, 0, 0x80 | dpl << 5 | gate_type,
                      (target >> 16) & 0xFFFF)
    return low + struct.pack("<II", target >> 32, 0)


def guest(caller: str, ring3: bool):
    """`caller` at CODE_GPA, a target that records RSP, CS and SS (RBX, RCX, RDX), and a #GP
    and #NP handler that keeps the error code in R8; every path ends in HLT."""
    g = KvmGuest(f"{caller}\n hlt\n .org {TARGET}\n mov rbx, rsp\n mov rcx, cs\n mov rdx, ss\n hlt\n"
                 f" .org {FAULT_HANDLER}\n pop r8\n hlt", mode="long64")
    g.write(GDT_GPA + GATE, call_gate64(CODE_GPA + TARGET, CODE64, 3))
    g.write(GDT_GPA + GATE_DPL0, call_gate64(CODE_GPA + TARGET, CODE64, 0))
    g.write(GDT_GPA + GATE_16, struct.pack("<HHBBH", TARGET, CODE64, 0, 0xE4, 0) + bytes(8))
    g.write(GDT_GPA + GATE_TO32, call_gate64(CODE_GPA + TARGET, CODE32, 3))
    g.write(GDT_GPA + USER_CODE64, struct.pack("<HHBBBB", 0xFFFF, 0, 0, 0xFB, 0xAF, 0))
    g.write(TSS_GPA + 4, struct.pack("<Q", RSP0))
    g.set_idt_gate(13, CODE_GPA + FAULT_HANDLER)
    g.set_idt_gate(11, CODE_GPA + FAULT_HANDLER)
    s = g.vcpu.get_sregs()
    s.gdt = DTable(GDT_GPA, 0x8F)
    s.tr = Segment(base=TSS_GPA, limit=0x67, selector=0x30, type=0xB, s=0, present=1)
    if ring3:
        s.cs = Segment(base=0, limit=0xFFFFFFFF, selector=USER_CODE64 | 3, type=0xB, present=1, dpl=3, l=1, g=1)
        s.ss = Segment(base=0, limit=0xFFFFFFFF, selector=USER_DATA32, type=3, present=1, dpl=3, db=1, g=1)
    g.vcpu.set_sregs(s)
    g.set(rsp=0x60000, r8=0xDEAD)
    return g


def far_call(selector: int) -> str:
    return f"mov rax, {FAR_POINTER}\n mov dword ptr [rax + 4], {selector}\n call fword ptr [rax]"


def test_call_from_ring3_switches_to_rsp0_with_a_null_ss():
    g = guest(far_call(GATE | 3), ring3=True)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("rcx"), g.reg("rdx"), g.reg("rbx")) == (CODE64, 0, RSP0 - 32)
    rip, cs, rsp, ss = struct.unpack("<4Q", g.read(RSP0 - 32, 32))
    assert (ss, rsp, cs) == (USER_DATA32, 0x60000, USER_CODE64 | 3)
    assert CODE_GPA < rip < CODE_GPA + 0x40          # after the CALL
    assert g.reg("r8") == 0xDEAD


def test_call_at_the_same_level_pushes_cs_and_rip():
    g = guest(far_call(GATE_DPL0), ring3=False)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("rcx"), g.reg("rbx")) == (CODE64, 0x60000 - 16)
    rip, cs = struct.unpack("<2Q", g.read(0x60000 - 16, 16))
    assert cs == CODE64 and CODE_GPA < rip < CODE_GPA + 0x40


def test_gate_checks_fault_with_the_sdms_error_codes():
    cases = [
        (GATE_DPL0 | 3, True, 0x50),      # gate DPL 0 < CPL 3: #GP(gate)
        (GATE_16, False, 0x60),           # a 16-bit call gate does not exist in IA-32e mode
        (GATE_TO32, False, CODE32),       # a 64-bit gate must lead to 64-bit code: #GP(CS)
    ]
    for selector, ring3, error in cases:
        g = guest(far_call(selector), ring3=ring3)
        assert g.run().exit_reason == KVM_EXIT_HLT
        assert g.reg("r8") == error, (hex(selector), hex(g.reg("r8")))
        assert g.reg("rbx") == 0                   # the target never ran
