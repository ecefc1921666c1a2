"""One vCPU's local APIC on the processor's APIC virtualization (kvm/apicv.py), as KVM's
enable_apicv runs its own local APIC: TPR shadow, the APIC-access page (xAPIC mode) or
x2APIC-mode virtualization, APIC-register virtualization and virtual-interrupt delivery.

The APIC's register page becomes the vCPU's virtual-APIC page. The processor then reads
the registers from it (the APIC ID, TPR, ISR, IRR, LVTs, ...), takes TPR writes, EOIs
and self-IPIs, and delivers the highest IRR vector above the PPR (moving it to ISR),
all without VM exits. What still reaches the device model:

* register writes with side effects (ICR, LVTs, the timer, SVR, ...): an APIC-write VM
  exit after the processor stored the value (KVM_EXIT_MMIO), or a WRMSR exit in x2APIC
  mode; reads the processor cannot answer (PPR and the current count in xAPIC mode,
  the current count in x2APIC mode; MMIO and RDMSR exits);
* the EOI of a vector in the EOI-exit bitmap (KVM_EXIT_IOAPIC_EOI): the bitmap holds
  the vectors whose TMR bit is set, the level-triggered ones, so that the EOI reaches
  the I/O APICs;
* IA32_APIC_BASE and IA32_TSC_DEADLINE, as without APIC virtualization.

Fixed interrupts are posted: the IRR bit is set atomically in the page (the processor
may be using it) and the processor is interrupted to take it in (``post_apic_interrupt``),
without a return to the device model. A level-triggered vector must be in the EOI-exit
bitmap before the processor can take it, and the bitmap is only written before the vCPU
enters the guest: such an interrupt waits for that (``before_run``), the vCPU being
kicked out of the guest for it. So does taking an IRR bit back (a level-triggered LINT
input going low), which the processor could race. A vCPU out of the guest until its
next ``before_run`` (on the calling thread, or halted) simply has its page written.
NMIs, INIT, SIPI and the 8259's ExtINT are delivered as without APIC virtualization
(devicemodel.cpu_interrupts).
"""

from __future__ import annotations

from devicemodel.current_cpu import current_cpu
from devicemodel.devices.apic import IRR, TMR, X2APIC


class CpuApicv:
    def __init__(self, index: int, lapic, vcpu):
        self.index = index
        self.lapic = lapic
        self.vcpu = vcpu
        self.eoi_exit_bitmap = 0
        self._post = set()             # level-triggered vectors waiting for before_run
        self._retract = set()          # IRR bits to clear in before_run
        vcpu.enable_apic_virtualization(lapic.base_address, x2apic=lapic.mode == X2APIC)
        lapic.use_page(vcpu.apic_page)
        self._words = lapic.page.cast("I")
        lapic.apicv = self

    def _page_is_ours(self) -> bool:
        """The vCPU's processor is out of the guest until its thread runs before_run: we
        are that thread, or it waits for an interrupt (with the big lock released, which
        we hold)."""
        return current_cpu() == self.index or self.lapic.cpu.halted

    def post(self, vector: int, level_triggered: bool) -> None:
        """Request ``vector`` (its TMR bit already set or cleared), big lock held."""
        self._retract.discard(vector)
        if self._page_is_ours():
            self.lapic.set_vector(IRR, vector, True)
        elif level_triggered and not self.eoi_exit_bitmap >> vector & 1:
            self._post.add(vector)
            self.vcpu.kick()
        else:
            self.vcpu.post_apic_interrupt(vector)
        self.lapic.cpu.wake()

    def retract(self, vector: int) -> None:
        """Take back a requested vector that the processor has not delivered yet."""
        self._post.discard(vector)
        if self._page_is_ours():
            self.lapic.set_vector(IRR, vector, False)
        else:
            self._retract.add(vector)
            self.vcpu.kick()

    def has_waiting(self) -> bool:
        return bool(self._post)

    def reset(self) -> None:
        """The page was reset: nothing is waiting any more."""
        self._post.clear()
        self._retract.clear()

    def before_run(self) -> None:
        """On the vCPU's thread, before KVM_RUN: the EOI-exit bitmap takes in the TMR
        (and the level-triggered vectors about to be requested), then the waiting IRR
        changes go into the page."""
        tmr = 0
        for k in range(7, -1, -1):
            tmr = tmr << 32 | self._words[(TMR >> 2) + 4 * k]
        for vector in self._post:
            tmr |= 1 << vector
        if tmr != self.eoi_exit_bitmap:
            self.eoi_exit_bitmap = tmr
            self.vcpu.set_eoi_exit_bitmap(tmr)
        for vector in self._retract:
            self.lapic.set_vector(IRR, vector, False)
        for vector in self._post:
            self.lapic.set_vector(IRR, vector, True)
        self.reset()
