"""The machine types of ``-M``/``-machine TYPE[,prop=value,...]``, after QEMU's:

* ``pc`` (QEMU's default, the i440FX + PIIX machine, alias of its newest version
  ``pc-i440fx-7.2``): the legacy PC devices, PCI with the PIIX4 power management
  function and ACPI tables, the HPET, fw_cfg.
* ``microvm``: QEMU's minimal machine: the 8259 PIC pair, the 8254 PIT, the RTC, an
  ISA serial port, fw_cfg; no PCI, no keyboard controller or system ports, no ACPI,
  no HPET. Its firmware tables are the MP table (processors and the I/O APIC).

Properties are QEMU's names; pyhv has the ones listed per type, and refuses the others
(and values it cannot honour) with a "not supported" error. ``accel=kvm`` is accepted
on both (pyhv is a KVM-style hypervisor); booleans take on/off/yes/no/true/false and
OnOffAuto properties also auto.

``-accel [accel=]kvm[,apicv=on|off]`` names the accelerator and its properties, as
QEMU's -accel does; ``apicv`` is pyhv's: whether the local APICs run on the
processor's APIC virtualization (on by default, as KVM's enable_apicv).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from devicemodel.errors import ConfigError
from devicemodel.qemu_opts import parse_opts

TRUE_WORDS = ("on", "yes", "true", "y")
FALSE_WORDS = ("off", "no", "false", "n")


@dataclass(frozen=True)
class MachineOptions:
    """What the machine is made of."""

    type: str = "pc"
    acpi: bool = True
    hpet: bool = True
    rtc: bool = True
    isa_serial: bool = True

    @property
    def pci(self) -> bool:
        return self.type == "pc"


@dataclass(frozen=True)
class MachineProperty:
    name: str
    kind: str                 # "bool" or "OnOffAuto" (QEMU's type names, for help)
    description: str
    attribute: str = ""       # the MachineOptions field it sets
    supported: tuple = ()     # the values pyhv honours (after on/off normalisation); () = all
    auto: bool = True         # what auto means for pyhv


@dataclass(frozen=True)
class MachineType:
    name: str
    description: str
    defaults: MachineOptions
    properties: tuple = field(default_factory=tuple)
    aliases: tuple = ()


ACCEL = MachineProperty("accel", "string", "Accelerator list (pyhv: kvm)")

MACHINE_TYPES = {
    "pc": MachineType(
        name="pc", description="Standard PC (i440FX + PIIX, 1996)", aliases=("pc-i440fx-7.2",),
        defaults=MachineOptions(type="pc"),
        properties=(
            ACCEL,
            MachineProperty("acpi", "OnOffAuto", "Enable ACPI", "acpi"),
            MachineProperty("hpet", "bool", "Enable/disable high precision event timer emulation", "hpet"),
            MachineProperty("pit", "OnOffAuto", "Enable i8254 PIT", supported=(True,)),
            MachineProperty("pic", "OnOffAuto", "Enable i8259 PIC", supported=(True,)),
            MachineProperty("i8042", "bool", "", supported=(True,)),
            MachineProperty("smm", "OnOffAuto", "Enable SMM", supported=(False,), auto=False),
            MachineProperty("sata", "bool", "Enable/disable Serial ATA bus", supported=(False,)),
            MachineProperty("usb", "bool", "Set on/off to enable/disable usb", supported=(False,)),
            MachineProperty("graphics", "bool", "Set on/off to enable/disable graphics emulation",
                            supported=(False,)),
        )),
    "microvm": MachineType(
        name="microvm", description="microvm (i386)",
        defaults=MachineOptions(type="microvm", acpi=False, hpet=False),
        properties=(
            ACCEL,
            MachineProperty("rtc", "OnOffAuto", "Enable MC146818 RTC", "rtc"),
            MachineProperty("isa-serial", "bool", "Set off to disable the instantiation an ISA serial port",
                            "isa_serial"),
            MachineProperty("pit", "OnOffAuto", "Enable i8254 PIT", supported=(True,)),
            MachineProperty("pic", "OnOffAuto", "Enable i8259 PIC", supported=(True,)),
            MachineProperty("acpi", "OnOffAuto", "Enable ACPI", supported=(False,), auto=False),
            MachineProperty("pcie", "OnOffAuto", "Enable PCIe", supported=(False,), auto=False),
            MachineProperty("smm", "OnOffAuto", "Enable SMM", supported=(False,), auto=False),
            MachineProperty("graphics", "bool", "Set on/off to enable/disable graphics emulation",
                            supported=(False,)),
        )),
}


@dataclass(frozen=True)
class AccelOptions:
    """The accelerator's properties (-accel)."""

    apicv: bool = True


