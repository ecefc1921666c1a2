"""The PIIX3 PCI-to-ISA bridge (Intel 82371SB function 0), 00:01.0 of QEMU's pc machine:
its identity and reset values as QEMU's hw/isa/piix.c has them, and the PCI interrupt
router.

PIRQ route control registers 0x60-0x63 (PIRQRC[A:D]): bit 7 disables the routing, bits
3:0 name the ISA IRQ that PIRQx# drives (reset value 0x80: not routed). An ISA IRQ
that several PIRQs reach is high while any of them is (QEMU's pic_levels); the level
goes out through ``set_isa_irq(irq, level)`` -- the machine's ISA interrupt lines, so
the 8259 (and, when there is one, the I/O APIC input of the same number). The 8259's
edge/level control registers (ELCR, 0x4d0/0x4d1) that PCI interrupts need belong to
the PIC model.

Boards that also wire the four PIRQ lines straight to I/O APIC inputs 16-19 pass
``set_gsi(gsi, level)``: each PIRQ then drives GSI 16 + n as well, whatever the routing
registers say. QEMU's pc machine has no such wiring (``set_gsi`` None).
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.pci import regs
from devicemodel.pci.bus import PciBus
from devicemodel.pci.device import PciDevice

DEVICE_ID = 0x7000
PIRQRC = 0x60
ROUTE_DISABLED = 0x80
ISA_IRQS = 16
FIRST_PCI_GSI = 16

# QEMU's piix_reset() values of the other registers (the PIRQ routes are set apart).
RESET_VALUES = {0x07: 0x02, 0x4C: 0x4D, 0x4E: 0x03, 0x4F: 0x00,
                0x69: 0x02, 0x70: 0x80, 0x76: 0x0C, 0x77: 0x0C, 0x78: 0x02, 0x79: 0x00,
                0x80: 0x00, 0x82: 0x00, 0xA0: 0x08, 0xA2: 0x00, 0xA3: 0x00, 0xA4: 0x00,
                0xA5: 0x00, 0xA6: 0x00, 0xA7: 0x00, 0xA8: 0x0F, 0xAA: 0x00, 0xAB: 0x00,
                0xAC: 0x00, 0xAE: 0x00}


class Piix3(PciDevice):
    def __init__(self, bus: PciBus, set_isa_irq: Callable[[int, int], None],
                 set_gsi: Optional[Callable[[int, int], None]] = None, name: str = "PIIX3"):
        super().__init__(vendor_id=regs.VENDOR_INTEL, device_id=DEVICE_ID, class_code=regs.CLASS_BRIDGE_ISA,
                         header_type=regs.HEADER_TYPE_MULTI_FUNCTION, name=name)
        self.pci_bus = bus
        self.set_isa_irq = set_isa_irq
        self.set_gsi = set_gsi
        self.isa_levels = [0] * ISA_IRQS     # what the PCI interrupts drive on each ISA IRQ
        bus.set_pirq = self._pirq_changed
        self.reset()

    def reset(self) -> None:
        for offset, value in RESET_VALUES.items():
            self.config[offset] = value
        self.config[PIRQRC:PIRQRC + regs.PINS] = bytes([ROUTE_DISABLED] * regs.PINS)
        self._route_all()

    def route(self, pirq: int) -> Optional[int]:
        """The ISA IRQ that PIRQ ``pirq`` (0 = A) is routed to, or None."""
        value = self.config[PIRQRC + pirq]
        return None if value & ROUTE_DISABLED else value & 0x0F

    def write_config(self, offset: int, size: int, value: int) -> None:
        super().write_config(offset, size, value)
        if offset < PIRQRC + regs.PINS and PIRQRC < offset + size:
            self._route_all()

    def _pirq_changed(self, pirq: int, level: int) -> None:
        if self.set_gsi is not None:
            self.set_gsi(FIRST_PCI_GSI + pirq, level)
        self._route_all()

    def _wanted_levels(self) -> list[int]:
        levels = [0] * ISA_IRQS
        for pirq in range(regs.PINS):
            irq = self.route(pirq)
            if irq is not None and self.pci_bus.pirq_level(pirq):
                levels[irq] = 1
        return levels

    def _route_all(self) -> None:
        """Recompute every ISA IRQ that PCI interrupts drive; report the ones that changed."""
        for irq, level in enumerate(self._wanted_levels()):
            if level != self.isa_levels[irq]:
                self.isa_levels[irq] = level
                self.set_isa_irq(irq, level)

    def load_state(self, state: dict) -> None:
        """The levels are recomputed, not driven: the PIC's own saved state has their effect."""
        super().load_state(state)
        self.isa_levels = self._wanted_levels()
