"""Exit reasons with their kvm_run payloads: KVM_EXIT_SYSTEM_EVENT (the Hyper-V reset and
crash MSRs, and the device model's answer), KVM_EXIT_FAIL_ENTRY and KVM_EXIT_INTERNAL_ERROR
with each suberror's data."""

import struct

from devicemodel.address_space import AddressSpace
from devicemodel.runstate import RunState
from devicemodel.vcpu_loop import VcpuLoop
from kvm import Kvm, vmx
from kvm.capabilities import KVM_CAP_INTERNAL_ERROR_DATA, KVM_CAP_SYSTEM_EVENT_DATA
from kvm.constants import (KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_SYSTEM_EVENT,
                           KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
                           KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_INTERNAL_ERROR_SIMUL_EX,
                           KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, KVM_SYSTEM_EVENT_CRASH,
                           KVM_SYSTEM_EVENT_RESET)
from kvm.hyperv import HV_CRASH_CTL_CRASH_NOTIFY, HV_X64_MSR_CRASH_CTL, HV_X64_MSR_CRASH_P0, HV_X64_MSR_RESET
from kvm.msrs import MSR_INDEX_LIST
from kvm_guest import CODE_GPA, IDT_GPA, KvmGuest

HANDLER = CODE_GPA + 0x100
MMIO = 0xC0000000


def wrmsr(index, value):
    return f"mov ecx, {index}\nmov eax, {value & 0xFFFFFFFF}\nmov edx, {value >> 32}\nwrmsr\n"


# ---- KVM_EXIT_SYSTEM_EVENT ------------------------------------------------------------------

def test_hyperv_reset_msr_is_a_reset_system_event_after_the_wrmsr():
    g = KvmGuest(wrmsr(HV_X64_MSR_RESET, 0) + wrmsr(HV_X64_MSR_RESET, 1) + "mov ebx, 9\nhlt")
    run = g.run()
    assert run.exit_reason == KVM_EXIT_SYSTEM_EVENT
    assert (run.system_event.type, run.system_event.ndata) == (KVM_SYSTEM_EVENT_RESET, 0)
    assert g.reg("rip") == CODE_GPA + len(g.code) - 6           # past the second WRMSR
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rbx") == 9
    assert Kvm().check_extension(KVM_CAP_SYSTEM_EVENT_DATA) == 1


def test_hyperv_crash_notification_with_its_parameters():
    params = [0x1111, 0x2222, 1 << 40, 0x4444, 0x5555]
    g = KvmGuest(f"mov ecx, {HV_X64_MSR_CRASH_CTL}\nrdmsr\nmov esi, edx\n" +
                 "".join(wrmsr(HV_X64_MSR_CRASH_P0 + k, p) for k, p in enumerate(params)) +
                 wrmsr(HV_X64_MSR_CRASH_CTL, 0) +                     # no notification yet
                 wrmsr(HV_X64_MSR_CRASH_CTL, HV_CRASH_CTL_CRASH_NOTIFY) + "hlt")
    assert g.vcpu.set_msrs({HV_X64_MSR_CRASH_CTL: HV_CRASH_CTL_CRASH_NOTIFY | 0xFF}) == 1   # offered
    run = g.run()
    assert run.exit_reason == KVM_EXIT_SYSTEM_EVENT and run.system_event.type == KVM_SYSTEM_EVENT_CRASH
    assert g.reg("rsi") == 1 << 31                                  # the guest saw the offer
    indices = [HV_X64_MSR_CRASH_P0 + k for k in range(5)]
    assert list(g.vcpu.get_msrs(indices).values()) == params
    assert set(indices + [HV_X64_MSR_RESET, HV_X64_MSR_CRASH_CTL]) <= set(MSR_INDEX_LIST)


def test_the_vcpu_loop_resets_the_machine_for_a_reset_event():
    g = KvmGuest(wrmsr(HV_X64_MSR_RESET, 1) + "hlt")
    runstate = RunState()
    resets = []

    def request_reset(what):
        resets.append(what)
        runstate.request_exit(0)
    VcpuLoop(g.vcpu, AddressSpace("io", 0x10000), AddressSpace("memory"), runstate,
             request_reset=request_reset).start().join(10)
    assert len(resets) == 1 and "reset" in resets[0]


def test_the_vcpu_loop_reports_a_crash_and_shuts_down(capsys):
    g = KvmGuest(wrmsr(HV_X64_MSR_CRASH_P0, 0xDEAD) + wrmsr(HV_X64_MSR_CRASH_CTL, HV_CRASH_CTL_CRASH_NOTIFY) + "hlt")
    runstate = RunState()
    VcpuLoop(g.vcpu, AddressSpace("io", 0x10000), AddressSpace("memory"), runstate,
             request_shutdown=lambda: runstate.request_exit(0)).start().join(10)
    assert runstate.exit_status == 0
    assert "guest panicked; Hyper-V crash parameters: 0xdead 0x0 0x0 0x0 0x0" in capsys.readouterr().err


