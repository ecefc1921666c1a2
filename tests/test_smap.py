"""SMAP: supervisor data accesses to user pages need RFLAGS.AC, which CLAC and STAC
clear and set (Linux brackets every user copy with them once CPUID shows SMAP; without
the instructions it looped on #UD). The TLB keeps a translation that AC allowed only
until AC is cleared again."""

from kvm.constants import KVM_EXIT_HLT
from kvm_guest import CODE_GPA, DATA_GPA, GDT_GPA, IDT_GPA, PTE_P, PTE_W, STACK_TOP, KvmGuest

CR4_SMAP = 1 << 21
RFLAGS_AC = 1 << 18
HANDLER = 0x100          # offset of the exception handler (a HLT) in the code
EXC_UD, EXC_PF = 6, 14
VALUE = 0x1122334455667788


def guest(body: str, mode: str = "long64") -> KvmGuest:
    """`body`, then HLT; exceptions go to a handler that halts too."""
    g = KvmGuest(f"{body}\n hlt\n .org {HANDLER}\n hlt", mode=mode)
    for vector in (EXC_UD, EXC_PF):
        g.set_idt_gate(vector, CODE_GPA + HANDLER)
    return g


def smap_guest(body: str) -> KvmGuest:
    """Long mode with CR4.SMAP, where the identity map makes every page a user page but
    the ones that events use (descriptor tables, stack)."""
    g = guest(body)
    for page in (GDT_GPA, IDT_GPA, STACK_TOP - 0x1000):
        g.set_pte_flags(page, PTE_P | PTE_W)
    s = g.vcpu.get_sregs()
    s.cr4 |= CR4_SMAP
    g.vcpu.set_sregs(s)
    g.write(DATA_GPA, VALUE.to_bytes(8, "little"))
    return g


def halted_in_handler(g: KvmGuest) -> bool:
    assert g.run().exit_reason == KVM_EXIT_HLT
    return g.reg("rip") == CODE_GPA + HANDLER + 1


def test_stac_opens_user_pages_and_clac_closes_them_again():
    g = smap_guest(f"stac\n mov rax, [{DATA_GPA}]\n clac\n mov rbx, [{DATA_GPA}]")
    g.set(rbx=0xB)
    assert halted_in_handler(g)                       # the second read faulted
    assert (g.reg("rax"), g.reg("rbx")) == (VALUE, 0xB)
    assert g.vcpu.get_sregs().cr2 == DATA_GPA


def test_popf_clearing_ac_closes_user_pages():
    g = smap_guest(f"stac\n mov dword ptr [{DATA_GPA}], 7\n push 2\n popfq\n mov dword ptr [{DATA_GPA}], 8")
    assert halted_in_handler(g)
    assert g.read(DATA_GPA, 4) == (7).to_bytes(4, "little")


def test_a_user_copy_between_stac_and_clac():
    g = smap_guest(f"stac\n mov rsi, {DATA_GPA}\n mov rdi, {DATA_GPA + 0x2000}\n mov ecx, 8\n"
                   f" rep movsb\n clac")
    assert not halted_in_handler(g)
    assert g.read(DATA_GPA + 0x2000, 8) == VALUE.to_bytes(8, "little")
    assert not g.reg("rflags") & RFLAGS_AC


def test_clac_and_stac_are_undefined_outside_ring_0():
    for insn in ("clac", "stac"):
        g = guest(insn, mode="prot32")
        g.enter_user_mode(kernel_stack=0x70000)
        assert halted_in_handler(g)
        assert g.read(0x70000 - 20, 4) == CODE_GPA.to_bytes(4, "little")   # #UD at the instruction
