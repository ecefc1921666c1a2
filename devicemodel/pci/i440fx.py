"""The Intel 82441FX PCI and memory controller (i440FX), function 00:00.0 of QEMU's pc
machine: the host bridge, with QEMU's identity and reset values.

Its PAM registers (0x59-0x5f, the shadowing of 0xc0000-0xfffff) and SMRAM register
(0x72) are plain storage here, as all device-specific bytes: pyhv has no BIOS ROM to
shadow and no SMM, so guest RAM stays RAM whatever they say.
"""

from __future__ import annotations

from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice

DEVICE_ID = 0x1237
REVISION = 0x02
SMRAM = 0x72
SMRAM_RESET = 0x02           # C_BASE_SEG: SMRAM at 0xa0000 when enabled


class I440fx(PciDevice):
    def __init__(self, name: str = "i440FX"):
        super().__init__(vendor_id=regs.VENDOR_INTEL, device_id=DEVICE_ID, revision=REVISION,
                         class_code=regs.CLASS_BRIDGE_HOST, name=name)
        self.config[SMRAM] = SMRAM_RESET
