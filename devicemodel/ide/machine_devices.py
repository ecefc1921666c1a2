"""IDE disks on a machine, as QEMU's command line makes them:

* ``-device ide-hd,drive=ID[,bus=ide.N][,unit=U][,serial=S][,model=M][,ver=V]``: a disk
  on the PIIX IDE function's bus ``ide.N`` (without ``bus=``, the first with a free
  position) at unit 0 (master) or 1 (slave) (without ``unit=``, the first free one);
* ``-drive file=...,if=ide,index=I`` (the default interface) and ``-hda``..``-hdd``
  (indexes 0-3): index I is bus I / 2, unit I % 2, as QEMU's pc machine maps it.
"""

from __future__ import annotations

from devicemodel.errors import ConfigError
from devicemodel.ide.disk import FIRMWARE, MODEL, IdeHd
from devicemodel.ide.piix import UNITS_PER_BUS

DRIVER = "ide-hd"
AUTO_UNIT = 0xFFFFFFFF           # QEMU's unit=-1: the first free one
IDE_BUSES = 2
HD_OPTIONS = ("hda", "hdb", "hdc", "hdd")


def drive_position(index: int) -> tuple[int, int]:
    """(bus, unit) of ``-drive if=ide,index=index``."""
    return index // UNITS_PER_BUS, index % UNITS_PER_BUS


def ide_device_arg(drive) -> str:
    """The ``-device`` argument that attaches an ``if=ide`` drive."""
    bus, unit = drive_position(drive.index)
    if bus >= IDE_BUSES:
        raise ConfigError(f"machine type does not support if=ide,bus={bus},unit={unit}")
    return f"{DRIVER},drive={drive.id},bus=ide.{bus},unit={unit}"


def hd_option_drive_arg(option: str, filename: str) -> str:
    """The ``-drive`` argument of ``-hda FILE`` .. ``-hdd FILE`` (QEMU's drive_add with HD_OPTS)."""
    return f"file={filename.replace(',', ',,')},index={HD_OPTIONS.index(option)},media=disk"


def create_ide_hd(machine, props):
    ide = machine.chipset.ide if machine.chipset is not None else None
    if ide is None:
        raise ConfigError(f"No 'IDE' bus found for device '{DRIVER}'")
    if props["drive"] is None:
        raise ConfigError("No drive specified")
    channel = None
    if props["bus"] is not None:
        channel = ide.ide_bus(props["bus"])
        if channel is None:
            raise ConfigError(f"Bus '{props['bus']}' not found")
    unit = props["unit"]
    if unit == AUTO_UNIT:
        free = ide.free_unit(channel)
        if free is None:
            raise ConfigError(f"IDE bus{'' if channel is None else ' ' + channel.name} has no free unit")
        channel, unit = free
    else:
        if channel is None:
            channel = ide.channels[0]
        if unit >= UNITS_PER_BUS:
            raise ConfigError(f"Can't create IDE unit {unit}, bus supports only {UNITS_PER_BUS} units")
        if channel.units[unit].disk is not None:
            raise ConfigError(f"IDE unit {unit} is in use")
    drive = machine.claim_drive(props["drive"], DRIVER)
    disk = IdeHd(drive, serial=props["serial"] or "", model=props["model"] or MODEL,
                 firmware=props["ver"] or FIRMWARE)
    ide.attach(channel, unit, disk)
    return disk
