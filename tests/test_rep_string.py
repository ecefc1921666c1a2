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


# Forward REP MOVS/STOS run a page at a time on host memory (exec_string.c's fast strings)
# where the TLB allows it; the results are those of one iteration after another.

def test_rep_movsb_onto_its_own_source_repeats_the_pattern_across_pages():
    # each byte copied is read again three iterations later: a copy at once would differ
    g = guest("rep movsb\n hlt", 4 << 20)
    g.write(DATA_GPA + 0xFFE, b"abc")
    g.set(rsi=DATA_GPA + 0xFFE, rdi=DATA_GPA + 0x1001, rcx=3 * 4096)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.read(DATA_GPA + 0xFFE, 3 * 4096 + 3) == b"abc" * (4096 + 1)
    assert g.reg("rcx") == 0 and g.reg("rdi") == DATA_GPA + 0x1001 + 3 * 4096


def test_rep_movsw_one_byte_ahead_of_its_source():
    # each word read holds the byte the iteration before wrote
    g = guest("rep movsw\n hlt", 4 << 20)
    g.write(DATA_GPA, b"abcdefgh")
    g.set(rsi=DATA_GPA, rdi=DATA_GPA + 1, rcx=3)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.read(DATA_GPA, 8) == b"aabbddfh"


def test_rep_movsd_and_stosw_over_several_pages_and_unaligned_ends():
    g = guest("rep movsd\n mov rdi, rdx\n mov ecx, 5000\n mov eax, 0xbeef\n rep stosw\n hlt", 4 << 20)
    data = bytes((i * 13) & 0xFF for i in range(4 * 3001))
    g.write(DATA_GPA + 2, data)
    g.set(rsi=DATA_GPA + 2, rdi=DATA_GPA + 0x10003, rcx=3001, rdx=DATA_GPA + 0x20001)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.read(DATA_GPA + 0x10003, len(data)) == data
    assert g.read(DATA_GPA + 0x20001, 10002) == b"\xef\xbe" * 5000 + bytes(2)
    assert g.reg("rdi") == DATA_GPA + 0x20001 + 10000


def test_rep_stosb_that_faults_on_the_next_page_has_done_the_iterations_before():
    # 64-bit guest: identity-mapped with 4 KiB pages below 2 MiB; the page at 0x1ff000 is
    # made not present, and the #PF handler records RDI and RCX
    g = guest("""
        rep stosb
        hlt
    .org 0x800
        mov [0x7000], rdi
        mov [0x7008], rcx
        hlt""", 4 << 20)
    from kvm_guest import PT_GPA
    import struct
    g.write(PT_GPA + 8 * 0x1FF, bytes(8))
    g.set_idt_gate(14, 0x1000 + 0x800)
    g.set(rdi=0x1FE000 + 100, rcx=5000, rax=0x5A)
    assert g.run().exit_reason == KVM_EXIT_HLT
    rdi, rcx = struct.unpack("<QQ", g.read(0x7000, 16))
    assert (rdi, rcx) == (0x1FF000, 5000 - (4096 - 100))
    assert g.read(0x1FE000 + 100, 4096 - 100) == b"\x5a" * (4096 - 100)
