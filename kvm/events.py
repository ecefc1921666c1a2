"""The events a vCPU has to take (KVM's vcpu->arch exception/interrupt/nmi state) and
their injection through the VM-entry interruption-information field:

* an exception queued by the hypervisor (#GP from an MSR, #PF from string I/O, ...);
* an event whose delivery a VM exit interrupted (IDT-vectoring information), injected
  again as it was, ahead of anything new;
* NMIs (KVM_NMI): injected when neither NMI, STI nor MOV-SS blocking is in effect,
  otherwise NMI-window exiting brings the vCPU back when the guest unblocks them (IRET);
* the external interrupt of KVM_INTERRUPT: injected when RFLAGS.IF is set and there is no
  STI/MOV-SS shadow, otherwise interrupt-window exiting waits for the guest to allow it;
  a debugger's KVM_GUESTDBG_BLOCKIRQ holds it back altogether.

One event is injected per VM entry; the window exits bring the vCPU back for the next.
An exception queued while another is still to be delivered combines with it as the
processor would (KVM's kvm_multiple_exception): into #DF, or a triple fault.
A triple fault that userspace made pending (KVM_SET_VCPU_EVENTS with
KVM_CAP_X86_TRIPLE_FAULT_EVENT) ends the next KVM_RUN with KVM_EXIT_SHUTDOWN instead.

A tracer (``VCPU.set_event_trace``, a pyhv extension in the spirit of KVM's
kvm_inj_exception and kvm_inj_virq tracepoints) sees every interrupt and NMI injected
and every exception the exception bitmap intercepts, before the guest takes it."""

from dataclasses import dataclass

from kvm import vmx
from kvm.constants import (KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_PAYLOAD,
                           KVM_VCPUEVENT_VALID_SHADOW, KVM_VCPUEVENT_VALID_SIPI_VECTOR, KVM_VCPUEVENT_VALID_SMM,
                           KVM_VCPUEVENT_VALID_TRIPLE_FAULT, KVM_X86_SHADOW_INT_MOV_SS, KVM_X86_SHADOW_INT_STI)
from kvm.errors import KvmError
from kvm.structs import ExceptionState, NmiState, TripleFaultState, VcpuEvents

