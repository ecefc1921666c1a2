"""KVM_SET_GUEST_DEBUG, KVM_EXIT_DEBUG and KVM_GET/SET_DEBUGREGS through VCPU.run():
software breakpoints, hardware breakpoints and watchpoints, single-step (including
instructions the hypervisor completes itself), BLOCKIRQ, and the guest's own debug
registers, #DB and #BP, which keep working around the debugger."""

import struct

import pytest

from kvm import Kvm, KvmError
from kvm._silicon import lib
from kvm.capabilities import KVM_CAP_DEBUGREGS, KVM_CAP_SET_GUEST_DEBUG, KVM_CAP_SET_GUEST_DEBUG2
from kvm.constants import KVM_EXIT_DEBUG, KVM_EXIT_HLT, KVM_EXIT_IO
from kvm.guest_debug import (KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_INJECT_BP,
                             KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
                             KVM_GUESTDBG_VALID_MASK)
from kvm.structs import ExceptionState, VcpuEvents
from kvm_guest import CODE_GPA, DATA_GPA, KvmGuest

SW_BP = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP
HW_BP = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP
STEP = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP
DR6_BS = 1 << 14
TF = 1 << 8
HANDLER = 0x800        # .org of the handlers in the test code


def debug_exit(g):
    run = g.run()
    assert run.exit_reason == KVM_EXIT_DEBUG, run.exit_reason
    return run.debug.arch


def hw(dr0=0, dr1=0, dr7=0x400):
    return [dr0, dr1, 0, 0, 0, 0, 0, dr7]


def test_capabilities():
    kvm = Kvm()
    assert kvm.check_extension(KVM_CAP_SET_GUEST_DEBUG) == 1
    assert kvm.check_extension(KVM_CAP_DEBUGREGS) == 1
    assert kvm.check_extension(KVM_CAP_SET_GUEST_DEBUG2) == KVM_GUESTDBG_VALID_MASK


def test_unknown_control_bits_are_refused():
    g = KvmGuest("hlt")
    with pytest.raises(KvmError):
        g.vcpu.set_guest_debug(KVM_GUESTDBG_ENABLE | 0x4)


# ---- software breakpoints -----------------------------------------------------------------

def test_int3_written_by_the_debugger_exits_with_its_address():
    g = KvmGuest("nop\nnop\ninc eax\nhlt")
    original = g.read(CODE_GPA + 2, 1)
    g.write(CODE_GPA + 2, b"\xcc")
    g.vcpu.set_guest_debug(SW_BP)
    arch = debug_exit(g)
    assert (arch.exception, arch.pc) == (3, CODE_GPA + 2)
    assert g.reg("rip") == CODE_GPA + 2
    g.write(CODE_GPA + 2, original)                    # the debugger removes it and goes on
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 1


def test_guest_int3_goes_to_the_guest_without_sw_bp_and_is_reinjected_with_it():
    source = f"int3\nhlt\n.org {HANDLER}\ninc ebx\niretd"
    for control in (0, SW_BP):
        g = KvmGuest(source)
        g.set_idt_gate(3, CODE_GPA + HANDLER)
        g.vcpu.set_guest_debug(control)
        if control:
            arch = debug_exit(g)                       # not the debugger's: give it back
            assert arch.exception == 3
            ev = VcpuEvents(exception=ExceptionState(injected=1, nr=3))
            g.vcpu.set_vcpu_events(ev)
        assert g.run().exit_reason == KVM_EXIT_HLT
        assert g.reg("rbx") == 1 and g.reg("rip") == CODE_GPA + 2   # returned past the int3


def test_inject_bp_delivers_a_breakpoint_to_the_guest():
    g = KvmGuest(f"nop\nhlt\n.org {HANDLER}\ninc ebx\niretd")
    g.set_idt_gate(3, CODE_GPA + HANDLER)
    g.vcpu.set_guest_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_BP)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == 1


# ---- hardware breakpoints and watchpoints ---------------------------------------------------------

def test_hardware_breakpoint_then_a_step_over_it():
    g = KvmGuest("nop\ninc eax\ninc eax\nhlt")
    g.vcpu.set_guest_debug(HW_BP, hw(dr0=CODE_GPA + 1, dr7=0x401))
    arch = debug_exit(g)
    assert (arch.exception, arch.pc) == (1, CODE_GPA + 1)
    assert arch.dr6 == 0xFFFF0FF1 and arch.dr7 == 0x401
    g.vcpu.set_guest_debug(STEP)                       # gdb steps over with breakpoints out
    arch = debug_exit(g)
    assert (arch.exception, arch.pc, arch.dr6) == (1, CODE_GPA + 2, 0xFFFF0FF0 | DR6_BS)
    g.vcpu.set_guest_debug(HW_BP, hw(dr0=CODE_GPA + 1, dr7=0x401))
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 2


