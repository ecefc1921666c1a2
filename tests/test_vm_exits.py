"""VM exits of the walking skeleton with their exit information: I/O instructions
(Table 28-5), HLT, CPUID, triple fault, and VM-entry failure on bad guest state."""

from kvm import vmx
from kvm._silicon import lib
from silicon import CODE_GPA, RawGuest


def test_out_imm8_exit_qualification():
    g = RawGuest(b"\xb0\x41\xe6\x80\xf4")          # mov al, 0x41; out 0x80, al; hlt
    assert g.run_to_exit() == vmx.EXIT_REASON_IO_INSTRUCTION
    q = g.qualification()
    assert q & 7 == 0                  # 1-byte access
    assert not q & 8                   # OUT
    assert not q & 16                  # not a string instruction
    assert q & 64                      # port in an immediate
    assert q >> 16 == 0x80
    assert g.read(vmx.VM_EXIT_INSTRUCTION_LEN) == 2
    assert g.read(vmx.GUEST_RIP) == CODE_GPA + 2
    assert g.vcpu.get_regs().rax & 0xFF == 0x41


def test_in_dx_dword_exit_qualification():
    g = RawGuest(b"\x66\xba\xf8\x0c\xed\xf4")      # mov dx, 0xcf8; in eax, dx; hlt
    assert g.run_to_exit() == vmx.EXIT_REASON_IO_INSTRUCTION
    q = g.qualification()
    assert q & 7 == 3 and q & 8 and not q & 64
    assert q >> 16 == 0xCF8
    assert g.read(vmx.VM_EXIT_INSTRUCTION_LEN) == 1


def test_hlt_exit_has_instruction_length():
    g = RawGuest(b"\x90\xf4")
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    assert g.read(vmx.GUEST_RIP) == CODE_GPA + 1
    assert g.read(vmx.VM_EXIT_INSTRUCTION_LEN) == 1


def test_cpuid_exits_unconditionally():
    g = RawGuest(b"\x0f\xa2\xf4")
    assert g.run_to_exit() == vmx.EXIT_REASON_CPUID
    assert g.read(vmx.VM_EXIT_INSTRUCTION_LEN) == 2


def test_triple_fault():
    g = RawGuest(b"\x0f\x0b")                      # ud2 with an empty IDT
    g.vcpu.vmwrite(vmx.GUEST_IDTR_LIMIT, 0)
    assert g.run_to_exit() == vmx.EXIT_REASON_TRIPLE_FAULT


def test_exception_bitmap_exit():
    g = RawGuest(b"\x0f\x0b")
    g.vcpu.vmwrite(vmx.EXCEPTION_BITMAP, 1 << 6)
    assert g.run_to_exit() == vmx.EXIT_REASON_EXCEPTION_NMI
    info = g.read(vmx.VM_EXIT_INTR_INFO)
    assert info == vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_HARD_EXCEPTION | 6


def test_invalid_guest_state_fails_entry():
    g = RawGuest(b"\xf4")
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, 0)            # bit 1 must be set
    assert g.enter() == vmx.VMX_EXITED
    assert g.reason() == vmx.EXIT_REASON_FAILED_VMENTRY | vmx.EXIT_REASON_INVALID_STATE
    # the VMCS stays not launched: VMRESUME is refused
    assert lib.vmx_vmresume(g.vcpu.cpu) == vmx.VMX_FAIL_VALID
    assert g.read(vmx.VM_INSTRUCTION_ERROR) == 5


def _enable_preemption_timer(g, value, save=False):
    pin = g.read(vmx.PIN_BASED_VM_EXEC_CONTROL) | vmx.PIN_BASED_VMX_PREEMPTION_TIMER
    g.vcpu.vmwrite(vmx.PIN_BASED_VM_EXEC_CONTROL, pin)
    g.vcpu.vmwrite(vmx.VMX_PREEMPTION_TIMER_VALUE, value)
    if save:
        exit_ctl = g.read(vmx.VM_EXIT_CONTROLS) | vmx.VM_EXIT_SAVE_VMX_PREEMPTION_TIMER
        g.vcpu.vmwrite(vmx.VM_EXIT_CONTROLS, exit_ctl)


def test_preemption_timer_interrupts_a_busy_loop():
    g = RawGuest(b"\xeb\xfe")                      # jmp $
    _enable_preemption_timer(g, 20000, save=True)
    assert g.run_to_exit() == vmx.EXIT_REASON_PREEMPTION_TIMER
    assert g.read(vmx.VMX_PREEMPTION_TIMER_VALUE) == 0
    assert g.read(vmx.GUEST_RIP) == CODE_GPA


def test_preemption_timer_wakes_a_halted_guest():
    g = RawGuest(b"\xf4")
    proc = g.read(vmx.CPU_BASED_VM_EXEC_CONTROL) & ~vmx.CPU_BASED_HLT_EXITING
    g.vcpu.vmwrite(vmx.CPU_BASED_VM_EXEC_CONTROL, proc)
    _enable_preemption_timer(g, 50000)
    assert g.run_to_exit() == vmx.EXIT_REASON_PREEMPTION_TIMER
    assert g.read(vmx.GUEST_ACTIVITY_STATE) == 1   # still in the HLT state
    assert g.read(vmx.GUEST_RIP) == CODE_GPA + 1


def test_external_interrupt_exit_from_a_kick():
    import threading
    g = RawGuest(b"\xeb\xfe")
    threading.Timer(0.05, lambda: lib.cpu_kick(g.vcpu.cpu)).start()
    assert g.run_to_exit() == vmx.EXIT_REASON_EXTERNAL_INTERRUPT
    info = g.read(vmx.VM_EXIT_INTR_INFO)
    assert info & vmx.INTR_INFO_VALID_MASK          # acknowledged on exit