BLOCKING_STI, BLOCKING_MOV_SS, BLOCKING_NMI = 1, 2, 8
EXC_NMI, EXC_BP, EXC_OF, EXC_DF, EXC_PF = 2, 3, 4, 8, 14
CONTRIBUTORY = {0, 10, 11, 12, 13}    # #DE #TS #NP #SS #GP
NOT_FAULTS = {1, 3, 4, 8, 18}         # traps (#DB #BP #OF) and aborts (#DF #MC)
VALID_FLAGS = (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW |
               KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
RFLAGS_IF = 1 << 9
RFLAGS_RF = 1 << 16
CR0_PE = 1 << 0
MAX_PENDING_NMIS = 2     # one being handled and one latched, as KVM keeps them


@dataclass
class Event:
    """One event as the interruption-information field describes it."""
    type: int                 # vmx.INTR_TYPE_*
    vector: int
    error_code: int = None    # None: no error code
    instruction_len: int = 0  # software interrupts and exceptions

    def info(self) -> int:
        info = vmx.INTR_INFO_VALID_MASK | self.type | self.vector
        return info | (vmx.INTR_INFO_DELIVER_CODE_MASK if self.error_code is not None else 0)


class Events:
    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.exception = None      # Event: a hardware or software exception to deliver
        self.reinject = None       # Event: an interrupt or NMI whose delivery was cut short
        self.interrupt = None      # vector from KVM_INTERRUPT, waiting for IF
        self.nmi_pending = 0
        self.soft_exception_len = 1   # of the last INT3/INTO that exited, for its reinjection
        self.triple_fault_pending = False
        self.tracer = None            # callable(event, vcpu, interrupted) or None

    # ---- requests ------------------------------------------------------------------------

    def _exception(self, vector: int, error_code=None) -> Event:
        """#BP and #OF are software exceptions, delivered past their instruction."""
        if vector in (EXC_BP, EXC_OF):
            return Event(vmx.INTR_TYPE_SOFT_EXCEPTION, vector, instruction_len=self.soft_exception_len)
        return Event(vmx.INTR_TYPE_HARD_EXCEPTION, vector, error_code)

    def queue_exception(self, vector: int, error_code=None) -> bool:
        """Queue an exception; False when it makes a triple fault (the exception still to
        be delivered was a #DF), which leaves nothing queued.  A software interrupt whose
        delivery it cut short is forgotten: its instruction runs again when the handler
        returns to it."""
        if self.reinject is not None and self.reinject.type == vmx.INTR_TYPE_SOFT_INTR:
            self.reinject = None
        first = self.exception
        if first is not None and first.type == vmx.INTR_TYPE_HARD_EXCEPTION:
            if first.vector == EXC_DF:
                self.exception = None
                return False
            if _double_fault(first.vector, vector):
                vector, error_code = EXC_DF, 0
        self.exception = self._exception(vector, error_code)
        return True

    def queue_event(self, event: Event):
        """An exception exactly as given (a software exception with its length)."""
        self.exception = event

    def queue_interrupt(self, vector: int) -> bool:
        """False when an interrupt is already on its way."""
        if self.interrupt is not None or (self.reinject is not None and self.reinject.type != vmx.INTR_TYPE_NMI_INTR):
            return False
        self.interrupt = vector & 0xFF
        return True

    def queue_nmi(self):
        self.nmi_pending = min(self.nmi_pending + 1, MAX_PENDING_NMIS)

    def queued_interrupt(self):
        """The external interrupt on its way to the guest (KVM's interrupt.injected that
        is not soft): KVM_INTERRUPT's, or one an exit cut short; or None."""
        if self.reinject is not None and self.reinject.type == vmx.INTR_TYPE_EXT_INTR:
            return self.reinject.vector
        return self.interrupt

    def inject_interrupt(self, vector: int):
        """An external interrupt already taken from the interrupt controller: delivered at
        the next entry, as it is (KVM_SET_SREGS's interrupt_bitmap)."""
        self.interrupt = None
        self.reinject = Event(vmx.INTR_TYPE_EXT_INTR, vector & 0xFF)

    # ---- guest state -----------------------------------------------------------------------

    def _blocking(self) -> int:
        return self.vcpu.vmread(vmx.GUEST_INTERRUPTIBILITY_INFO)

    def guest_allows_interrupt(self) -> bool:
        return bool(self.vcpu.vmread(vmx.GUEST_RFLAGS) & RFLAGS_IF) and \
            not self._blocking() & (BLOCKING_STI | BLOCKING_MOV_SS)

    def nmi_allowed(self) -> bool:
        return not self._blocking() & (BLOCKING_STI | BLOCKING_MOV_SS | BLOCKING_NMI)

    def set_nmi_masked(self, masked: bool):
        blocking = self._blocking() & ~BLOCKING_NMI
        self.vcpu.vmwrite(vmx.GUEST_INTERRUPTIBILITY_INFO, blocking | (BLOCKING_NMI if masked else 0))

    def interrupt_allowed(self) -> bool:
        """RFLAGS.IF, no interrupt shadow, and no debugger asking for none (BLOCKIRQ)."""
        return self.guest_allows_interrupt() and not self.vcpu.guest_debug.blocks_interrupts

    def interrupt_injectable_now(self) -> bool:
        """kvm_run.ready_for_interrupt_injection: KVM_INTERRUPT would be taken at once."""
        return self.interrupt is None and self.reinject is None and self.interrupt_allowed()

    # ---- around VM entry and exit ----------------------------------------------------------

    def after_exit(self) -> int:
        """Take back an event whose delivery the exit interrupted (vmx_complete_interrupts);
        returns the IDT-vectoring information."""
        info = self.vcpu.vmread(vmx.IDT_VECTORING_INFO_FIELD)
        if not info & vmx.INTR_INFO_VALID_MASK:
            return info
        event = Event(info & (7 << 8), info & 0xFF)
        if info & vmx.INTR_INFO_DELIVER_CODE_MASK:
            event.error_code = self.vcpu.vmread(vmx.IDT_VECTORING_ERROR_CODE)
        if event.type in (vmx.INTR_TYPE_SOFT_INTR, vmx.INTR_TYPE_SOFT_EXCEPTION, vmx.INTR_TYPE_PRIV_SW_EXCEPTION):
            event.instruction_len = self.vcpu.vmread(vmx.VM_EXIT_INSTRUCTION_LEN)
        if event.type == vmx.INTR_TYPE_NMI_INTR:
            self.set_nmi_masked(False)    # the NMI was not delivered: not blocking yet
        if event.type in (vmx.INTR_TYPE_HARD_EXCEPTION, vmx.INTR_TYPE_SOFT_EXCEPTION,
                          vmx.INTR_TYPE_PRIV_SW_EXCEPTION):
            self.exception = event
        else:
            self.reinject = event
        return info

    def before_entry(self, want_interrupt_window: bool):
        """Inject the most urgent event and set the window exits for what must wait."""
        event = self._choose()
        if event is not None:
            if event.error_code is not None and not self.vcpu.vmread(vmx.GUEST_CR0) & CR0_PE:
                event.error_code = None   # real mode pushes no error code (as KVM drops it)
            if event.type == vmx.INTR_TYPE_HARD_EXCEPTION and event.vector not in NOT_FAULTS:
                # a fault's handler may restart the instruction: the frame gets RF = 1, as
                # the processor's own delivery does (kvm_inject_exception)
                self.vcpu.vmwrite(vmx.GUEST_RFLAGS, self.vcpu.vmread(vmx.GUEST_RFLAGS) | RFLAGS_RF)
            self.vcpu.vmwrite(vmx.VM_ENTRY_INTR_INFO_FIELD, event.info())
            if event.error_code is not None:
                # VMX takes 16 bits (bits 31:16 set would fail VM entry), as KVM truncates
                self.vcpu.vmwrite(vmx.VM_ENTRY_EXCEPTION_ERROR_CODE, event.error_code & 0xFFFF)
            if event.instruction_len:
                self.vcpu.vmwrite(vmx.VM_ENTRY_INSTRUCTION_LEN, event.instruction_len)
        proc = self.vcpu.vmread(vmx.CPU_BASED_VM_EXEC_CONTROL)
        wanted = proc & ~(vmx.CPU_BASED_INTR_WINDOW_EXITING | vmx.CPU_BASED_NMI_WINDOW_EXITING)
        if (want_interrupt_window or self.interrupt is not None) and \
                not self.vcpu.guest_debug.blocks_interrupts:
            wanted |= vmx.CPU_BASED_INTR_WINDOW_EXITING
        if self.nmi_pending:
            wanted |= vmx.CPU_BASED_NMI_WINDOW_EXITING
        if wanted != proc:
            self.vcpu.vmwrite(vmx.CPU_BASED_VM_EXEC_CONTROL, wanted)

    def _choose(self):
        if self.exception is not None:
            event, self.exception = self.exception, None
            return event
        if self.reinject is not None:
            event, self.reinject = self.reinject, None
            return event
        if self.nmi_pending and self.nmi_allowed():
            self.nmi_pending -= 1
            return self._traced(Event(vmx.INTR_TYPE_NMI_INTR, 2))
        if self.interrupt is not None and self.interrupt_allowed():
            vector, self.interrupt = self.interrupt, None
            return self._traced(Event(vmx.INTR_TYPE_EXT_INTR, vector))
        return None

    def _traced(self, event: Event) -> Event:
        if self.tracer is not None:
            self.tracer(event, self.vcpu, None)
        return event

    def trace_exception(self, event: Event):
        """Show the tracer an exception, with the one whose delivery it interrupted."""
        if self.tracer is not None:
            self.tracer(event, self.vcpu, self.exception)

    # ---- KVM_GET/SET_VCPU_EVENTS -------------------------------------------------------------

    def get_state(self) -> VcpuEvents:
        """KVM_GET_VCPU_EVENTS (the SIPI vector is the MP state's).  There is no SMM, so
        smi is all zero; the triple fault is there with KVM_CAP_X86_TRIPLE_FAULT_EVENT."""
        ev = VcpuEvents(flags=KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW |
                        KVM_VCPUEVENT_VALID_SMM)
        if self.vcpu.vm.triple_fault_event:
            ev.flags |= KVM_VCPUEVENT_VALID_TRIPLE_FAULT
            ev.triple_fault = TripleFaultState(pending=int(self.triple_fault_pending))
        if self.exception is not None:
            e = self.exception
            ev.exception = ExceptionState(injected=1, nr=e.vector, has_error_code=int(e.error_code is not None),
                                          error_code=e.error_code or 0)
        if self.reinject is not None and self.reinject.type != vmx.INTR_TYPE_NMI_INTR:
            ev.interrupt.injected, ev.interrupt.nr = 1, self.reinject.vector
            ev.interrupt.soft = int(self.reinject.type == vmx.INTR_TYPE_SOFT_INTR)
        elif self.interrupt is not None:
            ev.interrupt.injected, ev.interrupt.nr = 1, self.interrupt
        blocking = self._blocking()
        ev.interrupt.shadow = (KVM_X86_SHADOW_INT_STI if blocking & BLOCKING_STI else 0) | \
            (KVM_X86_SHADOW_INT_MOV_SS if blocking & BLOCKING_MOV_SS else 0)
        ev.nmi = NmiState(injected=int(self.reinject is not None and self.reinject.type == vmx.INTR_TYPE_NMI_INTR),
                          pending=self.nmi_pending, masked=int(bool(blocking & BLOCKING_NMI)))
        return ev

    def check_state(self, ev: VcpuEvents):
        """The EINVAL cases of KVM_SET_VCPU_EVENTS.  Without KVM_CAP_EXCEPTION_PAYLOAD an
        exception is only ever ``injected`` (``pending`` is ignored)."""
        if ev.flags & ~VALID_FLAGS:
            raise KvmError(f"KVM_SET_VCPU_EVENTS: invalid flags {ev.flags:#x} (EINVAL)")
        if ev.flags & KVM_VCPUEVENT_VALID_PAYLOAD:
            raise KvmError("KVM_SET_VCPU_EVENTS: exception payloads need KVM_CAP_EXCEPTION_PAYLOAD (EINVAL)")
        if ev.exception.injected and (ev.exception.nr > 31 or ev.exception.nr == EXC_NMI):
            raise KvmError(f"KVM_SET_VCPU_EVENTS: {ev.exception.nr} is not an exception vector (EINVAL)")
        if ev.flags & KVM_VCPUEVENT_VALID_SMM:
            if ev.smi.smm or ev.smi.pending or ev.smi.smm_inside_nmi:
                raise KvmError("KVM_SET_VCPU_EVENTS: there is no SMM (EINVAL)")
        if ev.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT and not self.vcpu.vm.triple_fault_event:
            raise KvmError("KVM_SET_VCPU_EVENTS: triple fault events need KVM_CAP_X86_TRIPLE_FAULT_EVENT (EINVAL)")

    def set_state(self, ev: VcpuEvents):
        """KVM_SET_VCPU_EVENTS, after check_state."""
        e = ev.exception
        self.exception = self._exception(e.nr, e.error_code if e.has_error_code else None) \
            if e.injected else None
        self.reinject = None
        self.interrupt = None
        if ev.nmi.injected:
            self.reinject = Event(vmx.INTR_TYPE_NMI_INTR, 2)
        elif ev.interrupt.injected:
            # an interrupt in the middle of delivery: it is delivered as it was
            self.reinject = Event(vmx.INTR_TYPE_SOFT_INTR if ev.interrupt.soft else vmx.INTR_TYPE_EXT_INTR,
                                  ev.interrupt.nr & 0xFF)
        if ev.flags & KVM_VCPUEVENT_VALID_NMI_PENDING:
            self.nmi_pending = min(ev.nmi.pending, MAX_PENDING_NMIS)
        blocking = self._blocking() & ~BLOCKING_NMI
        blocking |= BLOCKING_NMI if ev.nmi.masked else 0
        if ev.flags & KVM_VCPUEVENT_VALID_SHADOW:
            blocking &= ~(BLOCKING_STI | BLOCKING_MOV_SS)
            blocking |= (BLOCKING_STI if ev.interrupt.shadow & KVM_X86_SHADOW_INT_STI else 0) | \
                (BLOCKING_MOV_SS if ev.interrupt.shadow & KVM_X86_SHADOW_INT_MOV_SS else 0)
        self.vcpu.vmwrite(vmx.GUEST_INTERRUPTIBILITY_INFO, blocking)
        if ev.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT:
            self.triple_fault_pending = bool(ev.triple_fault.pending)


def _double_fault(first: int, second: int) -> bool:
    """Does `second`, raised while delivering exception `first`, make a #DF (SDM Vol. 3
    Table 6-5)?  Otherwise the second is delivered and the first is lost (it recurs when
    the instruction runs again)."""
    if first == EXC_PF:
        return second == EXC_PF or second in CONTRIBUTORY
    return first in CONTRIBUTORY and second in CONTRIBUTORY
