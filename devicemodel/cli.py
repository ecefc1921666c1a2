"""The ``pyhv`` command line, spelled like QEMU's (``-opt`` or ``--opt``).

Exit status: the guest's isa-debug-exit status ``(v << 1) | 1`` (modulo 256, as for
QEMU) if the guest wrote one, else 0 -- also when the user stops the VM with Ctrl-C or
SIGTERM, as QEMU does ("terminating on signal 2"); 1 for any error, reported as one
line ``pyhv: <message>`` on stderr.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.resources
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Optional, Union

import devicemodel
from devicemodel.block.drive import parse_drive
from devicemodel.ide.machine_devices import HD_OPTIONS, hd_option_drive_arg, ide_device_arg
from devicemodel.chardev import check_chardev_spec, parse_chardev_option
from devicemodel.cpu_models import parse_cpu
from devicemodel.devices.mc146818 import rtc_start_time
from devicemodel.errors import ConfigError, PyhvError, error_report
from devicemodel.gdbstub.spec import DEFAULT_SPEC, parse_gdb_spec
from devicemodel.log import log_items_help, parse_log_items
from devicemodel.machine import DEFAULT_RAM_SIZE, Machine, MachineConfig
from devicemodel.machine_types import parse_accel, parse_machine
from devicemodel.net.netdev import parse_netdev_option
from devicemodel.pidfile import PidFile
from devicemodel.qdev import HelpRequest, parse_device
from devicemodel.qemu_opts import parse_opts
from devicemodel.smp import MAX_CPUS, parse_smp

MAX_RAM_SIZE = 1 << 40
RAM_ALIGN = 4096
DEFAULT_GUEST = ("guests", "default.elf")

HELP = """\
usage: pyhv [options]

Boot a Multiboot kernel in a VM on pyhv's emulated VT-x processor. Options are
spelled as in QEMU; --opt works like -opt.

Standard options:
-h or -help        display this help and exit
-version           display version information and exit
-m [size=]megs     guest RAM size (default 128 MiB); a bare number is MiB,
                   or use a suffix K, M, G or T (at most 1 TiB, 4 KiB-aligned)
-smp [cpus=]n[,maxcpus=n][,sockets=s][,dies=d][,cores=c][,threads=t]
                   the number of vCPUs (at most %d) and their topology; vCPU 0
                   boots, the others wait for INIT/SIPI
-device driver[,prop=value[,...]]
                   add device 'driver' with the given properties
                   (-device help lists the devices, -device driver,help
                   the properties of one)
-no-reboot         exit with status 0 when the guest resets (triple fault, keyboard
                   controller, port 0x92, 0xcf9) instead of resetting the machine
-no-shutdown       pause the VM when the guest shuts down, instead of exiting

Block device options:
-drive file=file[,if=ide|virtio|none][,format=raw|qcow2][,id=name][,index=i]
       [,media=disk][,readonly=on|off][,snapshot=on|off]
       [,cache=writeback|none|writethrough|directsync|unsafe]
                   use 'file' as a disk image; if=ide (the default) adds an IDE
                   disk for it (index 0-3: primary master, primary slave,
                   secondary master, secondary slave), if=virtio a
                   virtio-blk-pci, if=none leaves it to -device
                   ide-hd|virtio-blk-...,drive=name
-hda/-hdb file     use 'file' as IDE hard disk 0/1 image
-hdc/-hdd file     use 'file' as IDE hard disk 2/3 image
-snapshot          write to temporary files instead of disk image files

Network options:
-netdev socket,id=str,listen=[host]:port | connect=host:port
                   a network backend: frames over TCP to another pyhv or QEMU
                   (each after its 4-byte big-endian length, as QEMU frames them)
-netdev socket,id=str,udp=host:port,localaddr=host:port
                   a network backend: a frame per UDP datagram
-netdev tap,id=str[,ifname=name][,script=no,downscript=no]
                   a network backend: the host's tap interface 'name'
                   (pyhv runs no scripts)