ACCEL_PROPERTIES = {"apicv": "bool"}


def parse_accel(text: str, current: AccelOptions = None) -> Union[AccelOptions, str]:
    """``-accel`` argument -> options, or the help text to print."""
    pairs = parse_opts(text, implied_key="accel")
    given = dict(pairs)
    if "help" in given and "accel" not in given:
        return "Accelerators supported in pyhv binary:\nkvm"
    if given.get("accel", "kvm") != "kvm":
        raise ConfigError(f"accelerator '{given['accel']}' is not supported: pyhv's only accelerator is kvm")
    if "help" in given:
        return "kvm-accel options:\n  apicv=<bool>           - the local APICs on the processor's APIC " \
               "virtualization (default: on)"
    options = current or AccelOptions()
    for key, value in pairs:
        if key == "accel":
            continue
        if key not in ACCEL_PROPERTIES:
            raise ConfigError(f"Property 'kvm-accel.{key}' not found")
        word = value.lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ConfigError(f"Parameter '{key}' expects on or off, not '{value}'")
        options = replace(options, **{key: word in TRUE_WORDS})
    return options


def _find_type(name: str) -> MachineType:
    for mtype in MACHINE_TYPES.values():
        if name == mtype.name or name in mtype.aliases:
            return mtype
    raise ConfigError(f"unsupported machine type '{name}' (use -machine help for a list)")


def _parse_value(mtype: MachineType, prop: MachineProperty, text: str):
    word = text.lower()
    if prop.kind == "string":
        if text != "kvm":
            raise ConfigError(f"accelerator '{text}' is not supported: pyhv's only accelerator is kvm")
        return text
    if word in TRUE_WORDS:
        value = True
    elif word in FALSE_WORDS:
        value = False
    elif word == "auto" and prop.kind == "OnOffAuto":
        value = prop.auto
    else:
        allowed = "on, off or auto" if prop.kind == "OnOffAuto" else "on or off"
        raise ConfigError(f"Parameter '{prop.name}' expects {allowed}, not '{text}'")
    if prop.supported and value not in prop.supported:
        raise ConfigError(f"{prop.name}={text} is not supported by pyhv's {mtype.name} machine")
    return value


def parse_machine(text: str, current: MachineOptions = None) -> Union[MachineOptions, str]:
    """``-machine`` argument -> options (a later -machine adds to an earlier one, as in
    QEMU), or the help text to print."""
    pairs = parse_opts(text, implied_key="type")
    given = dict(pairs)
    if "help" in given and "type" not in given:
        return machines_help()
    if "type" in given:
        mtype = _find_type(given["type"])
        options = mtype.defaults
    else:
        options = current or MACHINE_TYPES["pc"].defaults
        mtype = MACHINE_TYPES[options.type]
    if "help" in given:
        return properties_help(mtype)
    by_name = {p.name: p for p in mtype.properties}
    for key, value in pairs:
        if key == "type":
            continue
        prop = by_name.get(key)
        if prop is None:
            raise ConfigError(f"machine property '{key}' is not supported by pyhv's {mtype.name} machine "
                              f"(use -machine {mtype.name},help for a list)")
        parsed = _parse_value(mtype, prop, value)
        if prop.attribute:
            options = replace(options, **{prop.attribute: parsed})
    return options


def machines_help() -> str:
    lines = ["Supported machines are:"]
    for mtype in MACHINE_TYPES.values():
        lines.append(f"{mtype.name:<20} {mtype.description}"
                     + (f" (alias of {mtype.aliases[0]})" if mtype.aliases else ""))
        for alias in mtype.aliases:
            lines.append(f"{alias:<20} {mtype.description}" + (" (default)" if mtype.name == "pc" else ""))
    return "\n".join(lines)


def properties_help(mtype: MachineType) -> str:
    lines = [f"{mtype.name}-machine options:"]
    for prop in sorted(mtype.properties, key=lambda p: p.name):
        notes = [prop.description] if prop.description else []
        if prop.supported:
            notes.append(f"(pyhv: {'on' if prop.supported[0] else 'off'} only)")
        line = f"  {prop.name}=<{prop.kind}>"
        lines.append(line.ljust(25) + "- " + " ".join(notes) if notes else line)
    return "\n".join(lines)