def test_write_watchpoint_stops_after_the_write():
    g = KvmGuest(f"mov dword ptr [{DATA_GPA + 8}], 5\nmov dword ptr [{DATA_GPA}], 7\nhlt")
    dr7 = 0x400 | (1 << 2) | (0b1101 << 20)            # DR1: write, 4 bytes
    g.vcpu.set_guest_debug(HW_BP, hw(dr1=DATA_GPA, dr7=dr7))
    arch = debug_exit(g)
    assert arch.exception == 1 and arch.dr6 == 0xFFFF0FF2
    assert arch.pc == CODE_GPA + 20                     # after the second mov
    assert struct.unpack("<I", g.read(DATA_GPA, 4))[0] == 7


def test_guest_debug_registers_survive_the_debugger():
    # the guest sets DR0, the debugger takes over, the guest reads DR0 and writes DR1
    g = KvmGuest("mov eax, 0x1234\nmov dr0, eax\nout 0x80, al\n"
                 "mov ebx, dr0\nmov eax, 0x5678\nmov dr1, eax\nmov ecx, dr7\nhlt")
    assert g.run().exit_reason == KVM_EXIT_IO
    g.vcpu.set_guest_debug(HW_BP, hw(dr0=0xDEAD000, dr7=0x402))
    regs = g.vcpu.get_debugregs()
    regs.dr7 = 0x408                                    # the guest's own G1
    g.vcpu.set_debugregs(regs)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == 0x1234 and g.reg("rcx") == 0x408
    assert g.vcpu.get_debugregs().db[:2] == [0x1234, 0x5678]
    assert lib.cpu_get_dr(g.vcpu.cpu, 0) == 0xDEAD000   # the processor holds the debugger's
    g.vcpu.set_guest_debug(0)
    assert [lib.cpu_get_dr(g.vcpu.cpu, n) for n in (0, 1)] == [0x1234, 0x5678]
    assert g.vcpu.get_debugregs().dr7 == 0x408


def test_guest_own_watchpoint_hits_its_handler_without_the_debugger():
    g = KvmGuest(f"""
        mov eax, {DATA_GPA}
        mov dr2, eax
        mov eax, 0x0D000410       # DR2: write, 4 bytes, L2
        mov dr7, eax
        out 0x80, al              # a VM exit must not lose DR7
        mov dword ptr [{DATA_GPA}], 1
        hlt
        .org {HANDLER}
        mov ebx, dr6
        iretd""")
    g.set_idt_gate(1, CODE_GPA + HANDLER)
    assert g.run().exit_reason == KVM_EXIT_IO
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == 0xFFFF0FF4


# ---- single-step ---------------------------------------------------------------------------

def test_single_step_counts_instructions_the_hypervisor_completes():
    g = KvmGuest("inc eax\ncpuid\nout 0x80, al\nhlt")
    g.vcpu.set_guest_debug(STEP)
    assert debug_exit(g).pc == CODE_GPA + 1             # inc
    assert debug_exit(g).pc == CODE_GPA + 3             # cpuid, handled in kvm/
    run = g.run()
    assert run.exit_reason == KVM_EXIT_IO               # out: userspace first...
    assert debug_exit(g).pc == CODE_GPA + 5             # ...then the step is reported


def test_single_step_does_not_show_tf_to_the_guest():
    g = KvmGuest("pushfd\npop eax\nhlt")
    g.vcpu.set_guest_debug(STEP)
    debug_exit(g)
    debug_exit(g)
    assert not g.reg("rax") & TF and not g.reg("rflags") & TF


def test_guest_own_single_step_trap_follows_an_emulated_instruction():
    g = KvmGuest(f"""
        pushfd
        or dword ptr [esp], 0x100
        popfd
        cpuid
        hlt
        .org {HANDLER}
        inc esi
        mov edi, dr6
        iretd""")
    g.set_idt_gate(1, CODE_GPA + HANDLER)
    assert g.run().exit_reason == KVM_EXIT_HLT           # the hlt owes a trap in turn
    assert g.reg("rsi") == 1 and g.reg("rdi") & DR6_BS


def test_blockirq_keeps_the_interrupt_out_of_the_step():
    source = f"sti\nnop\nnop\nnop\nhlt\n.org {HANDLER}\ninc ebx\niretd"
    for control, handled in ((STEP, 1), (STEP | KVM_GUESTDBG_BLOCKIRQ, 0)):
        g = KvmGuest(source)
        g.set_idt_gate(0x30, CODE_GPA + HANDLER)
        g.vcpu.set_guest_debug(control)
        debug_exit(g)                                   # sti
        debug_exit(g)                                   # nop in the STI shadow
        g.vcpu.interrupt(0x30)
        arch = debug_exit(g)
        assert (arch.pc == CODE_GPA + HANDLER) == bool(handled)
        if not handled:
            assert arch.pc == CODE_GPA + 3
            assert not g.vcpu.kvm_run.ready_for_interrupt_injection
