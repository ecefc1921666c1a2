"""VM-exit handlers: what the hypervisor does for each basic exit reason.  A handler
returns None to re-enter the guest, or a KVM_EXIT_* reason (with kvm_run filled in)
when userspace must act.  CPUID, XSETBV, the kvmclock MSRs and EPT violations on RAM
never get here: kvm/'s compiled half handles them (root_run.c).

RDMSR/WRMSR that KVM does not handle itself reach userspace as KVM_EXIT_X86_RDMSR/WRMSR
only for the reasons KVM_CAP_X86_USER_SPACE_MSR enabled; a userspace local APIC has
its MSRs (IA32_APIC_BASE, the x2APIC range 0x800-0x8ff, ...) sent there by listing
them in the VM's MSR filter (KVM_X86_SET_MSR_FILTER, KVM_MSR_EXIT_REASON_FILTER).
That is also how x2APIC MSRs that APIC virtualization does not virtualize get there:
KVM ignores filters over x2APIC MSRs, its x2APIC being in the kernel; here the local
APIC is always userspace's, and the filter is its way in."""

from kvm import vmx
from kvm._silicon import lib
from kvm.constants import (
    KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN,
    KVM_EXIT_IO_OUT, KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_SET_TPR, KVM_EXIT_SHUTDOWN, KVM_EXIT_X86_RDMSR,
    KVM_EXIT_X86_WRMSR,
    KVM_MSR_EXIT_REASON_FILTER, KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN,
    KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE,
)
from kvm.apicv import APICV_EXIT_HANDLERS
from kvm.cr import set_cr0, set_cr4
from kvm.events import Event
from kvm.hypercall import handle_vmcall
from kvm.internal_errors import (DELIVERY_EXITS, delivery_event_error, emulation_failure, simultaneous_exception,
                                 unexpected_exit)
from kvm.mmio import handle_ept_violation
from kvm.msr_filter import msr_allowed
from kvm.string_io import handle_string_io

RAX, RCX, RDX = 0, 1, 2
EXC_DB, EXC_BP, EXC_UD, EXC_GP, EXC_PF = 1, 3, 6, 13, 14
PFERR_RSVD = 1 << 3


def handle_exit(vcpu, reason: int):
    """A VM exit (not a failed entry): the event whose delivery it interrupted is queued
    again, then the exit's handler runs -- unless the exit is one KVM cannot resolve
    during event delivery (KVM_INTERNAL_ERROR_DELIVERY_EV)."""
    vectoring = vcpu.events.after_exit()
    basic = reason & 0xFFFF
    if vectoring & vmx.INTR_INFO_VALID_MASK and basic not in DELIVERY_EXITS:
        return delivery_event_error(vcpu, vectoring)
    return EXIT_HANDLERS.get(basic, unexpected_exit)(vcpu)


def handle_external_interrupt(vcpu):
    # a kick from another thread (KVM: a signal is pending), otherwise a host interrupt
    return KVM_EXIT_INTR if vcpu.take_kick() else None


def handle_exception_nmi(vcpu):
    """The exception bitmap intercepts #DB and #BP for a debugger (guest_debug.py), and
    every exception but #DB while an event tracer watches (traced_exception, which also
    combines one raised during another event's delivery as the processor would).
    INT1 (ICEBP) is always the guest's: it is skipped and #DB delivered, as KVM does.
    Otherwise an exception raised while another event was delivered is
    KVM_INTERNAL_ERROR_SIMUL_EX (a #PF other than a reserved-bit one would be KVM's to
    resolve; none is intercepted here)."""
    info = vcpu.vmread(vmx.VM_EXIT_INTR_INFO)
    vector, kind = info & 0xFF, info & vmx.INTR_INFO_INTR_TYPE_MASK
    vectoring = vcpu.vmread(vmx.IDT_VECTORING_INFO_FIELD)
    if vectoring & vmx.INTR_INFO_VALID_MASK and vcpu.events.tracer is None:
        error_code = vcpu.vmread(vmx.VM_EXIT_INTR_ERROR_CODE) if info & vmx.INTR_INFO_DELIVER_CODE_MASK else 0
        if not (vector == EXC_PF and not error_code & PFERR_RSVD):
            return simultaneous_exception(vcpu, vectoring, info, error_code)
    if vector == EXC_DB and kind == vmx.INTR_TYPE_PRIV_SW_EXCEPTION:
        vcpu.skip_instruction()
        vcpu.inject_exception(EXC_DB)
        return None
    if vector == EXC_DB:
        return vcpu.guest_debug.handle_db(vcpu.vmread(vmx.EXIT_QUALIFICATION))
    if vector == EXC_BP and vcpu.guest_debug.uses_sw_breakpoints:
        return vcpu.guest_debug.handle_bp()
    if vcpu.events.tracer is not None and kind != vmx.INTR_TYPE_NMI_INTR:
        return traced_exception(vcpu, info)
    return unexpected_exit(vcpu)


