"""User-creatable devices (``-device driver,prop=value,...``), after QEMU's qdev.

``DEVICE_TYPES`` names each device type with its properties; ``parse_device`` turns a
``-device`` argument into a ``DeviceSpec`` (driver and complete property values), and
the machine creates the device with ``DeviceType.create(machine, props)``.

PCI devices have QEMU's ``addr`` property: the slot and optional function, in hex
(``addr=04.0``, ``addr=4``); without it the machine takes the next free slot.
``DEVICE_ALIASES`` are QEMU's short names (``virtio-blk`` is ``virtio-blk-pci`` on a PC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from devicemodel.devices.debug_exit import DebugExit
from devicemodel.devices.pc_testdev import PcTestdev
from devicemodel.errors import ConfigError
from devicemodel.ide.machine_devices import AUTO_UNIT, create_ide_hd
from devicemodel.qemu_opts import parse_bool, parse_opts, parse_uint
from devicemodel.virtio.machine_devices import (AUTO_NUM_QUEUES, AUTO_PORT_NR, VECTORS_UNSPECIFIED,
                                                create_virtconsole, create_virtio_balloon,
                                                create_virtio_balloon_pci, create_virtio_blk, create_virtio_blk_pci,
                                                create_virtio_net, create_virtio_net_pci,
                                                create_virtio_rng, create_virtio_rng_pci, create_virtio_serial,
                                                create_virtio_serial_pci, create_virtserialport)

ON_OFF_AUTO = ("on", "off", "auto")
TYPE_NAMES = {"pci-devfn": "int32"}      # how -device DRIVER,help names a kind


@dataclass(frozen=True)
class Property:
    """A property: ``kind`` is "uint32", "str" (default None: not set), "bool" (on/off),
    "OnOffAuto" (on/off/auto) or "pci-devfn" (a PCI slot[.function] in hex, default -1:
    any free slot; the value is the devfn)."""

    name: str
    default: Union[int, str, bool, None]
    kind: str = "uint32"

    def parse(self, driver: str, text: str):
        if self.kind == "str":
            return text
        if self.kind == "OnOffAuto":
            if text not in ON_OFF_AUTO:
                raise ConfigError(f"Property '{driver}.{self.name}' doesn't take value '{text}' "
                                  f"(expects on, off or auto)")
            return text
        if self.kind == "pci-devfn":
            return parse_pci_devfn(driver, self.name, text)
        if self.kind == "bool":
            try:
                return parse_bool(self.name, text)
            except ConfigError:
                raise ConfigError(f"Property '{driver}.{self.name}' doesn't take value '{text}' "
                                  f"(expects on or off)") from None
        try:
            value = parse_uint(text)
        except ValueError:
            value = -1
        if not 0 <= value <= 0xFFFFFFFF:
            raise ConfigError(f"Property '{driver}.{self.name}' doesn't take value '{text}' "
                              f"(expects {self.kind})")
        return value

    def describe_default(self) -> str:
        """As QEMU's -device NAME,help shows it: decimal numbers, true/false, quoted strings."""
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.kind in ("str", "OnOffAuto"):
            return "" if self.default is None else f'"{self.default}"'
        return str(self.default)


def parse_pci_devfn(driver: str, name: str, text: str) -> int:
    """QEMU's PCI address property: ``SLOT[.FUNCTION]`` in hex; the devfn."""
    slot_text, dot, function_text = text.partition(".")
    try:
        slot = int(slot_text, 16)
        function = int(function_text, 16) if dot else 0
    except ValueError:
        slot = function = -1
    if not (0 <= slot < 32 and 0 <= function < 8):
        raise ConfigError(f"Property '{driver}.{name}' doesn't take value '{text}' "
                          f"(expects a slot and optional function, example: 06.0 or 06)")
    return slot << 3 | function


@dataclass(frozen=True)
class DeviceType:
    name: str
    bus: str
    description: str
    properties: tuple[Property, ...]
    create: Callable  # (machine, props: dict) -> device with .regions (and maybe .mmio_region)
    category: str = "Misc devices"   # the heading -device help lists it under, as QEMU's


def _virtio_port(name: str, description: str, create: Callable) -> "DeviceType":
    return DeviceType(
        name=name, bus="virtio-serial-bus", description=description,
        properties=(Property("chardev", None, "str"), Property("name", None, "str"),
                    Property("nr", AUTO_PORT_NR)),
        create=create,
    )


def _virtio_pci(name: str, description: str, properties: tuple, create: Callable,
                category: str = "Misc devices", vectors=VECTORS_UNSPECIFIED) -> "DeviceType":
    """A virtio device on virtio-pci, with the transport's properties (QEMU's names;
    ``vectors=None``: no such property, the function has no MSI-X)."""
    transport = (Property("addr", -1, "pci-devfn"), Property("disable-legacy", "auto", "OnOffAuto"),
                 Property("disable-modern", False, "bool"))
    if vectors is not None:
        transport += (Property("vectors", vectors),)
    return DeviceType(name=name, bus="PCI", description=description, category=category, create=create,
                      properties=transport + properties)


