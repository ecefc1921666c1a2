"""The processor's INTR pin, driven by the 8259 PIC pair, with injection through the
KVM API as QEMU does it with a userspace interrupt controller (kernel-irqchip=off):
before each KVM_RUN, a pending interrupt is acknowledged from the PIC and injected with
KVM_INTERRUPT when the vCPU is ready for it, or an interrupt window is requested; an
interrupt raised while the vCPU runs kicks it out so that it can be injected."""

from __future__ import annotations

import threading

from devicemodel.devices.i8259 import PicPair


class InterruptLine:
    def __init__(self, bql: threading.RLock):
        self.bql = bql
        self._raised = threading.Condition(bql)
        self.vcpu = None
        self.pic = PicPair(int_output=self._intr)

    def _intr(self, level: int) -> None:
        """The PIC's INT output."""
        if level:
            with self._raised:   # reentrant: devices usually call with the big lock held
                self._raised.notify_all()
            if self.vcpu is not None:
                self.vcpu.kick()

    def set_irq(self, line: int, level: int) -> None:
        self.pic.set_irq(line, level)

    def irq_setter(self, line: int):
        """An ``irq(level)`` callable for a device wired to ISA IRQ ``line``."""
        return lambda level: self.pic.set_irq(line, level)

    def wake_all(self) -> None:
        """Wake halted vCPUs so that they notice a pause or stop request (big lock held)."""
        self._raised.notify_all()

    def pending(self) -> bool:
        return self.pic.has_interrupt()

    def before_run(self, run, vcpu) -> None:
        """Inject or ask for a window (big lock held)."""
        if not self.pending():
            run.request_interrupt_window = 0
            return
        if run.ready_for_interrupt_injection:
            vcpu.interrupt(self.pic.acknowledge())
            run.request_interrupt_window = int(self.pic.has_interrupt())
        else:
            run.request_interrupt_window = 1

    def wait_for_interrupt(self, runstate, timeout: float = 0.05) -> None:
        """A halted vCPU with interrupts enabled sleeps until the PIC raises INTR or the VM
        is paused or stops (big lock held; released while waiting)."""
        while not (self.pending() or runstate.stop_requested or runstate.pause_requested):
            self._raised.wait(timeout)