def traced_exception(vcpu, info: int):
    """The tracer sees the exception, then the guest gets it as the processor would have
    delivered it, combined with an exception whose delivery it interrupted (#DF, triple
    fault)."""
    kind, vector = info & vmx.INTR_INFO_INTR_TYPE_MASK, info & 0xFF
    error = vcpu.vmread(vmx.VM_EXIT_INTR_ERROR_CODE) if info & vmx.INTR_INFO_DELIVER_CODE_MASK else None
    if kind == vmx.INTR_TYPE_HARD_EXCEPTION and vector == EXC_PF:
        lib.cpu_set_cr2(vcpu.cpu, vcpu.vmread(vmx.EXIT_QUALIFICATION))   # what delivery sets
    length = vcpu.vmread(vmx.VM_EXIT_INSTRUCTION_LEN) if kind != vmx.INTR_TYPE_HARD_EXCEPTION else 0
    event = Event(kind, vector, error, length)
    vcpu.events.trace_exception(event)
    if kind != vmx.INTR_TYPE_HARD_EXCEPTION:
        vcpu.events.queue_event(event)      # INT3, INTO: delivered past the instruction
    elif not vcpu.events.queue_exception(vector, error):
        return KVM_EXIT_SHUTDOWN
    return None


def handle_dr_access(vcpu):
    return vcpu.guest_debug.handle_dr_access(vcpu.vmread(vmx.EXIT_QUALIFICATION))


def handle_monitor_trap_flag(vcpu):
    return vcpu.guest_debug.handle_mtf()


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
    if vcpu.apicv.enabled and vcpu.apicv.interrupt_deliverable():
        return None   # the virtual interrupt is delivered on re-entry: no halt
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
    if not msr_allowed(vcpu.vm.msr_filter, index, KVM_MSR_FILTER_READ):
        return _msr_to_userspace(vcpu, KVM_EXIT_X86_RDMSR, KVM_MSR_EXIT_REASON_FILTER, index)
    value = vcpu.msrs.read(index)
    if value is None:
        return _msr_to_userspace(vcpu, KVM_EXIT_X86_RDMSR, _refusal(vcpu, index), index)
    _complete_rdmsr(vcpu, value)


def handle_wrmsr(vcpu):
    index = vcpu.get_gpr(RCX) & 0xFFFFFFFF
    value = (vcpu.get_gpr(RAX) & 0xFFFFFFFF) | ((vcpu.get_gpr(RDX) & 0xFFFFFFFF) << 32)
    if not msr_allowed(vcpu.vm.msr_filter, index, KVM_MSR_FILTER_WRITE):
        return _msr_to_userspace(vcpu, KVM_EXIT_X86_WRMSR, KVM_MSR_EXIT_REASON_FILTER, index, value)
    if not vcpu.msrs.write(index, value):
        return _msr_to_userspace(vcpu, KVM_EXIT_X86_WRMSR, _refusal(vcpu, index), index, value)
    vcpu.advance_rip()


def _refusal(vcpu, index: int) -> int:
    """Why KVM could not do the access itself: it does not know the MSR, or it refused."""
    return KVM_MSR_EXIT_REASON_INVAL if vcpu.msrs.knows(index) else KVM_MSR_EXIT_REASON_UNKNOWN


def _complete_rdmsr(vcpu, value: int):
    vcpu.set_gprs({RAX: value & 0xFFFFFFFF, RDX: (value >> 32) & 0xFFFFFFFF})
    vcpu.advance_rip()


def _msr_to_userspace(vcpu, exit_reason: int, reason: int, index: int, data: int = 0):
    """KVM_EXIT_X86_RDMSR/WRMSR when userspace asked for ``reason`` (KVM_CAP_X86_USER_SPACE_MSR);
    else #GP.  The next run() completes the instruction, or #GPs if userspace set msr.error."""
    if not vcpu.vm.user_space_msr & reason:
        vcpu.inject_exception(EXC_GP, 0)
        return None
    msr = vcpu.kvm_run.msr
    msr.error, msr.reason, msr.index, msr.data = 0, reason, index, data

    def complete():
        if msr.error:
            vcpu.inject_exception(EXC_GP, 0)
        elif exit_reason == KVM_EXIT_X86_RDMSR:
            _complete_rdmsr(vcpu, msr.data)
        else:
            vcpu.advance_rip()
    vcpu.completion = complete
    return exit_reason


