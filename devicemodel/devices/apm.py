"""The Advanced Power Management control ports of the PIIX4 (hw/isa/apm.c in QEMU): APMC
at 0xb2, whose writes the chipset forwards (on real hardware as an SMI; here to
``command(value)``), and APMS at 0xb3, a scratch byte. ACPI's SMI_CMD is APMC: a guest
writes the FADT's ACPI_ENABLE value there to switch the machine to ACPI mode."""

from __future__ import annotations

from typing import Callable

from devicemodel.address_space import Region

APM_IOBASE = 0xB2


def _no_command(value: int) -> None:
    pass


class Apm:
    def __init__(self, command: Callable[[int], None] = _no_command, iobase: int = APM_IOBASE,
                 name: str = "apm-io"):
        self.command = command
        self.apmc = 0
        self.apms = 0
        self.region = Region(base=iobase, size=2, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1)
        self.regions = (self.region,)

    def read(self, offset: int, size: int) -> int:
        return self.apms if offset else self.apmc

    def write(self, offset: int, size: int, value: int) -> None:
        if offset:
            self.apms = value
        else:
            self.apmc = value
            self.command(value)

    def save_state(self) -> dict:
        return {"apmc": self.apmc, "apms": self.apms}

    def load_state(self, state: dict) -> None:
        self.apmc, self.apms = state["apmc"], state["apms"]