NET_PROPERTIES = (Property("netdev", None, "str"), Property("mac", None, "str"),
                  Property("mrg_rxbuf", True, "bool"))
BALLOON_PROPERTIES = (Property("deflate-on-oom", False, "bool"), Property("guest-stats-polling-interval", 0))


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
    "virtio-blk-device": DeviceType(
        name="virtio-blk-device", bus="virtio-bus",
        description="Virtio block device (on a virtio-mmio transport)",
        properties=(Property("drive", None, "str"), Property("serial", "", "str"), Property("queue-size", 256)),
        create=create_virtio_blk,
    ),
    "virtio-rng-device": DeviceType(
        name="virtio-rng-device", bus="virtio-bus",
        description="Virtio entropy source, from the host's getrandom (on a virtio-mmio transport)",
        properties=(),
        create=create_virtio_rng,
    ),
    "virtio-serial-device": DeviceType(
        name="virtio-serial-device", bus="virtio-bus",
        description="Virtio serial bus for virtconsole/virtserialport ports (on a virtio-mmio transport)",
        properties=(Property("max_ports", 31), Property("emergency-write", True, "bool")),
        create=create_virtio_serial,
    ),
    "virtio-net-device": DeviceType(
        name="virtio-net-device", bus="virtio-bus",
        description="Virtio network device, on the -netdev backend 'netdev' (on a virtio-mmio transport)",
        properties=NET_PROPERTIES,
        create=create_virtio_net, category="Network devices",
    ),
    "virtio-net-pci": _virtio_pci(
        "virtio-net-pci", "Virtio network device, on the -netdev backend 'netdev' (PCI, modern)",
        NET_PROPERTIES, create_virtio_net_pci, category="Network devices"),
    "virtio-blk-pci": _virtio_pci(
        "virtio-blk-pci", "Virtio block device (PCI, modern)",
        (Property("drive", None, "str"), Property("serial", "", "str"), Property("queue-size", 256),
         Property("num-queues", AUTO_NUM_QUEUES)),
        create_virtio_blk_pci, category="Storage devices"),
    "virtio-rng-pci": _virtio_pci(
        "virtio-rng-pci", "Virtio entropy source, from the host's getrandom (PCI, modern)", (),
        create_virtio_rng_pci),
    "virtio-serial-pci": _virtio_pci(
        "virtio-serial-pci", "Virtio serial bus for virtconsole/virtserialport ports (PCI, modern)",
        (Property("max_ports", 31), Property("emergency-write", True, "bool")),
        create_virtio_serial_pci, category="Input devices", vectors=2),
    "virtio-balloon-pci": _virtio_pci(
        "virtio-balloon-pci", "Virtio memory balloon (PCI, modern; INTx)", BALLOON_PROPERTIES,
        create_virtio_balloon_pci, vectors=None),
    "virtio-balloon-device": DeviceType(
        name="virtio-balloon-device", bus="virtio-bus",
        description="Virtio memory balloon (on a virtio-mmio transport)",
        properties=BALLOON_PROPERTIES, create=create_virtio_balloon,
    ),
    "virtconsole": _virtio_port("virtconsole", "Virtio console port (hvc) on a character device",
                                create_virtconsole),
    "virtserialport": _virtio_port("virtserialport", "Virtio serial port on a character device",
                                   create_virtserialport),
    "ide-hd": DeviceType(
        name="ide-hd", bus="IDE", description="virtual IDE disk", category="Storage devices",
        properties=(Property("drive", None, "str"), Property("bus", None, "str"), Property("unit", AUTO_UNIT),
                    Property("serial", None, "str"), Property("model", None, "str"), Property("ver", None, "str")),
        create=create_ide_hd,
    ),
}


# QEMU's qdev aliases on x86 (qdev-monitor.c): the PCI variant of each virtio device
DEVICE_ALIASES = {"virtio-blk": "virtio-blk-pci", "virtio-rng": "virtio-rng-pci",
                  "virtio-serial": "virtio-serial-pci", "virtio-balloon": "virtio-balloon-pci",
                  "virtio-net": "virtio-net-pci"}


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
    driver = DEVICE_ALIASES.get(driver, driver)
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
            alias = "".join(f', alias "{a}"' for a, name in DEVICE_ALIASES.items() if name == dtype.name)
            lines.append(f'name "{dtype.name}", bus {dtype.bus}{alias}, desc "{dtype.description}"')
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def properties_help(dtype: DeviceType) -> str:
    """The properties as QEMU prints them (defaults in decimal)."""
    if not dtype.properties:
        return f"There are no options for {dtype.name}."
    lines = [f"{dtype.name} options:"]
    for p in dtype.properties:
        default = p.describe_default()
        kind = TYPE_NAMES.get(p.kind, p.kind)
        name = f"  {p.name}=<{kind}>"
        lines.append((name.ljust(25) if len(name) < 25 else name + " ") + "-" +
                     (f"  (default: {default})" if default else ""))
    return "\n".join(lines)
