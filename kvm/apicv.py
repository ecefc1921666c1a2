"""APIC virtualization for a local APIC emulated in userspace, the way KVM drives the
processor's APICv for its own local APIC.

The vCPU's virtual-APIC page (`VCPU.apic_page`) is the local APIC's register file, at
the architectural offsets; userspace keeps its APIC there.  With the feature enabled the
processor serves the guest's reads of the APIC registers from that page and virtualizes
TPR writes, EOIs of edge-triggered vectors and self-IPIs, and delivers interrupts from
its IRR, all without VM exits.  Before each VM entry the hypervisor sets RVI from the
highest IRR bit (KVM's hwapic_irr_update), so userspace raises an interrupt by setting
its IRR bit in the page (`post_interrupt`) and kicking the vCPU.  What the processor
leaves to software reaches userspace as exits:

* an APIC-write VM exit (a register write with side effects: ICR, LVTs, timer, ...)
  -> KVM_EXIT_MMIO, a write of the value now in the page; nothing to complete; in x2APIC
  mode (a SELF IPI of an illegal vector) KVM_EXIT_X86_WRMSR, already completed;
* an EOI-induced VM exit (the EOI-exit bitmap bit of the vector is set: level-triggered
  interrupts) -> KVM_EXIT_IOAPIC_EOI with kvm_run.eoi.vector;
* an APIC-access VM exit (an access the processor does not virtualize) -> the instruction
  is emulated and its access is KVM_EXIT_MMIO, as for any MMIO;
* x2APIC mode: RDMSR/WRMSR of x2APIC MSRs that are not virtualized ->
  KVM_EXIT_X86_RDMSR/WRMSR (kvm_run.msr)."""

from kvm import vmx
from kvm._silicon import lib
from kvm.constants import (
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IOAPIC_EOI, KVM_EXIT_MMIO, KVM_EXIT_X86_WRMSR, KVM_INTERNAL_ERROR_DELIVERY_EV,
    KVM_INTERNAL_ERROR_EMULATION, KVM_MSR_EXIT_REASON_UNKNOWN,
)
from kvm.errors import KvmError
from kvm.mmio import emulate_mmio
from kvm.vmcs_setup import set_msr_intercept

APIC_DEFAULT_BASE = 0xFEE00000
APIC_BASE_EXTD = 1 << 10                      # IA32_APIC_BASE: x2APIC mode
APIC_BASE_ADDRESS = ((1 << 40) - 1) & ~0xFFF
APIC_TPR = 0x080
APIC_PPR = 0x0A0
APIC_ISR = 0x100
APIC_IRR = 0x200
X2APIC_MSRS = range(0x800, 0x900)
X2APIC_TPR, X2APIC_EOI, X2APIC_TMCCT, X2APIC_SELF_IPI = 0x808, 0x80B, 0x839, 0x83F
# The x2APIC registers every local APIC can read from its page (KVM's
# kvm_lapic_readable_reg_mask, less the optional LVT CMCI and the timer's current count):
# ID, version, TPR, PPR, LDR, SVR, ISR, TMR, IRR, ESR, ICR, the six LVTs, initial count, DCR
X2APIC_READABLE = frozenset([0x802, 0x803, 0x808, 0x80A, 0x80D, 0x80F, *range(0x810, 0x829), 0x830,
                             *range(0x832, 0x839), 0x83E])
RFLAGS_IF = 1 << 9
APIC_ACCESS_DURING_EVENT_DELIVERY = (3, 10)

APICV_CONTROLS = (vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES | vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE |
                  vmx.SECONDARY_EXEC_APIC_REGISTER_VIRT | vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY)


