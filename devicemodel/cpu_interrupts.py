"""One vCPU's interrupt inputs and their delivery through the KVM API, as QEMU does it
with interrupt controllers in userspace (kernel-irqchip=off; target/i386/kvm.c's
kvm_arch_pre_run and kvm_arch_process_async_events).

What the vCPU has to take, all of it changed with the big lock held:

* maskable interrupts: its local APIC's highest deliverable vector, or the 8259's INTR
  when the APIC lets it through (APIC globally disabled, or LINT0 in ExtINT mode; an
  ExtINT message from the I/O APIC too). The 8259 goes first, as in QEMU: ExtINT
  ignores priorities;
* NMIs, INIT and SIPI, from the APIC.

The APIC pokes this object whenever something may have become deliverable; a poke from
another thread kicks the vCPU out of KVM_RUN (and wakes it if it halts) so that its loop
injects before the next run (``before_run``), on its own thread:

* INIT puts the vCPU into the INIT state (SDM Table 10-1: real mode at f000:fff0 with the
  CS base 0xffff0000, ...) with no event pending; the bootstrap processor then runs, an
  application processor waits for a SIPI (KVM_MP_STATE_INIT_RECEIVED);
* a SIPI to a processor waiting for one gives KVM the vector (KVM_SET_VCPU_EVENTS) and
  KVM_MP_STATE_SIPI_RECEIVED, so that it starts at vector << 12; a SIPI at any other time
  is ignored. Nothing else is taken while waiting for a SIPI;
* an NMI is queued with KVM_NMI;
* a maskable interrupt is acknowledged and injected with KVM_INTERRUPT when KVM says the
  vCPU is ready for one, else an interrupt window is requested.

CR8 and the APIC's TPR are one register: kvm_run.cr8 carries TPR[7:4] into KVM_RUN and the
guest's CR8 back out (``after_run``), as QEMU's kvm_arch_pre_run/post_run do.

With APIC virtualization (``lapic.apicv``, devicemodel.cpu_apicv) the processor takes the
local APIC's interrupts itself from the virtual-APIC page, whose TPR is CR8 (KVM reports
it in kvm_run.cr8 and takes nothing from there): only the 8259's go through KVM_INTERRUPT.

A halted vCPU (HLT) sleeps in ``wait_for_interrupt`` until something would wake the
processor: INIT, a SIPI, an NMI, or with RFLAGS.IF set a maskable interrupt.
"""

from __future__ import annotations

import threading

from kvm.constants import (KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_SIPI_RECEIVED,
                           KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW,
                           KVM_VCPUEVENT_VALID_SIPI_VECTOR)
from kvm.structs import VcpuEvents

from devicemodel.current_cpu import current_cpu
from devicemodel.devices.apic import BASE_BSP, TPR

HALT_POLL_SECONDS = 0.05


