"""REP string instructions that run longer than one pass of the processor (it bounds a
pass so that kicks and timers are noticed, then restarts the instruction): the
instructions after one in its translation block must wait until all its iterations are
done. Linux's bzImage decompressor moves the kernel with one `rep movsq` of about 3 M
iterations followed by `mov rcx, n & 7; rep movsb`; the block once went on after the first
pass, so only the first 8 MiB of the kernel moved and the kernel triple-faulted."""

from kvm.constants import KVM_EXIT_HLT
from kvm_guest import DATA_GPA, KvmGuest

COUNT = (1 << 20) + 77          # more iterations than one pass runs
DEST = DATA_GPA + 0x180000


def guest(source: str, ram_size: int) -> KvmGuest:
    """A 64-bit guest whose RAM the EPT maps already: no EPT-violation exit cuts a pass short."""
    g = KvmGuest(source, mode="long64", ram_size=ram_size)
    for gpa in range(0, ram_size, 0x1000):
        g.vm.map_guest_page(gpa)
    return g


def test_rep_movsb_longer_than_one_pass_finishes_before_the_next_instruction():
    g = guest("rep movsb\n mov ebx, ecx\n mov ecx, 3\n rep movsb\n hlt", 8 << 20)
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(COUNT + 3))
    g.write(DATA_GPA, data)
    g.set(rsi=DATA_GPA, rdi=DEST, rcx=COUNT, rbx=0xDEAD)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == 0                       # RCX was 0 when the MOV ran
    assert (g.reg("rsi"), g.reg("rdi"), g.reg("rcx")) == (DATA_GPA + COUNT + 3, DEST + COUNT + 3, 0)
    assert g.read(DEST, COUNT + 3) == data


def test_rep_stosq_longer_than_one_pass_backwards():
    g = guest("std\n rep stosq\n cld\n mov ebx, ecx\n hlt", 16 << 20)
    top = DATA_GPA + 8 * COUNT
    g.set(rdi=top, rcx=COUNT, rax=0x1122334455667788, rbx=0xDEAD)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("rbx"), g.reg("rdi")) == (0, top - 8 * COUNT)
    filled = g.read(DATA_GPA + 8, 8 * COUNT)
    assert filled == bytes.fromhex("8877665544332211") * COUNT
    assert g.read(DATA_GPA, 8) == bytes(8)