-device virtio-net-pci,netdev=str[,mac=52:54:00:12:34:56]
                   a NIC on a backend (virtio-net-device on virtio-mmio)

Boot options:
-kernel file       boot 'file': a Multiboot kernel, a Linux bzImage, or an ELF
                   with the PVH entry note (an uncompressed Linux vmlinux)
                   (default: pyhv's bundled guest)
-append cmdline    use 'cmdline' as the kernel command line
-initrd file       use 'file' as the initial ram disk (Linux bzImage and PVH kernels)

Machine and processor:
-M/-machine [type=]name[,prop=value[,...]]
                   the machine: pc (default; i440FX + PIIX, ACPI, HPET) or
                   microvm (no PCI, no ACPI); -machine help lists them,
                   -machine name,help their properties
-accel [accel=]kvm[,apicv=on|off]
                   the accelerator, kvm; apicv=off runs the local APICs without
                   the processor's APIC virtualization (every access exits)
-cpu model[,+feature|-feature|feature=on|off[,...]][,enforce]
                   the processor model and CPUID features (-cpu help lists
                   them); only features pyhv's processor implements
-rtc base=utc|localtime|date[,clock=vm][,driftfix=none]
                   the RTC's starting time (date: 2006-06-17T16:01:21 or 2006-06-17)
-no-acpi           the same as -machine acpi=off
-no-hpet           the same as -machine hpet=off
-no-shutdown       when the guest powers off, stop the VM but do not exit
                   (quit with Ctrl-C)
-name [guest=]name the guest's name
-pidfile file      write the process ID to 'file' (removed at exit)

Display and serial ports:
-nographic         no graphical output; serial port 0 goes to stdio (pyhv has no
                   graphical display, so this is always so)
-display none      no display: serial port 0 goes nowhere unless -serial says so
-nodefaults        no default devices: no serial port unless -serial adds one
-serial dev        connect the next serial port (COM1..COM4) to host character
                   device 'dev': stdio, null, none or file:PATH (default: stdio)
-debugcon dev      the debug console (isa-debugcon, port 0xe9) to character device 'dev'

Character devices ('dev' above and below): stdio, null, file:PATH, pty,
tcp:[HOST]:PORT[,server=on|off][,wait=on|off] (or ,server,nowait),
unix:PATH[,server=on|off][,wait=on|off], mon:DEV (shared with a monitor: C-a c
switches, C-a x quits, C-a h helps), chardev:ID
-chardev backend,id=ID[,mux=on][,...]
                   define character device ID: backend stdio, null, pty,
                   file (path=), socket (host=,port= or path=; server=, wait=)

Monitors:
-monitor dev       the human monitor (HMP, prompt "(pyhv) ") on character device
                   'dev' (stdio: with completion and history on a terminal), or none
-qmp dev           the QEMU Monitor Protocol (QMP, JSON) on character device 'dev',
                   e.g. unix:PATH,server,nowait or tcp:127.0.0.1:4444,server,nowait

Debugging:
-S                 do not start the vCPUs at startup (the monitor's 'cont' or gdb's
                   'continue' starts them)
-gdb dev           accept a gdb connection on 'dev': tcp:[host]:port (or none)
-s                 shorthand for -gdb tcp::1234
-d item1[,...]     log the given items (-d help lists them; -d exits traces every
                   VM exit, -d exits-summary prints a table of them at the end)
-D logfile         write the -d output to 'logfile' instead of stderr

Ctrl-C stops the VM. The exit status is the guest's isa-debug-exit status
if it wrote one, else 0; errors exit with 1.""" % MAX_CPUS

# Options and whether they take an argument.
OPTIONS = {
    "h": False, "help": False, "version": False, "nographic": False, "no-reboot": False, "snapshot": False,
    "kernel": True, "append": True, "initrd": True, "m": True, "serial": True, "debugcon": True, "device": True, "d": True, "D": True,
    "smp": True, "S": False,
    "M": True, "machine": True, "accel": True, "cpu": True, "rtc": True, "name": True, "pidfile": True, "display": True,
    "nodefaults": False, "no-shutdown": False, "no-acpi": False, "no-hpet": False,
    # the monitors and character devices
    "chardev": True, "drive": True, "monitor": True, "qmp": True, "netdev": True,
    "hda": True, "hdb": True, "hdc": True, "hdd": True,
    "gdb": True, "s": False,
}

# QEMU's options that pyhv does not have (and whether they take an argument): refused
# as such, never taken for typos nor silently accepted.
UNSUPPORTED_OPTIONS = {
    "acpitable": True, "add-fd": True, "audiodev": True, "bios": True, "blockdev": True,
    "boot": True, "cdrom": True, "chroot": True, "compat": True, "daemonize": False,
    "dtb": True, "echr": True, "enable-kvm": False, "fda": True, "fdb": True, "fsdev": True,
    "full-screen": False, "fw_cfg": True, "g": True, "global": True, "icount": True, "incoming": True, "iscsi": True, "k": True,
    "loadvm": True, "mem-path": True, "mem-prealloc": False, "msg": True, "mtdblock": True,
    "net": True, "nic": True, "no-user-config": False, "numa": True, "object": True,
    "option-rom": True, "overcommit": True, "parallel": True, "pflash": True, "plugin": True,
    "preconfig": False, "readconfig": True, "runas": True, "run-with": True, "sandbox": True,
    "sd": True, "semihosting": False, "semihosting-config": True, "set": True, "smbios": True,
    "spice": True, "tpmdev": True, "trace": True, "usb": False, "usbdevice": True,
    "uuid": True, "vga": True, "virtfs": True, "vnc": True, "watchdog-action": True,
    "xen-domid": True,
}
DISPLAYS = ("none",)
QEMU_DISPLAYS = ("gtk", "sdl", "vnc", "curses", "egl-headless", "spice-app", "dbus", "cocoa")


def version_text() -> str:
    try:
        version = importlib.metadata.version("pyhv")
    except importlib.metadata.PackageNotFoundError:
        version = devicemodel.__version__
    return (f"pyhv version {version}\n"
            f"Copyright (c) 2025 the pyhv developers; QEMU-style VMM on a KVM-style hypervisor "
            f"over an emulated VT-x CPU")


def parse_ram_size(text: str) -> int:
    """``-m [size=]N[K|M|G|T]`` in bytes; a bare number is MiB (QEMU's rule). The caller
    names the option in error messages."""
    size_text = None
    for key, value in parse_opts(text, implied_key="size"):
        if key != "size":
            raise ConfigError(f"parameter '{key}' is not supported")
        size_text = value
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bBkKmMgGtT]?)", size_text or "")
    if not match:
        raise ConfigError(f"invalid RAM size '{size_text}' "
                          f"(a number of MiB, or a number with suffix K, M, G or T)")
    number, suffix = match.groups()
    shift = {"": 20, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}[suffix.lower()]
    try:
        exact = Decimal(number) * (1 << shift)
    except InvalidOperation:
        exact = Decimal(-1)
    if exact != exact.to_integral_value():
        raise ConfigError("RAM size is not a whole number of bytes")
    size = int(exact)
    if size <= 0:
        raise ConfigError("RAM size must be greater than 0")
    if size > MAX_RAM_SIZE:
        raise ConfigError("RAM size is too large (at most 1 TiB)")
    if size % RAM_ALIGN:
        raise ConfigError("RAM size must be a multiple of 4 KiB")
    return size


def parse_command_line(argv: list[str]) -> Union[MachineConfig, str]:
    """The machine to run, or the text to print when the options ask for help or version.

    ``MachineConfig.kernel`` is empty when no -kernel was given (the bundled guest).
    """
    config = MachineConfig(kernel="", ram_size=DEFAULT_RAM_SIZE, serials=[])
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            raise ConfigError(f"{arg}: disk images are not supported; boot a kernel with -kernel FILE")
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if name in UNSUPPORTED_OPTIONS:
            raise ConfigError(f"{arg}: this QEMU option is not supported by pyhv")
        if name not in OPTIONS:
            raise ConfigError(f"{arg}: invalid option")
        value = ""
        if OPTIONS[name]:
            if i == len(argv):
                raise ConfigError(f"{arg}: requires an argument")
            value = argv[i]
            i += 1
        try:
            early = _apply(config, name, value)
        except ConfigError as e:
            raise ConfigError(f"{arg} {value}: {e}" if OPTIONS[name] else f"{arg}: {e}") from None
        if early is not None:
            return early
    if config.nographic and config.display is not None:
        raise ConfigError("-nographic cannot be used with -display")
    if not config.serials and not config.nodefaults:
        # QEMU's default serial port: stdio with -nographic; a console on the display
        # otherwise, which with -display none nobody sees. pyhv has no other display.
        config.serials = ["null" if config.display == "none" else "stdio"]
    _check_single_stdio(config)
    return config


def _check_single_stdio(config: MachineConfig) -> None:
    """Only one front end may use stdio (a mux shares it: mon:stdio, mux=on)."""
    uses = [("-serial", spec) for spec in config.serials] + [("-monitor", spec) for spec in config.monitors]
    uses += [("-qmp", spec) for spec in config.qmp] + [("-debugcon", config.debugcon)]
    uses += [("-chardev", definition.spec) for definition in config.chardevs]
    stdio = [option for option, spec in uses if spec in ("stdio", "mon:stdio")]
    if len(stdio) > 1:
        raise ConfigError(f"{stdio[1]} stdio: cannot use stdio by multiple character devices")


def _apply(config: MachineConfig, name: str, value: str) -> Optional[str]:
    """Record one option in ``config``; text to print instead of running, if any."""
    if name in ("h", "help"):
        return HELP
    if name == "version":
        return version_text()
    if name == "kernel":
        if not value:
            raise ConfigError("kernel file name is empty")
        config.kernel = value
    elif name == "append":
        config.cmdline = value
    elif name == "initrd":
        if not value:
            raise ConfigError("initrd file name is empty")
        config.initrd = value
    elif name == "m":
        config.ram_size = parse_ram_size(value)
    elif name == "serial":
        if value != "none":
            check_chardev_spec(value)
        config.serials.append(value)
    elif name == "debugcon":
        check_chardev_spec(value)
        config.debugcon = value
    elif name == "device":
        device = parse_device(value)
        if isinstance(device, HelpRequest):
            return device.text
        config.devices.append(device)
    elif name in ("drive",) + HD_OPTIONS:
        drive = parse_drive(value if name == "drive" else hd_option_drive_arg(name, value), config.drives)
        config.drives.append(drive)
        if drive.interface == "virtio":
            config.devices.append(parse_device(f"virtio-blk,drive={drive.id}"))   # QEMU's alias: -pci
        elif drive.interface == "ide":
            config.devices.append(parse_device(ide_device_arg(drive)))
    elif name == "netdev":
        netdev = parse_netdev_option(value)
        if any(spec.id == netdev.id for spec in config.netdevs):
            raise ConfigError(f"Duplicate ID '{netdev.id}' for netdev")
        config.netdevs.append(netdev)
    elif name == "snapshot":
        config.snapshot = True
    elif name == "d":
        if value == "help":
            return log_items_help()
        config.log_items = config.log_items | parse_log_items(value)
    elif name == "D":
        config.log_file = value
    elif name == "no-reboot":
        config.no_reboot = True
    elif name == "smp":
        config.cpus = parse_smp(value).cpus
    elif name == "S":
        config.start_paused = True
    elif name in ("M", "machine"):
        machine = parse_machine(value, config.machine)
        if isinstance(machine, str):
            return machine
        config.machine = machine
    elif name == "accel":
        accel = parse_accel(value, config.accel)
        if isinstance(accel, str):
            return accel
        config.accel = accel
    elif name == "no-acpi":
        config.machine = parse_machine("acpi=off", config.machine)
    elif name == "no-hpet":
        config.machine = parse_machine("hpet=off", config.machine)
    elif name == "cpu":
        cpu = parse_cpu(value)
        if isinstance(cpu, str):
            return cpu
        config.cpu = cpu
    elif name == "rtc":
        config.rtc_base = parse_rtc(value)
    elif name == "name":
        config.name = parse_name(value)
    elif name == "pidfile":
        if not value:
            raise ConfigError("PID file name is empty")
        config.pidfile = value
    elif name == "display":
        config.display = parse_display(value)
    elif name == "nographic":
        config.nographic = True
    elif name == "nodefaults":
        config.nodefaults = True
    elif name == "no-shutdown":
        config.no_shutdown = True
    elif name == "chardev":
        config.chardevs.append(parse_chardev_option(value))
    elif name in ("monitor", "qmp"):
        if value != "none":
            check_chardev_spec(value)
            (config.monitors if name == "monitor" else config.qmp).append(value)
    elif name in ("gdb", "s"):
        config.gdb = value if name == "gdb" else DEFAULT_SPEC
        parse_gdb_spec(config.gdb)
    return None


def parse_rtc(text: str) -> str:
    """``-rtc base=...,clock=...,driftfix=...``: the RTC's base (validated)."""
    base = "utc"
    for key, value in parse_opts(text):
        if key == "base":
            rtc_start_time(value)          # a bad date fails here
            base = value
        elif key == "clock":
            if value not in ("host", "rt", "vm"):
                raise ConfigError(f"invalid option value '{value}' for clock (host, rt or vm)")
            if value != "vm":
                raise ConfigError(f"clock={value} is not supported: pyhv's RTC runs on the VM's clock "
                                  f"(clock=vm), which stops while the VM does")
        elif key == "driftfix":
            if value not in ("none", "slew"):
                raise ConfigError(f"invalid option value '{value}' for driftfix (none or slew)")
            if value != "none":
                raise ConfigError("driftfix=slew is not supported: pyhv's RTC loses no interrupts to catch up")
        else:
            raise ConfigError(f"Invalid parameter '{key}' (base, clock and driftfix are)")
    return base


def parse_name(text: str) -> str:
    """``-name NAME`` or ``-name guest=NAME``."""
    name = None
    for key, value in parse_opts(text, implied_key="guest"):
        if key != "guest":
            raise ConfigError(f"parameter '{key}' is not supported (pyhv takes the guest name only)")
        name = value
    if not name:
        raise ConfigError("the guest name is empty")
    return name


def parse_display(text: str) -> str:
    kind = parse_opts(text, implied_key="type")[0][1] if text else ""
    if kind in QEMU_DISPLAYS:
        raise ConfigError(f"display '{kind}' is not supported: pyhv has no graphical display "
                          f"(use -display none or -nographic)")
    if kind not in DISPLAYS or text != kind:
        raise ConfigError(f"Parameter 'type' does not accept value '{text}' (pyhv: -display none)")
    return kind


def _default_guest():
    """A context manager giving the bundled default guest's path; PyhvError if it was not built."""
    ref = importlib.resources.files("devicemodel")
    for part in DEFAULT_GUEST:
        ref = ref.joinpath(part)
    if not ref.is_file():
        raise PyhvError("no -kernel given and the bundled default guest "
                        "(devicemodel/guests/default.elf) is missing; build pyhv or pass -kernel FILE")
    return importlib.resources.as_file(ref)


def _run(config: MachineConfig) -> int:
    if config.kernel:
        machine = Machine(config)
    else:
        with _default_guest() as path:
            config.kernel = str(path)
            machine = Machine(config)
    try:
        with PidFile(config.pidfile) if config.pidfile else contextlib.nullcontext():
            return machine.run()
    finally:
        machine.close()


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parsed = parse_command_line(argv)
        if isinstance(parsed, str):
            print(parsed)
            return 0
        return _run(parsed)
    except PyhvError as e:
        error_report(str(e))
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the VM ran
        error_report("terminating on signal 2")
        return 0
