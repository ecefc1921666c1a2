"""How the core runs a block of decoded instructions (run.c, exec_fast.c): it goes on
past a conditional branch that is not taken, a compare and the branch after it are one
entry, and an instruction runs without computing its flags when a later instruction of
its block overwrites them unseen.  These guests look at the results wherever they can be
seen: at a VM exit in the middle of a block, in an exception frame, after a branch, at
the end of a block, under single-stepping, and in the count of retired instructions."""

import struct

import pytest

from kvm import vmx
from kvm._silicon import lib
from kvm.constants import KVM_EXIT_HLT, KVM_EXIT_MMIO
from kvm_guest import CODE_GPA, KvmGuest

CF, ZF, SF, OF = 0x1, 0x40, 0x80, 0x800
ARITH = 0x8D5
MMIO_GPA = 0xFED00000
PF_FRAME = 0x7000      # where the #PF handler copies its frame


@pytest.fixture(autouse=True, params=["interpreted", "compiled"])
def execution(request, monkeypatch):
    """Each guest runs its blocks interpreted, and compiled to host code (jit.c) at
    their first run."""
    monkeypatch.setattr(KvmGuest, "jit_threshold", 0 if request.param == "interpreted" else 1)
    return request.param


def mtf_steps(g, count: int, field: int) -> list[int]:
    """Single-step the guest by monitor-trap-flag VM exits: `field` after each step."""
    proc = g.vcpu.vmread(vmx.CPU_BASED_VM_EXEC_CONTROL)
    g.vcpu.vmwrite(vmx.CPU_BASED_VM_EXEC_CONTROL, proc | vmx.CPU_BASED_MONITOR_TRAP_FLAG)
    values = []
    for _ in range(count):
        assert lib.root_vcpu_run(g.vcpu.root) == vmx.VMX_EXITED
        assert g.vcpu.vmread(vmx.VM_EXIT_REASON) == vmx.EXIT_REASON_MONITOR_TRAP_FLAG
        values.append(g.vcpu.vmread(field))
    return values


def test_flags_before_an_mmio_store_in_the_middle_of_a_block():
    g = KvmGuest(f"""
        mov eax, -1
        add eax, 1
        mov dword ptr [{MMIO_GPA}], eax
        xor ebx, ebx
        mov ecx, 1
        add ecx, 1
        hlt""")
    run = g.run()
    assert run.exit_reason == KVM_EXIT_MMIO
    assert g.vcpu.get_regs().rflags & ARITH == CF | ZF | 0x4 | 0x10   # the add's (PF, AF too)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.vcpu.get_regs().rflags & ARITH == 0      # 1 + 1: no flag (2 has odd parity)


def test_flags_in_the_frame_of_a_page_fault_in_the_middle_of_a_block():
    g = KvmGuest(f"""
        mov eax, 0x7fffffff
        add eax, 1
        mov ebx, [0x400000]
        sub ecx, ecx
        hlt
    .org 0x800
        mov eax, [esp + 12]
        mov [{PF_FRAME}], eax
        hlt""", paging=True)
    g.set_idt_gate(14, CODE_GPA + 0x800)
    assert g.run().exit_reason == KVM_EXIT_HLT
    eflags = struct.unpack("<I", g.read(PF_FRAME, 4))[0]
    assert eflags & (CF | ZF | SF | OF) == SF | OF           # 0x7fffffff + 1


def test_a_chain_of_dead_flags_ends_with_the_live_ones():
    g = KvmGuest("""
        mov eax, -1
        add eax, 1
        inc ecx
        neg edx
        shl esi, 3
        mov edi, 1
        sub edi, 2
        hlt""")
    g.set(rcx=0x7FFFFFFF, rdx=5, rsi=1)
    assert g.run().exit_reason == KVM_EXIT_HLT
    r = g.vcpu.get_regs()
    assert (r.rax, r.rcx, r.rdx, r.rsi, r.rdi) == (0, 0x80000000, 0xFFFFFFFB, 8, 0xFFFFFFFF)
    assert r.rflags & (CF | ZF | SF | OF) == CF | SF          # 1 - 2


def test_inc_keeps_the_carry_of_the_instruction_before_it():
    g = KvmGuest("""
        mov eax, -1
        add eax, 1
        inc ecx
        hlt""")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.vcpu.get_regs().rflags & (CF | ZF) == CF        # CF from the add, ZF from inc


def test_flags_after_a_conditional_branch_not_taken_and_taken():
    g = KvmGuest("""
        mov eax, 3
        cmp eax, 4
        je never
        add eax, 0
        jnz out
        xor eax, eax
    never:
        hlt
    out:
        hlt""")
    assert g.run().exit_reason == KVM_EXIT_HLT
    r = g.vcpu.get_regs()
    assert r.rax == 3 and r.rflags & (CF | ZF) == 0          # the add's flags reached `out`


def test_single_steps_through_a_block_with_dead_flags():
    # MTF stops after each instruction: every flag value along the way is seen
    g = KvmGuest("""
        mov eax, -1
        add eax, 1
        xor ebx, ebx
        hlt""")
    seen = [rflags & (CF | ZF) for rflags in mtf_steps(g, 3, vmx.GUEST_RFLAGS)]
    assert seen[1:] == [CF | ZF, ZF]


