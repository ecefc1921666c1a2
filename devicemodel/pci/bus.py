"""PCI bus 0 of the PC: functions by device/function number, configuration cycles, and
the INTx wiring from each function's pin to the four PIRQ lines of the interrupt router.

The board swizzles the pins of slot ``s`` so that INTA# of slot 1 is PIRQA (QEMU's
pc_pci_slot_get_pirq, SeaBIOS's pci_slot_get_irq): ``pirq = (pin + s - 1) & 3``. A
PIRQ line is high while any function drives it (PCI interrupts are shared, level-
triggered, wired-OR); the router (the PIIX3, ``set_pirq(pirq, level)``) sees each change.

A configuration cycle to a device number with no function answers with all-ones (a
master abort), and writes to it go nowhere.

MSI and MSI-X messages are memory writes by a bus master to 0xfeeXXXXX, which the
host bridge hands to the APIC bus: ``deliver_msi(address, data)``, set by the board
(the machine's ``ApicBus.deliver_msi``), is where every function's messages go.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.address_space import AddressSpace
from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice

DEVFNS = 256


def devfn(slot: int, function: int) -> int:
    return (slot << 3) | function


def slot_pirq(device: PciDevice) -> int:
    """The PIRQ line (0 = A .. 3 = D) that ``device``'s interrupt pin drives."""
    return (device.pin_index + (device.devfn >> 3) - 1) & 3


class PciBus:
    def __init__(self, pio: AddressSpace, mmio: AddressSpace,
                 map_irq: Callable[[PciDevice], int] = slot_pirq):
        self.pio = pio
        self.mmio = mmio
        self.map_irq = map_irq
        self.devices: dict[int, PciDevice] = {}
        self.pirq_count = [0] * regs.PINS    # functions driving each PIRQ line
        self.set_pirq: Optional[Callable[[int, int], None]] = None
        self.deliver_msi: Optional[Callable[[int, int], None]] = None

    def add(self, device: PciDevice, slot: int, function: int = 0) -> PciDevice:
        number = devfn(slot, function)
        if not (0 <= slot < 32 and 0 <= function < 8):
            raise ValueError(f"PCI address {slot:02x}.{function} is out of range")
        if number in self.devices:
            raise ValueError(f"PCI address {slot:02x}.{function} is taken by {self.devices[number].name}")
        device.bus = self
        device.devfn = number
        self.devices[number] = device
        device.update_mappings()
        return device

    def free_slot(self, first: int = 1) -> int:
        """The lowest slot from ``first`` with no function."""
        used = {number >> 3 for number in self.devices}
        for slot in range(first, 32):
            if slot not in used:
                return slot
        raise ValueError("no free PCI slot")

    def read_config(self, number: int, offset: int, size: int) -> int:
        device = self.devices.get(number)
        if device is None:
            return (1 << (8 * size)) - 1
        return device.read_config(offset, size)

    def write_config(self, number: int, offset: int, size: int, value: int) -> None:
        device = self.devices.get(number)
        if device is not None:
            device.write_config(offset, size, value)

    def intx_changed(self, device: PciDevice, level: int) -> None:
        """``device``'s pin, as the bus sees it, went to ``level``."""
        pirq = self.map_irq(device)
        self.pirq_count[pirq] += 1 if level else -1
        if self.set_pirq is not None:
            self.set_pirq(pirq, self.pirq_level(pirq))

    def pirq_level(self, pirq: int) -> int:
        return 1 if self.pirq_count[pirq] else 0

    def save_state(self) -> dict:
        return {f"{number >> 3:02x}.{number & 7}": device.save_state()
                for number, device in sorted(self.devices.items())}

    def load_state(self, state: dict) -> None:
        for number, device in self.devices.items():
            device.load_state(state[f"{number >> 3:02x}.{number & 7}"])
        self.pirq_count = [0] * regs.PINS
        for device in self.devices.values():
            if device.irq_level and not device.intx_disabled:
                self.pirq_count[self.map_irq(device)] += 1