def handle_cr_access(vcpu):
    """MOV to CR0/CR4 touching a host-owned bit: carried out by the hypervisor (kvm/cr.py),
    the guest's value kept in the read shadow.  CR8 is the userspace local APIC's TPR
    (bits 7:4): KVM keeps it for the guest, passes it in kvm_run.cr8, and exits with
    KVM_EXIT_SET_TPR when the guest lowers it, since an interrupt may now be deliverable."""
    qual = vcpu.vmread(vmx.EXIT_QUALIFICATION)
    cr, access, gpr = qual & 15, (qual >> 4) & 3, (qual >> 8) & 15
    if access == 0 and cr in (0, 4, 8):
        value = vcpu.vmread(vmx.GUEST_RSP) if gpr == 4 else vcpu.get_gpr(gpr)
        if cr == 8:
            lowered = value < vcpu.cr8
            vcpu.cr8 = value
            vcpu.advance_rip()
            return KVM_EXIT_SET_TPR if lowered else None
        if not vcpu.in_64bit_mode():
            value &= 0xFFFFFFFF      # the high half of the register is not the operand
        if not (set_cr0 if cr == 0 else set_cr4)(vcpu, value):
            vcpu.inject_exception(EXC_GP, 0)
            return None
        vcpu.advance_rip()
        return None
    if access == 1 and cr == 8:
        if gpr == 4:
            vcpu.vmwrite(vmx.GUEST_RSP, vcpu.cr8)
        else:
            vcpu.set_gpr(gpr, vcpu.cr8)
        vcpu.advance_rip()
        return None
    if access == 2:   # CLTS
        vcpu.set_guest_cr0(vcpu.guest_cr0() & ~8)
        vcpu.advance_rip()
        return None
    return emulation_failure(vcpu)


def inject_ud(vcpu):
    vcpu.inject_exception(EXC_UD)


def skip_instruction(vcpu):
    vcpu.advance_rip()


def handle_rdpmc(vcpu):
    vcpu.inject_exception(EXC_GP, 0)


EXIT_HANDLERS = {
    vmx.EXIT_REASON_EXCEPTION_NMI: handle_exception_nmi,
    vmx.EXIT_REASON_EXTERNAL_INTERRUPT: handle_external_interrupt,
    vmx.EXIT_REASON_TRIPLE_FAULT: handle_triple_fault,
    vmx.EXIT_REASON_INTERRUPT_WINDOW: handle_interrupt_window,
    vmx.EXIT_REASON_NMI_WINDOW: handle_nmi_window,
    vmx.EXIT_REASON_HLT: handle_hlt,
    vmx.EXIT_REASON_INVD: skip_instruction,
    vmx.EXIT_REASON_RDPMC: handle_rdpmc,
    vmx.EXIT_REASON_VMCALL: handle_vmcall,
    vmx.EXIT_REASON_CR_ACCESS: handle_cr_access,
    vmx.EXIT_REASON_DR_ACCESS: handle_dr_access,
    vmx.EXIT_REASON_MONITOR_TRAP_FLAG: handle_monitor_trap_flag,
    vmx.EXIT_REASON_IO_INSTRUCTION: handle_io,
    vmx.EXIT_REASON_MSR_READ: handle_rdmsr,
    vmx.EXIT_REASON_MSR_WRITE: handle_wrmsr,
    vmx.EXIT_REASON_MWAIT_INSTRUCTION: skip_instruction,
    vmx.EXIT_REASON_MONITOR_INSTRUCTION: skip_instruction,
    vmx.EXIT_REASON_PAUSE_INSTRUCTION: skip_instruction,
    vmx.EXIT_REASON_EPT_VIOLATION: handle_ept_violation,
    vmx.EXIT_REASON_WBINVD: skip_instruction,
    **APICV_EXIT_HANDLERS,
    **{reason: inject_ud for reason in (
        vmx.EXIT_REASON_VMCLEAR, vmx.EXIT_REASON_VMLAUNCH, vmx.EXIT_REASON_VMPTRLD,
        vmx.EXIT_REASON_VMPTRST, vmx.EXIT_REASON_VMREAD, vmx.EXIT_REASON_VMRESUME,
        vmx.EXIT_REASON_VMWRITE, vmx.EXIT_REASON_VMOFF, vmx.EXIT_REASON_VMON,
        vmx.EXIT_REASON_INVEPT, vmx.EXIT_REASON_INVVPID)},
}
