"""The APIC bus: interrupt messages between the local APICs (IPIs), from the I/O APICs
(redirection entries) and from PCI devices (MSIs), and EOI broadcasts back to the I/O
APICs (SDM Vol. 3 "Message Signalled Interrupts", "Determining IPI Destination").

Destinations, among the local APICs that are globally enabled:

* physical: the APIC whose ID equals the destination; all of them for the broadcast ID
  (0xff, or 0xffffffff from an APIC in x2APIC mode);
* logical, xAPIC: the message destination address (MDA, 8 bits) against each APIC's
  logical ID (LDR bits 31:24) in the model its DFR selects: flat (a bit in common) or
  cluster (same cluster in bits 7:4, a bit in common in bits 3:0); 0xff reaches all;
* logical, x2APIC: cluster ID in bits 31:16, a bit mask in 15:0, against the LDR;
  0xffffffff reaches all;
* shorthands: self, all including self, all excluding self.

Lowest priority delivers to one of the destinations: the focus processor (one that has
the vector pending or in service, with focus checking enabled in its SVR), else the one
whose TPR is lowest, the first in APIC order among equals (QEMU takes the first).

MSI (``deliver_msi``): address 0xfeeXXXXX with the destination ID in bits 19:12, the
redirection hint in bit 3 (with logical destinations: lowest priority) and the
destination mode in bit 2; data with the vector in bits 7:0, the delivery mode in
10:8, the level in bit 14 and the trigger mode in bit 15 (a level-triggered deassert
message does nothing).
"""

from __future__ import annotations

from devicemodel.devices.apic import (DFR, DISABLED, FIXED, LDR, LOWEST, SHORTHAND_ALL, SHORTHAND_OTHERS,
                                      SHORTHAND_SELF, SMI, TPR, X2APIC)

MSI_ADDRESS_BASE = 0xFEE00000
MSI_ADDRESS_MASK = 0xFFF00000


class ApicBus:
    def __init__(self):
        self.apics = []
        self.ioapics = []

    def add_apic(self, apic) -> None:
        self.apics.append(apic)

    def add_ioapic(self, ioapic) -> None:
        self.ioapics.append(ioapic)

    # ---- messages ---------------------------------------------------------------------------

    def send_ipi(self, source, *, vector: int, delivery_mode: int, logical: bool = False,
                 level_triggered: bool = False, shorthand: int = 0, dest: int = 0) -> None:
        """An IPI from ``source``'s ICR (or SELF IPI)."""
        if shorthand == SHORTHAND_SELF:
            targets = [source]
        elif shorthand == SHORTHAND_ALL:
            targets = self._enabled()
        elif shorthand == SHORTHAND_OTHERS:
            targets = [apic for apic in self._enabled() if apic is not source]
        else:
            targets = self.destinations(dest, logical, x2apic_format=source.mode == X2APIC)
        self._deliver(targets, delivery_mode, vector, level_triggered)

    def deliver(self, *, dest: int, logical: bool, delivery_mode: int, vector: int,
                level_triggered: bool, lowest_priority: bool = False) -> int:
        """A message with an 8-bit destination: from an I/O APIC, or an MSI; returns how
        many local APICs received it."""
        if lowest_priority and delivery_mode == FIXED:
            delivery_mode = LOWEST
        return self._deliver(self.destinations(dest, logical, x2apic_format=False), delivery_mode, vector,
                      level_triggered)

    def deliver_msi(self, address: int, data: int) -> int:
        """A PCI device's MSI/MSI-X write of ``data`` to ``address``; how many local
        APICs received it."""
        if address & MSI_ADDRESS_MASK != MSI_ADDRESS_BASE:
            return 0
        level_triggered = bool(data & (1 << 15))
        if level_triggered and not data & (1 << 14):
            return 0
        logical = bool(address & (1 << 2))
        return self.deliver(dest=(address >> 12) & 0xFF, logical=logical, delivery_mode=(data >> 8) & 7,
                     vector=data & 0xFF, level_triggered=level_triggered,
                     lowest_priority=logical and bool(address & (1 << 3)))

    def broadcast_eoi(self, vector: int) -> None:
        """A local APIC's EOI of a level-triggered vector."""
        for ioapic in self.ioapics:
            ioapic.eoi(vector)

    # ---- destinations -----------------------------------------------------------------------

    def _enabled(self) -> list:
        return [apic for apic in self.apics if apic.mode != DISABLED]

    def destinations(self, dest: int, logical: bool, x2apic_format: bool) -> list:
        broadcast = 0xFFFFFFFF if x2apic_format else 0xFF
        if dest == broadcast:
            return self._enabled()
        if not logical:
            return [apic for apic in self._enabled() if apic.apic_id() == dest]
        return [apic for apic in self._enabled() if _logical_match(apic, dest)]

    def _deliver(self, targets: list, delivery_mode: int, vector: int, level_triggered: bool) -> int:
        if delivery_mode == SMI or not targets:
            return 0
        if delivery_mode == LOWEST:
            targets = [_lowest_priority(targets, vector)]
        for apic in targets:
            apic.receive(delivery_mode, vector, level_triggered)
        return len(targets)


def _logical_match(apic, dest: int) -> bool:
    ldr = apic.read32(LDR)
    if apic.mode == X2APIC:
        return (dest >> 16) == (ldr >> 16) and bool(dest & ldr & 0xFFFF)
    mda, logical_id, model = dest & 0xFF, ldr >> 24, apic.read32(DFR) >> 28
    if model == 0xF:
        return bool(mda & logical_id)
    if model == 0x0:
        return (mda >> 4) == (logical_id >> 4) and bool(mda & logical_id & 0xF)
    return False


def _lowest_priority(targets: list, vector: int):
    for apic in targets:
        if apic.is_focus_for(vector):
            return apic
    return min(targets, key=lambda apic: apic.read32(TPR) & 0xF0)
