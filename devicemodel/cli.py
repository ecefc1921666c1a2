"""The ``pyhv`` command line, spelled like QEMU's (``-opt`` or ``--opt``).

Exit status: the guest's isa-debug-exit status ``(v << 1) | 1`` (modulo 256, as for
QEMU) if the guest wrote one, else 0 -- also when the user stops the VM with Ctrl-C or
SIGTERM, as QEMU does ("terminating on signal 2"); 1 for any error, reported as one
line ``pyhv: <message>`` on stderr.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Optional, Union

import devicemodel
from devicemodel.chardev import check_chardev_spec
from devicemodel.errors import ConfigError, PyhvError, error_report
from devicemodel.gdbstub.spec import DEFAULT_SPEC, parse_gdb_spec
from devicemodel.log import log_items_help, parse_log_items
from devicemodel.machine import DEFAULT_RAM_SIZE, Machine, MachineConfig
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
-no-reboot         exit with status 0 when the guest resets (triple fault);
                   without it pyhv, which cannot reset a VM yet, exits with 1

Boot options:
-kernel file       boot 'file': a Multiboot kernel, a Linux bzImage, or an ELF
                   with the PVH entry note (an uncompressed Linux vmlinux)
                   (default: pyhv's bundled guest)
-append cmdline    use 'cmdline' as the kernel command line
-initrd file       use 'file' as the initial ram disk (Linux bzImage and PVH kernels)

Display and serial ports:
-nographic         no graphical output; serial port 0 goes to stdio (pyhv has no
                   graphical display, so this is always so)
-serial dev        connect the next serial port (COM1..COM4) to host character
                   device 'dev': stdio, null, none or file:PATH (default: stdio)
-debugcon dev      the debug console (isa-debugcon, port 0xe9) to character device 'dev'

Debugging:
-S                 do not start the vCPUs at startup (the monitor's 'cont' or gdb's
                   'continue' starts them)
-gdb dev           accept a gdb connection on 'dev': tcp:[host]:port (or none)
-s                 shorthand for -gdb tcp::1234
-d item1[,...]     log the given items (-d help lists them)
-D logfile         write the -d output to 'logfile' instead of stderr

Ctrl-C stops the VM. The exit status is the guest's isa-debug-exit status
if it wrote one, else 0; errors exit with 1.""" % MAX_CPUS

# Options and whether they take an argument.
OPTIONS = {
    "h": False, "help": False, "version": False, "nographic": False, "no-reboot": False,
    "kernel": True, "append": True, "initrd": True, "m": True, "serial": True, "debugcon": True, "device": True, "d": True, "D": True,
    "smp": True, "S": False,
    "gdb": True, "s": False,
}


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
    if not config.serials:
        config.serials = ["stdio"]  # QEMU's -nographic default; pyhv has no other display
    if config.serials.count("stdio") > 1:
        raise ConfigError("-serial stdio: cannot use stdio by multiple character devices")
    return config


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
    elif name in ("gdb", "s"):
        config.gdb = value if name == "gdb" else DEFAULT_SPEC
        parse_gdb_spec(config.gdb)
    # -nographic: nothing to change, the serial port defaults to stdio anyway
    return None


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