# ---- KVM_EXIT_FAIL_ENTRY -----------------------------------------------------------------------

def test_invalid_guest_state_is_fail_entry_with_the_exit_reason():
    g = KvmGuest("hlt")
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, 0)                     # bit 1 must be set
    run = g.run()
    assert run.exit_reason == KVM_EXIT_FAIL_ENTRY
    assert run.fail_entry.hardware_entry_failure_reason == vmx.EXIT_REASON_FAILED_VMENTRY | 33
    assert run.fail_entry.cpu == 0


def test_invalid_controls_are_fail_entry_with_the_instruction_error():
    kvm = Kvm()
    vm = kvm.create_vm()
    vm.create_vcpu(0)
    vcpu = vm.create_vcpu(1)
    vcpu.vmwrite(vmx.CR3_TARGET_COUNT, 5)                   # at most 4
    run = vcpu.run()
    assert run.exit_reason == KVM_EXIT_FAIL_ENTRY
    assert (run.fail_entry.hardware_entry_failure_reason, run.fail_entry.cpu) == (7, 1)


# ---- KVM_EXIT_INTERNAL_ERROR -------------------------------------------------------------------

def test_unemulated_instruction_from_cpl0_is_an_emulation_failure_with_its_bytes():
    g = KvmGuest(f"mov esi, {MMIO}\nmov dx, 0x80\noutsb\nhlt\n.org 0x100\nmov ebx, 6\nhlt")
    g.set_idt_gate(6, HANDLER)
    run = g.run()
    assert run.exit_reason == KVM_EXIT_INTERNAL_ERROR
    internal = run.internal
    assert internal.suberror == KVM_INTERNAL_ERROR_EMULATION
    assert internal.flags == KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
    assert internal.insn_size == 15 and internal.insn_bytes.startswith(b"\x6e\xf4")   # OUTSB; HLT
    assert internal.ndata == 8
    assert internal.data[3:6] == (vmx.EXIT_REASON_IO_INSTRUCTION, g.vcpu.vmread(vmx.EXIT_QUALIFICATION), 0)
    assert Kvm().check_extension(KVM_CAP_INTERNAL_ERROR_DATA) == 1
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rbx") == 6   # and the guest got #UD


def test_unemulated_instruction_from_user_mode_is_only_a_ud_for_the_guest():
    g = KvmGuest(f"mov esi, {MMIO}\nmov dx, 0x80\noutsb\nhlt\n.org 0x100\nmov ebx, 6\nhlt")
    g.set_idt_gate(6, HANDLER)
    g.enter_user_mode(kernel_stack=0x90000)
    g.set(rflags=0x3002)                                     # IOPL 3: OUTSB allowed at CPL 3
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rbx") == 6


def test_intercepted_exception_during_event_delivery_is_simul_ex():
    g = KvmGuest("int 0x40\nhlt")
    g.write(IDT_GPA + 0x40 * 8, struct.pack("<HHBBH", HANDLER & 0xFFFF, 0x7F8, 0, 0x8E, 0))   # bad selector
    g.vcpu.vmwrite(vmx.EXCEPTION_BITMAP, 1 << 13)           # #GP intercepted
    run = g.run()
    assert run.exit_reason == KVM_EXIT_INTERNAL_ERROR
    assert run.internal.suberror == KVM_INTERNAL_ERROR_SIMUL_EX
    vectoring, intr_info, error_code, cpu = run.internal.data
    assert vectoring == vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_SOFT_INTR | 0x40
    assert intr_info & 0xFF == 13 and error_code == 0x7F8 and cpu == 0


def misconfigured(g, gpa):
    """EPT maps gpa write-only: an EPT misconfiguration."""
    g.vm.ept.set_leaf(gpa, g.vm.memslots.get(0).hpa_of(gpa) | vmx.VMX_EPT_WRITABLE_MASK)


def test_exit_during_event_delivery_that_kvm_cannot_resolve_is_delivery_ev():
    g = KvmGuest("int 0x40\nhlt")
    g.set_idt_gate(0x40, HANDLER)
    misconfigured(g, IDT_GPA)
    run = g.run()
    assert run.exit_reason == KVM_EXIT_INTERNAL_ERROR
    assert run.internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV
    vectoring, reason, qual, gpa, cpu = run.internal.data
    assert vectoring == vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_SOFT_INTR | 0x40
    assert (reason, qual, gpa & ~7, cpu) == (vmx.EXIT_REASON_EPT_MISCONFIG, 0, IDT_GPA + 0x200, 0)


def test_an_exit_reason_without_a_handler_is_unexpected():
    g = KvmGuest("mov eax, [0x200000]\nhlt")
    misconfigured(g, 0x200000)
    run = g.run()
    assert run.exit_reason == KVM_EXIT_INTERNAL_ERROR
    assert run.internal.suberror == KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON
    assert run.internal.data == (vmx.EXIT_REASON_EPT_MISCONFIG, 0)