def test_a_fused_compare_of_mmio_and_its_branch():
    g = KvmGuest(f"""
        cmp dword ptr [{MMIO_GPA}], 5
        je yes
        mov ebx, 1
        hlt
    yes:
        mov ebx, 2
        hlt""")
    run = g.run()
    assert run.exit_reason == KVM_EXIT_MMIO and (run.mmio.phys_addr, run.mmio.len) == (MMIO_GPA, 4)
    run.mmio.data[:4] = (5).to_bytes(4, "little")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == 2


def test_a_fused_compare_that_page_faults_restarts_at_the_compare():
    g = KvmGuest(f"""
        mov ecx, 0
        cmp byte ptr [0x400000], 0
        jne nonzero
        mov ebx, 1
        hlt
    nonzero:
        mov ebx, 2
        hlt
    .org 0x800
        mov eax, [esp + 4]
        mov [{PF_FRAME}], eax
        mov dword ptr [0x32000], 0x00101007
        mov byte ptr [0x400000], 7
        add esp, 4
        iret""", paging=True)
    g.set_idt_gate(14, CODE_GPA + 0x800)
    g.write(0x32000, bytes(4096))
    g.write(0x30004, struct.pack("<I", 0x32000 | 7))   # an empty page table for 4-8 MiB
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert struct.unpack("<I", g.read(PF_FRAME, 4))[0] == CODE_GPA + 5   # the cmp, after mov ecx
    assert g.reg("rbx") == 2


def test_a_rip_relative_compare_and_branch_in_64_bit_code():
    g = KvmGuest("""
        cmp dword ptr [rip + value], 5
        je yes
        mov ebx, 1
        hlt
    yes:
        mov ebx, 2
        hlt
    value:
        .long 5""", mode="long64")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == 2


def test_retired_instructions_count_fused_pairs_and_side_exits():
    g = KvmGuest("""
        mov ecx, 100
        xor eax, eax
    again:
        add eax, ecx
        test eax, 1
        jnz odd
        sub ecx, 1
        jnz again
        jmp done
    odd:
        sub ecx, 1
        jnz again
        jmp done
    done:
        hlt""")
    before = g.vcpu.instructions_retired()
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 5050
    # mov, xor; add, test, jnz, sub, jnz in each round; jmp (HLT exits: it does not retire)
    assert g.vcpu.instructions_retired() - before == 2 + 5 * 100 + 1


def test_register_forms_of_exec_fast_with_flags_dead_and_live():
    # IMUL, MOVZX/MOVSX/MOVSXD, CMOVcc, SETcc, ADC/SBB, byte compares and PUSH/POP of
    # registers, in one block of 64-bit code; the last IMUL's flags reach the HLT
    g = KvmGuest("""
        mov rax, 0x123456789
        mov rbx, -3
        imul rax, rbx
        imul rcx, rax, 7
        add rcx, 1
        mov edx, 0x8081
        movzx esi, dl
        movsx edi, dl
        movsx r8, dx
        movsxd r9, edx
        mov r10d, -5
        movsxd r10, r10d
        cmp esi, 0x81
        cmove r11, rbx
        setne r12b
        sete r13b
        mov r14, -1
        add r14, 1
        adc r15, 5
        sbb r15, 2
        mov bl, 0xe8
        cmp bl, 0xe8
        jne wrong
        push rax
        push rsp
        pop rdx
        pop rbp
        mov eax, 0x40000000
        imul eax, eax, 4
        hlt
    wrong:
        ud2""", mode="long64")
    g.set(r11=0, r12=0x100, r13=0x200, r15=10)
    assert g.run().exit_reason == KVM_EXIT_HLT
    r = g.vcpu.get_regs()
    product = (0x123456789 * -3) & (2**64 - 1)
    assert r.rbp == product
    assert r.rcx == (product * 7 + 1) & (2**64 - 1)
    assert (r.rsi, r.rdi, r.r8, r.r9, r.r10) == (0x81, 0xFFFFFF81, 2**64 - 0x7F7F, 0x8081, 2**64 - 5)
    assert (r.r11, r.r12, r.r13) == (2**64 - 3, 0x100, 0x201)
    assert r.r15 == 10 + 5 + 1 - 2                       # the add's carry in, no borrow out
    assert r.rbx & 0xFF == 0xE8 and r.rbx >> 8 == (2**64 - 3) >> 8
    assert r.rdx == r.rsp - 8                             # PUSH RSP pushed the old RSP
    assert r.rax == 0 and r.rflags & (CF | OF) == CF | OF  # 2**30 * 4 overflows 32 bits


def test_nops_take_no_entry_but_count_and_single_step():
    # ENDBR64 and a multi-byte NOP at the block's start, a NOP (XCHG EAX, EAX) between a
    # compare and its branch
    source = """
        endbr64
        .byte 0x0f, 0x1f, 0x44, 0x00, 0x00     # ftrace's NOP
        mov eax, 1
        cmp eax, 1
        nop
        je yes
        mov ebx, 1
        hlt
    yes:
        mov ebx, 2
        jmp done
    done:
        hlt"""
    g = KvmGuest(source, mode="long64")
    before = g.vcpu.instructions_retired()
    assert g.run().exit_reason == KVM_EXIT_HLT
    # the HLT exits and does not retire (test_retired_instructions_count_...)
    assert g.reg("rbx") == 2 and g.vcpu.instructions_retired() - before == 8
    g = KvmGuest(source, mode="long64")
    rips = [rip - CODE_GPA for rip in mtf_steps(g, 7, vmx.GUEST_RIP)]
    assert rips == [4, 9, 14, 17, 18, 26, 31]   # after each instruction, the NOPs too
