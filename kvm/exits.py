"""VM-exit handlers: what the hypervisor does for each basic exit reason.  A handler
returns None to re-enter the guest, or a KVM_EXIT_* reason (with kvm_run filled in)
when userspace must act.  CPUID, XSETBV, the kvmclock MSRs and EPT violations on RAM
never get here: kvm/'s compiled half handles them (root_run.c)."""

from kvm import vmx
from kvm.constants import (
    KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN,
    KVM_EXIT_IO_OUT, KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_SHUTDOWN,
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
)
from kvm.mmio import handle_ept_violation
from kvm.string_io import handle_string_io

RAX, RCX, RDX = 0, 1, 2
EXC_UD, EXC_GP = 6, 13
KVM_ENOSYS = 1000


def internal_error(vcpu, suberror: int, *data):
    vcpu.kvm_run.internal.suberror = suberror
    vcpu.kvm_run.internal.data = data
    return KVM_EXIT_INTERNAL_ERROR


def handle_unexpected_exit(vcpu):
    return internal_error(vcpu, KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
                          vcpu.kvm_run.hardware_exit_reason)


def handle_external_interrupt(vcpu):
    # a kick from another thread (KVM: a signal is pending), otherwise a host interrupt
    return KVM_EXIT_INTR if vcpu.take_kick() else None


def handle_triple_fault(vcpu):
    return KVM_EXIT_SHUTDOWN


def handle_interrupt_window(vcpu):
    """The guest can take an interrupt: ours is injected on re-entry (events.py), and
    userspace hears of it when it asked and has nothing queued."""
    if vcpu.kvm_run.request_interrupt_window and vcpu.events.interrupt_injectable_now():
        return KVM_EXIT_IRQ_WINDOW_OPEN
    return None


def handle_nmi_window(vcpu):
    return None   # the pending NMI is injected on re-entry


def handle_hlt(vcpu):
    vcpu.advance_rip()
    return KVM_EXIT_HLT


def handle_io(vcpu):
    qual = vcpu.vmread(vmx.EXIT_QUALIFICATION)
    size = (qual & 7) + 1
    is_in = bool(qual & 8)
    if qual & 16:
        return handle_string_io(vcpu, qual)
    io = vcpu.kvm_run.io
    io.direction = KVM_EXIT_IO_IN if is_in else KVM_EXIT_IO_OUT
    io.size = size
    io.port = (qual >> 16) & 0xFFFF
    io.count = 1
    io.data = memoryview(vcpu.io_page)[:size]
    vcpu.stats.io_ports[io.port] += 1
    if is_in:
        def complete_in():
            value = int.from_bytes(io.data[:size], "little")
            rax = vcpu.get_gpr(RAX)
            if size == 4:
                rax = value              # a 32-bit register write zero-extends
            else:
                mask = (1 << (8 * size)) - 1
                rax = (rax & ~mask) | value
            vcpu.set_gpr(RAX, rax)
        vcpu.completion = complete_in
    else:
        io.data[:size] = (vcpu.get_gpr(RAX) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    vcpu.advance_rip()
    return KVM_EXIT_IO


def handle_rdmsr(vcpu):
    index = vcpu.get_gpr(RCX) & 0xFFFFFFFF
    value = vcpu.msrs.read(index)
    if value is None:
        vcpu.inject_exception(EXC_GP, 0)
        return None
    vcpu.set_gprs({RAX: value & 0xFFFFFFFF, RDX: value >> 32})
    vcpu.advance_rip()


def handle_wrmsr(vcpu):
    index = vcpu.get_gpr(RCX) & 0xFFFFFFFF
    value = (vcpu.get_gpr(RAX) & 0xFFFFFFFF) | ((vcpu.get_gpr(RDX) & 0xFFFFFFFF) << 32)
    if not vcpu.msrs.write(index, value):
        vcpu.inject_exception(EXC_GP, 0)
        return None
    vcpu.advance_rip()


def handle_cr_access(vcpu):
    """MOV to CR0/CR4 touching a host-owned bit: keep the guest's value in the shadow."""
    qual = vcpu.vmread(vmx.EXIT_QUALIFICATION)
    cr, access, gpr = qual & 15, (qual >> 4) & 3, (qual >> 8) & 15
    if access == 0 and cr in (0, 4):
        value = vcpu.vmread(vmx.GUEST_RSP) if gpr == 4 else vcpu.get_gpr(gpr)
        if cr == 0:
            vcpu.set_guest_cr0(value & 0xFFFFFFFF)
        else:
            vcpu.set_guest_cr4(value)
        vcpu.advance_rip()
        return None
    if access == 2:   # CLTS
        vcpu.set_guest_cr0(vcpu.guest_cr0() & ~8)
        vcpu.advance_rip()
        return None
    return internal_error(vcpu, KVM_INTERNAL_ERROR_EMULATION, qual)


def handle_vmcall(vcpu):
    vcpu.set_gpr(RAX, -KVM_ENOSYS)
    vcpu.advance_rip()


def inject_ud(vcpu):
    vcpu.inject_exception(EXC_UD)


def skip_instruction(vcpu):
    vcpu.advance_rip()


def handle_rdpmc(vcpu):
    vcpu.inject_exception(EXC_GP, 0)


EXIT_HANDLERS = {
    vmx.EXIT_REASON_EXTERNAL_INTERRUPT: handle_external_interrupt,
    vmx.EXIT_REASON_TRIPLE_FAULT: handle_triple_fault,
    vmx.EXIT_REASON_INTERRUPT_WINDOW: handle_interrupt_window,
    vmx.EXIT_REASON_NMI_WINDOW: handle_nmi_window,
    vmx.EXIT_REASON_HLT: handle_hlt,
    vmx.EXIT_REASON_INVD: skip_instruction,
    vmx.EXIT_REASON_RDPMC: handle_rdpmc,
    vmx.EXIT_REASON_VMCALL: handle_vmcall,
    vmx.EXIT_REASON_CR_ACCESS: handle_cr_access,
    vmx.EXIT_REASON_IO_INSTRUCTION: handle_io,
    vmx.EXIT_REASON_MSR_READ: handle_rdmsr,
    vmx.EXIT_REASON_MSR_WRITE: handle_wrmsr,
    vmx.EXIT_REASON_MWAIT_INSTRUCTION: skip_instruction,
    vmx.EXIT_REASON_MONITOR_INSTRUCTION: skip_instruction,
    vmx.EXIT_REASON_PAUSE_INSTRUCTION: skip_instruction,
    vmx.EXIT_REASON_EPT_VIOLATION: handle_ept_violation,
    vmx.EXIT_REASON_WBINVD: skip_instruction,
    **{reason: inject_ud for reason in (
        vmx.EXIT_REASON_VMCLEAR, vmx.EXIT_REASON_VMLAUNCH, vmx.EXIT_REASON_VMPTRLD,
        vmx.EXIT_REASON_VMPTRST, vmx.EXIT_REASON_VMREAD, vmx.EXIT_REASON_VMRESUME,
        vmx.EXIT_REASON_VMWRITE, vmx.EXIT_REASON_VMOFF, vmx.EXIT_REASON_VMON,
        vmx.EXIT_REASON_INVEPT, vmx.EXIT_REASON_INVVPID)},
}