class CpuInterrupts:
    def __init__(self, index: int, lapic, pic, bql):
        self.index = index
        self.lapic = lapic
        lapic.cpu = self
        self.pic = pic
        self._wake = threading.Condition(bql)
        self.vcpu = None                 # set when the VM exists
        self.nmi_pending = False
        self.init_pending = False
        self.sipi_vector = None
        self.extint_pending = False
        self.wait_for_sipi = not self.is_bsp
        self.halted = False              # the vCPU's thread waits in wait_for_interrupt

    @property
    def is_bsp(self) -> bool:
        return bool(self.lapic.apic_base & BASE_BSP)

    # ---- from the local APIC (big lock held) -----------------------------------------------------

    def poke(self) -> None:
        """Something may have become deliverable: wake the vCPU if it halts, kick it out of
        the guest if another thread runs it."""
        with self._wake:     # reentrant: callers usually hold the big lock already
            self._wake.notify_all()
        if self.vcpu is not None and current_cpu() != self.index:
            self.vcpu.kick()

    def nmi(self) -> None:
        self.nmi_pending = True
        self.poke()

    def init(self) -> None:
        self.init_pending = True
        self.sipi_vector = None
        self.nmi_pending = self.extint_pending = False
        self.wait_for_sipi = not self.is_bsp
        self.poke()

    def sipi(self, vector: int) -> None:
        if self.wait_for_sipi:
            self.wait_for_sipi = False
            self.sipi_vector = vector
            self.poke()

    def extint(self) -> None:
        self.extint_pending = True
        self.poke()

    # ---- maskable interrupts -----------------------------------------------------------------------

    def _pic_pending(self) -> bool:
        if not self.pic.has_interrupt():
            self.extint_pending = False
            return False
        return self.extint_pending or self.lapic.accepts_pic_interrupts()

    def interrupt_pending(self) -> bool:
        return self._pic_pending() or self.lapic.pending_vector() is not None

    def _injection_pending(self) -> bool:
        """An interrupt for KVM_INTERRUPT: under APIC virtualization only the 8259's."""
        return self._pic_pending() if self.lapic.apicv is not None else self.interrupt_pending()

    def acknowledge(self) -> int:
        """The vector of the interrupt the processor takes now (the INTA cycle)."""
        if self._pic_pending():
            self.extint_pending = False
            return self.pic.acknowledge()
        return self.lapic.acknowledge()

    def wakes(self, if_flag: int) -> bool:
        """Whether a processor halted with RFLAGS.IF = ``if_flag`` would wake now (an
        interrupt waiting for the EOI-exit bitmap counts: the next run takes it in)."""
        apicv = self.lapic.apicv
        return (self.init_pending or self.sipi_vector is not None or self.nmi_pending
                or bool(if_flag and (self.interrupt_pending() or (apicv is not None and apicv.has_waiting()))))

    # ---- the vCPU thread ------------------------------------------------------------------------------

    def after_run(self, run) -> None:
        """After KVM_RUN (big lock held): the guest may have moved CR8, which is the TPR's
        priority class (KVM reports it in kvm_run.cr8; KVM_EXIT_SET_TPR when lowered)."""
        if run.cr8 != self.lapic.read32(TPR) >> 4:
            self.lapic.write_register(TPR, run.cr8 << 4)

    def before_run(self, run, vcpu) -> None:
        """Before KVM_RUN (big lock held): INIT, SIPI, NMI, then a maskable interrupt; the
        TPR goes to KVM as CR8."""
        run.cr8 = self.lapic.read32(TPR) >> 4
        ready = run.ready_for_interrupt_injection
        if self.init_pending:
            self.init_pending = False
            self._enter_init_state(vcpu)
            ready = 0
        if self.sipi_vector is not None:
            events = vcpu.get_vcpu_events()
            events.sipi_vector = self.sipi_vector
            events.flags |= KVM_VCPUEVENT_VALID_SIPI_VECTOR
            vcpu.set_vcpu_events(events)
            vcpu.set_mp_state(KVM_MP_STATE_SIPI_RECEIVED)
            self.sipi_vector = None
            ready = 0
        if self.wait_for_sipi:
            self.nmi_pending = False
            run.request_interrupt_window = 0
            return
        if self.nmi_pending:
            self.nmi_pending = False
            vcpu.nmi()
        if self.lapic.apicv is not None:
            self.lapic.apicv.before_run()
        if not self._injection_pending():
            run.request_interrupt_window = 0
        elif ready:
            vcpu.interrupt(self.acknowledge())
            run.request_interrupt_window = int(self._injection_pending())
        else:
            run.request_interrupt_window = 1

    def _enter_init_state(self, vcpu) -> None:
        if self.lapic.apicv is not None:    # the page is the processor's while it runs
            self.lapic.init_reset()
        vcpu.reset()
        vcpu.set_vcpu_events(VcpuEvents(flags=KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW))
        vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE if self.is_bsp else KVM_MP_STATE_INIT_RECEIVED)

    def wait_for_interrupt(self, runstate, if_flag: int) -> None:
        """A halted vCPU sleeps until it would wake, or the VM is paused or stops (big lock
        held; released while waiting)."""
        self.halted = True
        try:
            while not (self.wakes(if_flag) or runstate.stop_requested or runstate.pause_requested):
                self._wake.wait(HALT_POLL_SECONDS)
        finally:
            self.halted = False

    def wake(self) -> None:
        """Wake the vCPU if it halts, to notice a pause or stop request."""
        with self._wake:
            self._wake.notify_all()

    # ---- snapshots ---------------------------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"nmi_pending": self.nmi_pending, "init_pending": self.init_pending, "sipi_vector": self.sipi_vector,
                "extint_pending": self.extint_pending, "wait_for_sipi": self.wait_for_sipi}

    def load_state(self, state: dict) -> None:
        self.nmi_pending, self.init_pending = state["nmi_pending"], state["init_pending"]
        self.sipi_vector, self.extint_pending = state["sipi_vector"], state["extint_pending"]
        self.wait_for_sipi = state["wait_for_sipi"]
        self.poke()
