"""KVM_EXIT_INTERNAL_ERROR with KVM's suberrors and the kvm_run.internal.data each one
carries (arch/x86/kvm/vmx/vmx.c, x86.c).  The "cpu" KVM reports (the host CPU the
vCPU last entered on) is the vCPU's id here, as in KVM_EXIT_FAIL_ENTRY."""

from kvm import vmx
from kvm.constants import (
    KVM_EXIT_INTERNAL_ERROR, KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
)
from kvm.translate import PageFault, UnbackedPagingStructure, guest_cpl, translate

EXC_UD = 6
MAX_INSN = 15
# exits that may come while an event is delivered and that KVM handles (the event is
# injected again); after any other, KVM gives up with KVM_INTERNAL_ERROR_DELIVERY_EV
DELIVERY_EXITS = frozenset((vmx.EXIT_REASON_EXCEPTION_NMI, vmx.EXIT_REASON_EPT_VIOLATION,
                            vmx.EXIT_REASON_APIC_ACCESS, vmx.EXIT_REASON_TASK_SWITCH))


def _internal_error(vcpu, suberror: int, *data: int) -> int:
    vcpu.kvm_run.internal.suberror = suberror
    vcpu.kvm_run.internal.data = tuple(data)
    return KVM_EXIT_INTERNAL_ERROR


def unexpected_exit(vcpu) -> int:
    """An exit reason the hypervisor has no handler for: data = exit reason, cpu."""
    return _internal_error(vcpu, KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
                           vcpu.vmread(vmx.VM_EXIT_REASON), vcpu.id)


def delivery_event_error(vcpu, vectoring_info: int, mmio: bool = False) -> int:
    """An exit during event delivery that KVM cannot resolve: an exit it does not handle
    then, or MMIO (the stack or IDT outside RAM: no instruction to emulate).  data =
    IDT-vectoring information, exit reason, exit qualification, the guest-physical
    address (MMIO, an EPT misconfiguration), cpu."""
    reason = vcpu.vmread(vmx.VM_EXIT_REASON)
    data = [vectoring_info, reason, vcpu.vmread(vmx.EXIT_QUALIFICATION)]
    if mmio or reason & 0xFFFF == vmx.EXIT_REASON_EPT_MISCONFIG:
        data.append(vcpu.vmread(vmx.GUEST_PHYSICAL_ADDRESS))
    return _internal_error(vcpu, KVM_INTERNAL_ERROR_DELIVERY_EV, *data, vcpu.id)


def simultaneous_exception(vcpu, vectoring_info: int, intr_info: int, error_code: int) -> int:
    """An intercepted exception raised while an event was being delivered: data =
    IDT-vectoring information, exit interruption information, its error code, cpu."""
    return _internal_error(vcpu, KVM_INTERNAL_ERROR_SIMUL_EX, vectoring_info, intr_info, error_code, vcpu.id)


def _instruction_bytes(vcpu) -> bytes:
    """The bytes at the guest's CS:RIP, as many of the 15 as guest RAM holds."""
    start = (vcpu.vmread(vmx.GUEST_CS_BASE) + vcpu.vmread(vmx.GUEST_RIP)) & ((1 << 64) - 1)
    out = b""
    while len(out) < MAX_INSN:
        gla = start + len(out)
        try:
            gpa = translate(vcpu, gla)
        except (PageFault, UnbackedPagingStructure):
            break
        chunk = vcpu.vm.read_guest(gpa, min(MAX_INSN - len(out), 0x1000 - (gla & 0xFFF)))
        if chunk is None:
            break
        out += chunk
    return out


def _exit_info(vcpu):
    """KVM's vmx_get_exit_info: exit reason, qualification, IDT-vectoring information,
    interruption information and its error code."""
    intr_info = vcpu.vmread(vmx.VM_EXIT_INTR_INFO)
    has_code = intr_info & vmx.INTR_INFO_VALID_MASK and intr_info & vmx.INTR_INFO_DELIVER_CODE_MASK
    return (vcpu.vmread(vmx.VM_EXIT_REASON), vcpu.vmread(vmx.EXIT_QUALIFICATION),
            vcpu.vmread(vmx.IDT_VECTORING_INFO_FIELD), intr_info,
            vcpu.vmread(vmx.VM_EXIT_INTR_ERROR_CODE) if has_code else 0)


def emulation_failure(vcpu):
    """The instruction cannot be emulated (KVM's handle_emulation_failure): #UD is queued
    for the guest, and from CPL 0 userspace hears of it through kvm_run.emulation_failure
    (flags, the instruction's bytes, then the exit information); from CPL > 0 the guest
    just takes the #UD."""
    vcpu.inject_exception(EXC_UD)
    if guest_cpl(vcpu) != 0:
        return None
    insn = _instruction_bytes(vcpu)
    data = [0]
    if insn:
        data[0] = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
        packed = bytes([len(insn)]) + insn.ljust(MAX_INSN, b"\x90")
        data += [int.from_bytes(packed[:8], "little"), int.from_bytes(packed[8:], "little")]
    return _internal_error(vcpu, KVM_INTERNAL_ERROR_EMULATION, *data, *_exit_info(vcpu))
