"""User-creatable devices (``-device driver,prop=value,...``), after QEMU's qdev.

``DEVICE_TYPES`` names each device type with its properties; ``parse_device`` turns a
``-device`` argument into a ``DeviceSpec`` (driver and complete property values), and
the machine creates the device with ``DeviceType.create(machine, props)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from devicemodel.devices.debug_exit import DebugExit
from devicemodel.devices.pc_testdev import PcTestdev
from devicemodel.errors import ConfigError
from devicemodel.qemu_opts import parse_opts, parse_uint


@dataclass(frozen=True)
class Property:
    name: str
    default: Union[int, str]
    kind: str = "uint32"     # or "str" (a chardev id, ...)

    def parse(self, driver: str, text: str) -> Union[int, str]:
        if self.kind == "str":
            return text
        try:
            value = parse_uint(text)
        except ValueError:
            value = -1
        if not 0 <= value <= 0xFFFFFFFF:
            raise ConfigError(f"Property '{driver}.{self.name}' doesn't take value '{text}' "
                              f"(expects {self.kind})")
        return value


@dataclass(frozen=True)
class DeviceType:
    name: str
    bus: str
    description: str
    properties: tuple[Property, ...]
    create: Callable  # (machine, props: dict) -> device with .regions (and maybe .mmio_region)
    category: str = "Misc devices"   # the heading -device help lists it under, as QEMU's


DEVICE_TYPES = {
    "isa-debug-exit": DeviceType(
        name="isa-debug-exit", bus="ISA",
        description="I/O port that ends the VM with exit status (value << 1) | 1",
        properties=(Property("iobase", 0x501), Property("iosize", 2)),
        create=lambda machine, p: DebugExit(machine.request_exit, iobase=p["iobase"], iosize=p["iosize"]),
    ),
    "isa-serial": DeviceType(
        name="isa-serial", bus="ISA",
        description="16550A UART at the next free COM port, on character device 'chardev'",
        properties=(Property("chardev", "", "str"),),
        create=lambda machine, p: machine.add_isa_serial(p["chardev"]),
    ),
    "pc-testdev": DeviceType(
        name="pc-testdev", bus="ISA",
        description="QEMU's test device: I/O buffer 0xe0, page flush 0xe4, IRQ lines 0x2000-0x2017, iomem 0xff000000",
        properties=(),
        create=lambda machine, p: PcTestdev(set_irq=machine.line.set_irq, flush_page=machine.flush_guest_page),
    ),
}


@dataclass(frozen=True)
class DeviceSpec:
    """A device to create: its driver, every property's value, and the argument it came from."""

    driver: str
    props: dict
    arg: str


@dataclass(frozen=True)
class HelpRequest:
    """``-device help`` or ``-device DRIVER,help``: text to print instead of running."""

    text: str


def parse_device(arg: str) -> Union[DeviceSpec, HelpRequest]:
    pairs = parse_opts(arg, implied_key="driver")
    given = dict(pairs)
    if "help" in given and "driver" not in given:
        return HelpRequest(devices_help())
    driver = given.pop("driver", None)
    if not driver:
        raise ConfigError("Parameter 'driver' is missing")
    dtype = DEVICE_TYPES.get(driver)
    if dtype is None:
        raise ConfigError(f"'{driver}' is not a valid device model name (use -device help for a list)")
    if "help" in given:
        return HelpRequest(properties_help(dtype))
    props = {p.name: p.default for p in dtype.properties}
    by_name = {p.name: p for p in dtype.properties}
    for key, text in pairs:
        if key == "driver":
            continue
        if key not in by_name:
            raise ConfigError(f"Property '{driver}.{key}' not found")
        props[key] = by_name[key].parse(driver, text)
    return DeviceSpec(driver=driver, props=props, arg=arg)


def devices_help() -> str:
    """The device list as QEMU prints it: by category, each name with its bus."""
    categories: dict[str, list[DeviceType]] = {}
    for dtype in DEVICE_TYPES.values():
        categories.setdefault(dtype.category, []).append(dtype)
    blocks = []
    for category, dtypes in categories.items():
        lines = [f"{category}:"]
        for dtype in sorted(dtypes, key=lambda d: d.name):
            lines.append(f'name "{dtype.name}", bus {dtype.bus}, desc "{dtype.description}"')
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def properties_help(dtype: DeviceType) -> str:
    """The properties as QEMU prints them (defaults in decimal)."""
    if not dtype.properties:
        return f"There are no options for {dtype.name}."
    lines = [f"{dtype.name} options:"]
    for p in dtype.properties:
        lines.append(f"  {p.name}=<{p.kind}>".ljust(25) + f"-  (default: {p.default})")
    return "\n".join(lines)
