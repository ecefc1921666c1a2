"""MOV to CR0/CR4 that exits (it changes CR0.NE or CR4.VMXE, which the hypervisor owns)
and that kvm/ carries out: into IA-32e mode from 32-bit code, as Linux's bzImage
decompressor does; PAE paging with the page-directory pointers in the VMCS; #GP for
what the instruction refuses."""

import struct

from asm import assemble
from kvm import vmx
from kvm.constants import KVM_EXIT_HLT
from kvm_guest import CODE_GPA, CODE64, KvmGuest

PML4, PDPT, PD = 0x20000, 0x21000, 0x22000
PAE_PDPT, PAE_PD = 0x30000, 0x31000
HANDLER = 0x300
EXC_GP = 13


def identity_2m(g, pd: int, count: int, remap=None):
    """A page directory of 2 MiB pages mapping the first `count` identically, but for
    remap = (index, physical)."""
    entries = [(i << 21) | 0x87 for i in range(count)]
    if remap:
        entries[remap[0]] = remap[1] | 0x87
    g.write(pd, b"".join(struct.pack("<Q", e) for e in entries))


def guest32(body: str, ram=8 << 20) -> KvmGuest:
    g = KvmGuest(f"{body}\n hlt\n .org {HANDLER}\n mov esi, [esp + 4]\n hlt", mode="prot32", ram_size=ram)
    g.set_idt_gate(EXC_GP, CODE_GPA + HANDLER)
    return g


def test_32_bit_code_enters_long_mode_with_a_cr0_write_that_exits():
    g = guest32(f"""
        mov eax, cr4
        or eax, 0x20
        mov cr4, eax
        mov ecx, 0xc0000080
        rdmsr
        or eax, 0x100
        wrmsr
        mov eax, {PML4}
        mov cr3, eax
        mov eax, 0x80050033
        mov cr0, eax
        ljmp {CODE64}, offset long64
    .code64
    long64:
        mov rax, 0x123456789
    """)
    g.write(PML4, struct.pack("<Q", PDPT | 7))
    g.write(PDPT, struct.pack("<Q", PD | 7))
    identity_2m(g, PD, 4)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 0x123456789
    s = g.vcpu.get_sregs()
    assert (s.cr0, s.efer & 0x500, s.cs.l) == (0x80050033, 0x500, 1)


def test_pae_paging_from_a_cr0_write_that_exits_takes_the_pdptes():
    g = guest32(f"mov eax, cr4\n or eax, 0x20\n mov cr4, eax\n mov eax, {PAE_PDPT}\n mov cr3, eax\n"
                f" mov eax, 0x80000031\n mov cr0, eax\n mov ebx, [0x200000]")
    g.write(PAE_PDPT, struct.pack("<4Q", PAE_PD | 1, 0, 0, 0))
    identity_2m(g, PAE_PD, 4, remap=(1, 0x400000))
    g.write(0x400000, b"PAE!")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == int.from_bytes(b"PAE!", "little")
    assert g.vcpu.vmread(vmx.GUEST_PDPTR0) == PAE_PD | 1


def test_refused_writes_make_a_general_protection_fault():
    """Each case ends with the MOV to a control register that must fault."""
    cases = {
        "pdpte with reserved bits": f"mov eax, cr4\n or eax, 0x20\n mov cr4, eax\n mov eax, {PAE_PDPT}\n"
                                    f" mov cr3, eax\n mov eax, 0x80000031\n mov cr0, eax",
        "paging without protection": "mov eax, 0x80000030\n mov cr0, eax",
        "long mode without PAE": "mov ecx, 0xc0000080\n rdmsr\n or eax, 0x100\n wrmsr\n"
                                 " mov eax, 0x80000031\n mov cr0, eax",
        "VMX for the guest": "mov eax, cr4\n or eax, 0x2000\n mov cr4, eax",
    }
    for name, body in cases.items():
        offset = len(assemble(body.rsplit("\n", 1)[0], 32, CODE_GPA))
        g = guest32(body)
        g.write(PAE_PDPT, struct.pack("<4Q", PAE_PD | 1 | 0x100, 0, 0, 0))
        assert g.run().exit_reason == KVM_EXIT_HLT, name
        assert g.reg("rip") == CODE_GPA + HANDLER + 5, name          # in the #GP handler
        assert g.reg("rsi") == CODE_GPA + offset, name                 # at the MOV to CR
        assert g.vcpu.get_sregs().cr0 & 0x80000000 == 0, name