class ApicVirtualization:
    """One vCPU's virtual-APIC page and APICv controls."""

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.page_hpa = vcpu.vm.hostmem.alloc_page()
        self.page = vcpu.vm.hostmem.page_view(self.page_hpa)
        self._words = self.page.cast("I")
        self.enabled = False
        self.x2apic = False
        self.base = APIC_DEFAULT_BASE
        self.eoi_exit_bitmap = 0

    def enable(self, apic_access_gpa: int, x2apic: bool):
        v = self.vcpu
        if apic_access_gpa & 0xFFF:
            raise KvmError("the APIC-access address must be page aligned")
        allowed2 = v.rdmsr_root(vmx.MSR_IA32_VMX_PROCBASED_CTLS2) >> 32
        allowed = v.rdmsr_root(vmx.MSR_IA32_VMX_TRUE_PROCBASED_CTLS) >> 32
        if not allowed & vmx.CPU_BASED_TPR_SHADOW or APICV_CONTROLS & ~allowed2:
            raise KvmError("the processor does not implement APIC virtualization")
        self.base = apic_access_gpa
        self.x2apic = x2apic
        proc = v.vmread(vmx.CPU_BASED_VM_EXEC_CONTROL)
        proc &= ~(vmx.CPU_BASED_CR8_LOAD_EXITING | vmx.CPU_BASED_CR8_STORE_EXITING)
        v.vmwrite(vmx.CPU_BASED_VM_EXEC_CONTROL, proc | vmx.CPU_BASED_TPR_SHADOW |
                  vmx.CPU_BASED_ACTIVATE_SECONDARY_CONTROLS)
        proc2 = v.vmread(vmx.SECONDARY_VM_EXEC_CONTROL) & ~APICV_CONTROLS
        proc2 |= vmx.SECONDARY_EXEC_APIC_REGISTER_VIRT | vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY
        if x2apic:
            proc2 |= vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE
        else:
            proc2 |= vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES
            v.vmwrite(vmx.APIC_ACCESS_ADDR, v.vm.map_apic_access_page(apic_access_gpa))
        v.vmwrite(vmx.SECONDARY_VM_EXEC_CONTROL, proc2)
        v.vmwrite(vmx.VIRTUAL_APIC_PAGE_ADDR, self.page_hpa)
        v.vmwrite(vmx.TPR_THRESHOLD, 0)
        self.set_x2apic_intercepts()
        self.enabled = True
        self.set_eoi_exit_bitmap(self.eoi_exit_bitmap)

    def set_x2apic_intercepts(self):
        """In x2APIC mode the guest reads the readable x2APIC registers from the page (the
        timer's current count, which only userspace knows, and the MSRs that must #GP
        exit) and writes TPR, EOI and SELF IPI without exits; otherwise every x2APIC MSR
        access exits (#GP)."""
        x2apic = self.x2apic
        for msr in X2APIC_MSRS:
            set_msr_intercept(self.vcpu, msr, False, not x2apic or msr not in X2APIC_READABLE)
            set_msr_intercept(self.vcpu, msr, True,
                              not x2apic or msr not in (X2APIC_TPR, X2APIC_EOI, X2APIC_SELF_IPI))

    def apic_base_changed(self, old: int, new: int):
        """IA32_APIC_BASE was written (KVM's kvm_lapic_set_base): the virtualization
        follows the local APIC into x2APIC mode and back, and the xAPIC page where it moves."""
        if not self.enabled:
            return
        x2apic = bool(new & APIC_BASE_EXTD)
        base = new & APIC_BASE_ADDRESS
        if x2apic != self.x2apic or (not x2apic and base != self.base):
            self.enable(base if not x2apic else self.base, x2apic)

    def set_eoi_exit_bitmap(self, bits: int):
        self.eoi_exit_bitmap = bits & ((1 << 256) - 1)
        if self.enabled:
            for k, field in enumerate((vmx.EOI_EXIT_BITMAP0, vmx.EOI_EXIT_BITMAP1,
                                       vmx.EOI_EXIT_BITMAP2, vmx.EOI_EXIT_BITMAP3)):
                self.vcpu.vmwrite(field, (self.eoi_exit_bitmap >> (64 * k)) & ((1 << 64) - 1))

    def post_interrupt(self, vector: int):
        """Set the vector's IRR bit with a locked OR (safe while the processor runs) and
        interrupt the processor, which re-enters the guest with the new RVI at once (KVM
        kicks a vCPU for an interrupt the same way); a vCPU that userspace holds after
        KVM_EXIT_HLT is userspace's to wake."""
        self.vcpu.vm.hostmem.atomic_or32(self.page_hpa + APIC_IRR + ((vector & 0xE0) >> 1),
                                         1 << (vector & 31))
        lib.cpu_kick(self.vcpu.cpu)

    def _highest(self, base: int) -> int:
        """The highest vector set in the page's IRR or ISR, or -1."""
        for k in range(7, -1, -1):
            word = self._words[(base >> 2) + 4 * k]
            if word:
                return 32 * k + word.bit_length() - 1
        return -1

    def highest_irr(self) -> int:
        return self._highest(APIC_IRR)

    def before_entry(self):
        """RVI is the highest IRR vector, so that VM entry evaluates it (hwapic_irr_update),
        and SVI the highest ISR vector (the processor keeps it so; this also takes in an
        ISR that userspace restored, as hwapic_isr_update does)."""
        status = max(self.highest_irr(), 0) | max(self._highest(APIC_ISR), 0) << 8
        if self.vcpu.vmread(vmx.GUEST_INTR_STATUS) != status:
            self.vcpu.vmwrite(vmx.GUEST_INTR_STATUS, status)

    def interrupt_deliverable(self) -> bool:
        """An interrupt in IRR outranks the processor priority and the guest takes
        interrupts: HLT would be left at once."""
        irr = self.highest_irr()
        ppr = self._words[APIC_PPR >> 2] & 0xFF
        return irr >= 0 and irr >> 4 > ppr >> 4 and bool(self.vcpu.vmread(vmx.GUEST_RFLAGS) & RFLAGS_IF)

    def read32(self, offset: int) -> int:
        return self._words[offset >> 2]


