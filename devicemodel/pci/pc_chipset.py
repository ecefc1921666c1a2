"""The PCI side of QEMU's pc machine: the i440FX host bridge (00:00.0) with configuration
mechanism #1 at 0xcf8/0xcfc, the PIIX3 ISA bridge (00:01.0) with its PIRQ router and
its reset control register at 0xcf9, given the guest memory its DMA reaches the PIIX3
IDE function (00:01.1) on ISA IRQs 14 and 15, and, with ACPI, the PIIX4 power
management function (00:01.3) with the APM ports at 0xb2.

The reset control register is a byte inside the configuration address register's
dword: as in QEMU it is mapped over it with priority 1, so that byte accesses to 0xcf9
reset the machine and 32-bit accesses to 0xcf8 still reach the host bridge.

``set_isa_irq(irq, level)`` carries PCI interrupts (and the SCI, on IRQ 9) to the
machine's ISA interrupt lines; ``set_gsi`` optionally wires PIRQA..D to GSIs 16..19;
``deliver_msi(address, data)`` takes the functions' MSI and MSI-X messages (the APIC bus).
"""

from __future__ import annotations

from devicemodel.devices.system_ports import ResetControl
from devicemodel.ide.piix import PiixIde
from devicemodel.pci.bus import PciBus
from devicemodel.pci.firmware_init import SCI_IRQ, init_pci
from devicemodel.pci.host import PciHost
from devicemodel.pci.i440fx import I440fx
from devicemodel.pci.piix3 import Piix3
from devicemodel.pci.piix4_pm import Piix4Pm

PIIX_SLOT = 1
IDE_FUNCTION = 1
PM_FUNCTION = 3


class PcChipset:
    def __init__(self, *, pio, mmio, clock, set_isa_irq, request_reset, power_off, suspend,
                 acpi: bool = True, pm_timer_bits: int = 24, com_ports=(), set_gsi=None, memory=None,
                 deliver_msi=None):
        self.pio = pio
        self.bus = PciBus(pio, mmio)
        self.bus.deliver_msi = deliver_msi
        self.host = PciHost(self.bus)
        self.i440fx = self.bus.add(I440fx(), 0)
        self.piix3 = self.bus.add(Piix3(self.bus, set_isa_irq, set_gsi), PIIX_SLOT)
        self.reset_control = ResetControl(request_reset=request_reset)
        for region in self.host.regions:
            pio.add_region(region)
        pio.add_region(self.reset_control.region, overlap=True)
        self.ide = None
        if memory is not None:
            self.ide = self.bus.add(PiixIde(memory, set_isa_irq), PIIX_SLOT, IDE_FUNCTION)
            for region in self.ide.legacy_regions:
                pio.add_region(region)
        self.pm = None
        if acpi:
            self.pm = Piix4Pm(pio, clock, set_sci=lambda level: set_isa_irq(SCI_IRQ, level),
                              power_off=power_off, suspend=suspend, timer_bits=pm_timer_bits,
                              com_ports=com_ports)
            self.bus.add(self.pm, PIIX_SLOT, PM_FUNCTION)
            for region in self.pm.apm.regions:
                pio.add_region(region)

    def init_firmware(self, ram_below_4g: int) -> None:
        """Leave the bus as QEMU's firmware leaves it (pyhv boots kernels without one)."""
        init_pci(self.bus, self.pio.write, mem_window_start=ram_below_4g)
