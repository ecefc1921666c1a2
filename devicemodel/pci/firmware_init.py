"""What the PC's firmware does to the PCI bus before an operating system runs, done by
pyhv when it boots a kernel directly (there is no BIOS), as SeaBIOS's pciinit.c does it
on QEMU's pc machine, through configuration cycles like the firmware's own:

* the PIIX3 routes PIRQA..D to ISA IRQs 10, 10, 11, 11 and the 8259's ELCR makes those
  IRQs level-triggered;
* every function with an interrupt pin gets the IRQ its pin reaches in its interrupt
  line register (the PIIX4 PM function: 9, its SCI);
* BARs get addresses: I/O BARs from 0xc000 up, memory BARs packed below the I/O APIC
  at 0xfec00000, largest first; then the command register enables I/O, memory and SERR;
* the PIIX4 PM function's ACPI registers go to 0x600 and are enabled;
* the PIIX3 IDE function decodes both channels (IDETIM bit 15, SeaBIOS's piix_ide_setup).

``pci_irqs`` are the ISA IRQs for PIRQA..D; ``read_config``/``write_config`` reach the
bus (``PciBus`` methods), ``write_port`` the port space.
"""

from __future__ import annotations

from devicemodel.errors import ConfigError
from devicemodel.ide.piix import IDETIM, IDETIM_DECODE_ENABLE, PiixIde
from devicemodel.pci import regs
from devicemodel.pci.bus import PciBus, slot_pirq
from devicemodel.pci.piix3 import PIRQRC, Piix3
from devicemodel.pci.piix4_pm import DEFAULT_PM_BASE, PMBA, PMBA_IO_SPACE, PMIOSE, PMREGMISC, Piix4Pm

PCI_IRQS = (10, 10, 11, 11)
SCI_IRQ = 9
ELCR_PORTS = (0x4D0, 0x4D1)
IO_WINDOW = (0xC000, 0x10000)
MEM_WINDOW_END = 0xFEC00000


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def init_pci(bus: PciBus, write_port, pci_irqs=PCI_IRQS, mem_window_start: int = 0xE0000000) -> None:
    """Program the bus as the firmware leaves it. ``mem_window_start`` is where RAM below
    4 GiB ends (memory BARs stay above it)."""
    devices = sorted(bus.devices.items())
    elcr = [0, 0]
    for number, device in devices:
        if isinstance(device, Piix3):
            for pirq, irq in enumerate(pci_irqs):
                bus.write_config(number, PIRQRC + pirq, 1, irq)
                elcr[irq >> 3] |= 1 << (irq & 7)
    for port, value in zip(ELCR_PORTS, elcr):
        write_port(port, 1, value)
    _assign_bars(bus, mem_window_start)
    for number, device in devices:
        if device.config[regs.INTERRUPT_PIN]:
            irq = SCI_IRQ if isinstance(device, Piix4Pm) else pci_irqs[slot_pirq(device)]
            bus.write_config(number, regs.INTERRUPT_LINE, 1, irq)
        if isinstance(device, Piix4Pm):
            bus.write_config(number, PMBA, 4, DEFAULT_PM_BASE | PMBA_IO_SPACE)
            bus.write_config(number, PMREGMISC, 1, PMIOSE)
        if isinstance(device, PiixIde):
            for register in IDETIM:
                bus.write_config(number, register, 2, IDETIM_DECODE_ENABLE)
        command = bus.read_config(number, regs.COMMAND, 2)
        bus.write_config(number, regs.COMMAND, 2,
                         command | regs.COMMAND_IO | regs.COMMAND_MEMORY | regs.COMMAND_SERR)


def _assign_bars(bus: PciBus, mem_window_start: int) -> None:
    bars = [(number, bar) for number, device in sorted(bus.devices.items())
            for bar in device.bars if bar is not None]
    io_next = IO_WINDOW[0]
    for number, bar in sorted((b for b in bars if b[1].is_io), key=lambda b: -b[1].size):
        address = _align_up(io_next, bar.size)
        if address + bar.size > IO_WINDOW[1]:
            raise ConfigError("the PCI devices' I/O BARs do not fit in ports 0xc000-0xffff")
        bus.write_config(number, bar.offset, 4, address)
        io_next = address + bar.size
    memory = sorted((b for b in bars if not b[1].is_io), key=lambda b: -b[1].size)
    total = sum(bar.size for _, bar in memory)
    largest = memory[0][1].size if memory else 1
    mem_next = (MEM_WINDOW_END - total) & ~(largest - 1)
    if memory and mem_next < mem_window_start:
        raise ConfigError("the PCI devices' memory BARs do not fit between RAM and 0xfec00000")
    for number, bar in memory:
        bus.write_config(number, bar.offset, 4, mem_next & 0xFFFFFFFF)
        if bar.is_64:
            bus.write_config(number, bar.offset + 4, 4, mem_next >> 32)
        mem_next += bar.size