# ---- exit handlers -------------------------------------------------------------------------

def handle_apic_access(vcpu):
    """An access that is not virtualized: emulate the instruction; its access to the APIC
    page is MMIO for userspace."""
    qual = vcpu.vmread(vmx.EXIT_QUALIFICATION)
    kind = qual & vmx.APIC_ACCESS_TYPE
    if kind in (vmx.TYPE_LINEAR_APIC_INST_READ, vmx.TYPE_LINEAR_APIC_INST_WRITE):
        vcpu.mmio.gpa = vcpu.apicv.base + (qual & vmx.APIC_ACCESS_OFFSET)
        vcpu.mmio.has_read_data = 0
        return emulate_mmio(vcpu)
    during_delivery = (kind >> 12) in APIC_ACCESS_DURING_EVENT_DELIVERY
    vcpu.kvm_run.internal.suberror = KVM_INTERNAL_ERROR_DELIVERY_EV if during_delivery \
        else KVM_INTERNAL_ERROR_EMULATION
    vcpu.kvm_run.internal.data = (qual,)
    return KVM_EXIT_INTERNAL_ERROR


def handle_apic_write(vcpu):
    """A register write whose side effects userspace performs: the write already happened
    (the exit is trap-like), so userspace sees it as a completed MMIO write of the whole
    register (a write to part of one is a write of it, as KVM's handle_apic_write has it)."""
    offset = vcpu.vmread(vmx.EXIT_QUALIFICATION) & vmx.APIC_ACCESS_OFFSET & ~0xF
    if vcpu.apicv.x2apic:
        msr = vcpu.kvm_run.msr
        msr.error, msr.reason = 0, KVM_MSR_EXIT_REASON_UNKNOWN
        msr.index, msr.data = X2APIC_MSRS.start + (offset >> 4), vcpu.apicv.read32(offset)
        return KVM_EXIT_X86_WRMSR
    mmio = vcpu.kvm_run.mmio
    mmio.phys_addr = vcpu.apicv.base + offset
    mmio.len = 4
    mmio.is_write = 1
    mmio.data = memoryview(vcpu.io_page)[:8]
    mmio.data[:8] = vcpu.apicv.read32(offset).to_bytes(8, "little")
    return KVM_EXIT_MMIO


def handle_eoi_induced(vcpu):
    vcpu.kvm_run.eoi.vector = vcpu.vmread(vmx.EXIT_QUALIFICATION) & 0xFF
    return KVM_EXIT_IOAPIC_EOI


def handle_tpr_below_threshold(vcpu):
    return None   # only without virtual-interrupt delivery; the TPR threshold stays 0


APICV_EXIT_HANDLERS = {
    vmx.EXIT_REASON_APIC_ACCESS: handle_apic_access,
    vmx.EXIT_REASON_APIC_WRITE: handle_apic_write,
    vmx.EXIT_REASON_EOI_INDUCED: handle_eoi_induced,
    vmx.EXIT_REASON_TPR_BELOW_THRESHOLD: handle_tpr_below_threshold,
}
