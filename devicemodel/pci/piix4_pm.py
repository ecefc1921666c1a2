"""The PIIX4 power management function (Intel 82371AB function 3), 00:01.3 of QEMU's pc
machine, after QEMU's hw/acpi/piix4.c: the ACPI registers and the APM ports.

Configuration registers beyond the header: PMBA (0x40, bits 15:6 the base of the 64-byte
ACPI register block, bit 0 reads 1) and PMREGMISC (0x80, bit 0 enables the block), which
QEMU's firmware sets to 0x600 and 1; the block is placed in the port space whenever
either changes. The SCI is ISA IRQ 9 (``set_sci``). The APM control port at 0xb2 is
the FADT's SMI_CMD: QEMU's ACPI_ENABLE (0xf1) sets PM1a_CNT.SCI_EN, ACPI_DISABLE (0xf0)
clears it.

Like QEMU's, the function reports in 0x5f/0x63/0x67 which legacy ports exist (the
parallel port, COM1, COM2) and marks SMM as already initialized (0x5b bit 1), since
there is no SMM. There is no SMBus controller: its registers (0x90, 0xd2) are storage.
"""

from __future__ import annotations

from devicemodel.devices.acpi_pm import AcpiPm
from devicemodel.devices.apm import Apm
from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice

DEVICE_ID = 0x7113
REVISION = 0x03
PMBA = 0x40
PMBA_IO_SPACE = 0x01           # read-only: the block is in I/O space
PMBA_MASK = 0xFFC0
PMREGMISC = 0x80
PMIOSE = 0x01                  # PM I/O space enable
SMM_INITED = (0x5B, 0x02)
ACPI_ENABLE = 0xF1
ACPI_DISABLE = 0xF0
DEFAULT_PM_BASE = 0x600


class Piix4Pm(PciDevice):
    def __init__(self, pio, clock, set_sci, power_off, suspend, timer_bits: int = 24,
                 com_ports=(), parallel: bool = False, name: str = "PIIX4_PM"):
        super().__init__(vendor_id=regs.VENDOR_INTEL, device_id=DEVICE_ID, revision=REVISION,
                         class_code=regs.CLASS_BRIDGE_OTHER, interrupt_pin=1, name=name)
        self.pio = pio
        self.set(regs.STATUS, 2, regs.STATUS_FAST_BACK | regs.STATUS_DEVSEL_MEDIUM)
        self.set_wmask(PMBA, 4, PMBA_MASK)
        self.pm = AcpiPm(clock, set_sci=set_sci, power_off=power_off, suspend=suspend,
                         timer_bits=timer_bits, name="acpi")
        self.apm = Apm(command=self._apm_command)
        self.mapped_base = None
        # QEMU's piix4_pm_machine_ready(): which legacy devices exist
        self.config[0x5F] = 0x10 | (0x80 if parallel else 0)
        self.config[0x63] = 0x60
        self.config[0x67] = (0x08 if 0x3F8 in com_ports else 0) | (0x90 if 0x2F8 in com_ports else 0)
        self.reset()

    def reset(self) -> None:
        self.config[0x58:0x5C] = bytes(4)
        self.config[SMM_INITED[0]] = SMM_INITED[1]
        self.set(PMBA, 4, PMBA_IO_SPACE)
        self.config[PMREGMISC] = 0
        self.pm.reset()
        self._update_io()

    @property
    def pm_base(self) -> int:
        return self.get(PMBA, 4) & PMBA_MASK

    def write_config(self, offset: int, size: int, value: int) -> None:
        super().write_config(offset, size, value)
        end = offset + size
        if offset <= PMREGMISC < end or (offset < PMBA + 4 and PMBA < end):
            self._update_io()

    def _update_io(self) -> None:
        """Place the ACPI register block where PMBA says while PMREGMISC enables it."""
        base = self.pm_base if self.config[PMREGMISC] & PMIOSE else None
        if base == self.mapped_base:
            return
        if self.mapped_base is not None:
            for region in self.pm.regions:
                self.pio.remove_region(region)
        self.mapped_base = base
        if base is not None:
            self.pm.set_base(base)
            for region in self.pm.regions:
                self.pio.add_region(region, overlap=True)   # the guest chose it: QEMU lets it cover others

    def _apm_command(self, value: int) -> None:
        if value in (ACPI_ENABLE, ACPI_DISABLE):
            self.pm.set_sci_enable(value == ACPI_ENABLE)

    def save_state(self) -> dict:
        return {**super().save_state(), "pm": self.pm.save_state(), "apm": self.apm.save_state()}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.pm.load_state(state["pm"])
        self.apm.load_state(state["apm"])
        self._update_io()
