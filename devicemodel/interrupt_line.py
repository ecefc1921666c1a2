"""The PC's interrupt lines (QEMU's gsi_handler): ISA IRQ n drives input n of the 8259
pair and pin n of the I/O APIC, except that IRQ 0 (the PIT) is I/O APIC pin 2, so that a
guest can use either controller (the MP table and the MADT say so); lines 16..23 reach
only the I/O APIC. The 8259 pair's INTR output drives LINT0 of every local APIC; what a
processor does with it is its APIC's business (devicemodel.cpu_interrupts).

``cpus`` holds each vCPU's interrupt delivery (``CpuInterrupts``) once the VM exists.
Devices raise their lines with ``set_irq``: once the VM exists that is KVM_IRQ_LINE
(``irq_line``, the VM's), which brings the level back to the wiring (``gsi_handler``)
through the VM's interrupt controller, as with an in-kernel irqchip."""

from __future__ import annotations

import threading

from devicemodel.devices.i8259 import PicPair

ISA_IRQS = 16
PIT_IOAPIC_PIN = 2


class InterruptLine:
    def __init__(self, bql: threading.RLock, ioapic=None, lapics=()):
        self.bql = bql
        self.ioapic = ioapic
        self.lapics = list(lapics)
        self.cpus = []
        self.irq_line = None
        self.pic = PicPair(int_output=self._intr)

    def _intr(self, level: int) -> None:
        """The 8259's INT output, on every LINT0."""
        for lapic in self.lapics:
            lapic.set_lint(0, level)

    def set_irq(self, line: int, level: int) -> None:
        if self.irq_line is not None:
            self.irq_line(line, level)
        else:
            self.gsi_handler(line, level)

    def gsi_handler(self, line: int, level: int) -> None:
        """The level of interrupt line ``line`` reaches the controllers."""
        if line < ISA_IRQS:
            self.pic.set_irq(line, level)
        if self.ioapic is not None:
            self.ioapic.set_irq(PIT_IOAPIC_PIN if line == 0 else line, level)
        elif line >= ISA_IRQS:
            raise ValueError(f"interrupt line {line} needs an I/O APIC")

    def irq_setter(self, line: int):
        """An ``irq(level)`` callable for a device wired to interrupt line ``line``."""
        return lambda level: self.set_irq(line, level)

    def wake_all(self) -> None:
        """Wake halted vCPUs so that they notice a pause or stop request (big lock held)."""
        for cpu in self.cpus:
            cpu.wake()
