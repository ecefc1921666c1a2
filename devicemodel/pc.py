"""The legacy devices of QEMU's pc machine, at QEMU's ports and ISA IRQs, wired to the
CPU's INTR line: 8259 PIC pair, 8254 PIT (IRQ 0) with port 0x61, MC146818 RTC (IRQ 8),
i8042 keyboard controller (IRQ 1/12), port 0x92 and the POST port 0x80; and, unless
``hpet=False``, the HPET at 0xfed00000, through which the PIT and RTC interrupts pass
(its legacy replacement mode takes IRQ 0 and IRQ 8 over from them).

``minimal=True`` gives QEMU's microvm set instead: the PIC pair, the PIT and (unless
``rtc=False``) the RTC, nothing else."""

from __future__ import annotations

from devicemodel.devices.hpet import Hpet
from devicemodel.devices.i8042 import I8042
from devicemodel.devices.i8254 import I8254, PortB
from devicemodel.devices.mc146818 import MC146818, rtc_start_time
from devicemodel.devices.system_ports import Port92, PostCodePort

IRQ_PIT, IRQ_KBD, IRQ_RTC, IRQ_MOUSE = 0, 1, 8, 12


class PcPlatform:
    def __init__(self, *, pio, clock, line, ram_size: int, request_reset, rtc_base: str = "utc",
                 mmio=None, hpet: bool = False, minimal: bool = False, rtc: bool = True):
        self.line = line
        self.a20 = 1   # the gate is tracked; addresses are never masked (as with A20 enabled)
        self.hpet = Hpet(clock, set_irq=line.set_irq) if hpet else None
        self.pit = I8254(clock, irq=self.hpet.pit_irq if hpet else line.irq_setter(IRQ_PIT))
        self.devices = [line.pic, self.pit]
        self.rtc = None
        if rtc:
            self.rtc = MC146818(clock, irq=self.hpet.rtc_irq if hpet else line.irq_setter(IRQ_RTC),
                                start_time=rtc_start_time(rtc_base))
            self.rtc.set_ram_size(min(ram_size, 0xE0000000), max(ram_size - 0xE0000000, 0))
            self.devices.append(self.rtc)
        if not minimal:
            self.port61 = PortB(self.pit)
            self.kbd = I8042(irq_kbd=line.irq_setter(IRQ_KBD), irq_mouse=line.irq_setter(IRQ_MOUSE),
                             set_a20=self._set_a20, request_reset=request_reset)
            self.port92 = Port92(set_a20=self._set_a20, request_reset=request_reset)
            self.post = PostCodePort()
            self.devices += [self.port61, self.kbd, self.port92, self.post]
        for device in self.devices:
            for region in device.regions:
                pio.add_region(region)
        if self.hpet is not None:
            mmio.add_region(self.hpet.region)

    def _set_a20(self, level: int) -> None:
        self.a20 = level
