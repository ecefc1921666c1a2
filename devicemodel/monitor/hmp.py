"""The human monitor (QEMU's HMP): one line in, text out.

Every command is declared once in ``COMMANDS`` (and ``INFO_COMMANDS`` for ``info``):
its name (``cont|c`` gives an alias), its arguments as an ``args_type`` string (see
parser.py), the usage and help text that ``help`` shows, and its handler. Names, syntax,
messages and output follow QEMU's hmp-commands.hx where QEMU has the command; ``info
vmcs``, ``info ept``, ``info exits``, ``info vmx``, ``info ioapic`` and ``trace exits``
are pyhv's own.

A command never takes the VM down: a bad line gets QEMU's error message, an internal
error is reported as such, and the monitor goes on.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

from devicemodel.errors import PyhvError
from devicemodel.monitor import info
from devicemodel.monitor.memory import format_dump, read_physical, read_virtual, translate_virtual
from devicemodel.monitor.parser import Format, MonitorError, parse_arguments
from devicemodel.runstate import SHUTDOWN

MiB = 1 << 20


@dataclass(frozen=True)
class Command:
    name: str               # "cont|c": the name and its aliases
    args_type: str
    params: str
    help: str
    handler: Callable       # (monitor, args) -> text or None

    @property
    def names(self) -> list[str]:
        return self.name.split("|")


class Monitor:
    """The state of one monitor: current vCPU, last ``x`` format, history."""

    def __init__(self, machine, write: Callable[[str], None]):
        self.machine = machine
        self.write = write
        self.cpu_index = 0
        self.last_format = Format(1, "x", 4)
        self.history: list[str] = []

    # -- running a line ------------------------------------------------------------------

    def handle_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        self.history.append(line)
        try:
            text = self.execute(line)
        except MonitorError as e:
            text = str(e)
        except PyhvError as e:
            text = f"Error: {e}"
        except Exception as e:      # a bug in pyhv: say so, keep the monitor and the VM
            traceback.print_exc()
            text = f"internal error: {type(e).__name__}: {e}"
        if text:
            self.write(text if text.endswith("\n") else text + "\n")

    def execute(self, line: str) -> Optional[str]:
        """The command's output; MonitorError for errors, with QEMU's wording."""
        name, _, rest = line.partition(" ")
        command = lookup(COMMANDS, name)
        if command is None:
            raise MonitorError(f"unknown command: '{name}'")
        if command.names[0] == "info":
            sub, _, rest = rest.strip().partition(" ")
            if not sub:
                return help_text(INFO_COMMANDS, "info ")
            command = lookup(INFO_COMMANDS, sub)
            if command is None:
                raise MonitorError(f"unknown command: 'info {sub}'")
        try:
            args = parse_arguments(command.args_type, rest, self.register, self.last_format)
        except MonitorError as e:
            raise MonitorError(_usage(command, e)) from None
        try:
            return command.handler(self, args)
        except MonitorError as e:
            if e.usage or e.named:
                raise MonitorError(_usage(command, e)) from None
            raise

    def register(self, name: str) -> int:
        from devicemodel.monitor.cpu_dump import register_value
        with self.machine.vcpus_held():
            try:
                return register_value(self.vcpu, name)
            except KeyError:
                raise MonitorError(f"unknown register '{name}'", usage=True) from None

    @property
    def vcpu(self):
        return self.machine.vcpus[self.cpu_index]

    def complete(self, text: str) -> list[str]:
        """Completions of the last word of a partial line (commands, then arguments)."""
        words = text.split(" ")
        if len(words) == 1:
            return sorted(n for c in COMMANDS for n in c.names if n.startswith(words[0]))
        if words[0] == "help" and len(words) == 2:
            return sorted(n for c in COMMANDS for n in c.names if n.startswith(words[1]))
        if words[0] == "info" and len(words) == 2:
            return sorted(n for c in INFO_COMMANDS for n in c.names if n.startswith(words[1]))
        choices = ARGUMENT_CHOICES.get(tuple(words[:-1]), ())
        if words[0] == "sendkey" and len(words) == 2:
            from devicemodel.monitor.keys import KEY_NUMBERS
            prefix, _, last = words[1].rpartition("-")
            return sorted((prefix + "-" if prefix else "") + k for k in KEY_NUMBERS if k.startswith(last))
        return sorted(c for c in choices if c.startswith(words[-1]))

    def progress(self, text: str) -> None:
        self.write(text + "\n")


def _usage(command: Command, error: MonitorError) -> str:
    message = f"{command.names[0]}: {error}" if error.named else str(error)
    if error.usage:
        message += f'\nTry "help {command.names[0]}" for more information'
    return message


def lookup(table, name: str) -> Optional[Command]:
    return next((c for c in table if name in c.names), None)


def help_text(table, prefix: str = "", only: Optional[str] = None) -> str:
    return "\n".join(f"{prefix}{c.name} {c.params} -- {c.help}" for c in table
                     if only is None or only in c.names)


# -- the commands -----------------------------------------------------------------------

def cmd_help(mon, args) -> str:
    name = args.get("name")
    if not name:
        return help_text(COMMANDS)
    words = name.split()
    if words[0] == "info" and len(words) > 1:
        if lookup(INFO_COMMANDS, words[1]) is None:
            raise MonitorError(f"unknown command: 'info {words[1]}'")
        return help_text(INFO_COMMANDS, "info ", words[1])
    if words[0] == "info":
        return help_text(INFO_COMMANDS, "info ")
    if lookup(COMMANDS, words[0]) is None:
        raise MonitorError(f"unknown command: '{words[0]}'")
    return help_text(COMMANDS, only=words[0])


def cmd_stop(mon, args) -> None:
    mon.machine.pause()


def cmd_cont(mon, args) -> None:
    if mon.machine.runstate.status == SHUTDOWN:
        raise MonitorError("Resetting the Virtual Machine is required")
    mon.machine.resume()


def cmd_system_reset(mon, args) -> None:
    if not mon.machine.system_reset():
        raise MonitorError("the system reset did not complete")


def cmd_system_powerdown(mon, args) -> None:
    mon.machine.system_powerdown()


def cmd_balloon(mon, args) -> None:
    from devicemodel.virtio.machine_devices import set_balloon_target
    set_balloon_target(mon.machine, args["value"])


def cmd_quit(mon, args) -> None:
    mon.machine.quit()


def cmd_cpu(mon, args) -> None:
    if args["index"] >= len(mon.machine.vcpus):
        raise MonitorError("invalid CPU index")
    mon.cpu_index = args["index"]


def _cpu_bits(vcpu) -> int:
    sregs = vcpu.get_sregs()
    if sregs.efer & (1 << 10) and sregs.cs.l:
        return 64
    return 32 if sregs.cs.db else 16


def _memory_dump(mon, args, physical: bool) -> str:
    fmt, addr = args["fmt"], args["addr"]
    mon.last_format = Format(1, fmt.format, fmt.size if fmt.format != "i" else mon.last_format.size)
    machine = mon.machine
    if physical:
        read = lambda a, n: read_physical(machine, a, n)
    else:
        read = lambda a, n: read_virtual(machine, mon.vcpu, a, n)
    with machine.vcpus_held():
        if fmt.format == "i":
            from devicemodel.monitor.disasm import disassemble
            bits = {2: 16, 4: 32, 8: 64}.get(fmt.size) or _cpu_bits(mon.vcpu)
            return "\n".join(disassemble(read, addr, fmt.count, bits))
        return "\n".join(format_dump(read, addr, fmt))


def cmd_x(mon, args) -> str:
    return _memory_dump(mon, args, physical=False)


def cmd_xp(mon, args) -> str:
    return _memory_dump(mon, args, physical=True)


def cmd_print(mon, args) -> str:
    from devicemodel.monitor.memory import _printc
    fmt, value = args["fmt"], args["val"]
    if fmt.format == "o":
        return "0" + format(value, "o") if value else "0"
    if fmt.format == "x":
        return f"{value:#x}" if value else "0"
    if fmt.format == "u":
        return str(value)
    if fmt.format == "c":
        return _printc(value & 0xFF)
    return str(value - (1 << 64) if value >> 63 else value)


def cmd_gva2gpa(mon, args) -> str:
    with mon.machine.vcpus_held():
        gpa = translate_virtual(mon.vcpu, args["addr"])
    if gpa is None:
        raise MonitorError("Unmapped")
    return f"gpa: {gpa:#x}"


def _save(mon, args, physical: bool) -> None:
    addr, size, path = args["val"], args["size"], args["filename"]
    machine = mon.machine
    try:
        out = open(path, "wb")
    except OSError as e:
        raise MonitorError(f"Could not open '{path}': {e.strerror}") from None
    with out, machine.vcpus_held():
        done, step, next_report = 0, MiB, size // 4
        while done < size:
            chunk = min(step, size - done)
            data = (read_physical(machine, addr + done, chunk) if physical
                    else read_virtual(machine, mon.vcpu, addr + done, chunk))
            if data is None:
                raise MonitorError(f"Invalid addr 0x{addr:016x}/size {size} specified")
            out.write(data)
            done += chunk
            if size >= 16 * MiB and next_report <= done < size:
                mon.progress(f"{'pmemsave' if physical else 'memsave'}: {done * 100 // size}% "
                             f"({done >> 20} of {size >> 20} MiB)")
                next_report += size // 4


def cmd_memsave(mon, args) -> None:
    _save(mon, args, physical=False)


def cmd_pmemsave(mon, args) -> None:
    _save(mon, args, physical=True)


def cmd_dump_guest_memory(mon, args) -> str:
    from devicemodel.monitor.dump import dump_guest_memory
    for flag in ("detach", "zlib", "lzo", "snappy", "windmp", "raw"):
        if args.get(flag):
            raise MonitorError(f"dump-guest-memory: -{DUMP_FLAGS[flag]} is not supported by pyhv")
    begin, length = args.get("begin"), args.get("length")
    if (begin is None) != (length is None):
        raise MonitorError("dump-guest-memory: 'begin' and 'length' go together")
    machine = mon.machine
    started = time.monotonic()
    try:
        with machine.vcpus_held():
            total = dump_guest_memory(machine, args["filename"], args["paging"],
                                      lambda a, n: read_physical(machine, a, n), begin, length,
                                      progress=mon.progress)
    except OSError as e:
        raise MonitorError(f"Could not open '{args['filename']}': {e.strerror}") from None
    return (f"dump-guest-memory: {total >> 20} MiB of guest memory written to {args['filename']} "
            f"in {time.monotonic() - started:.1f} s")


DUMP_FLAGS = {"detach": "d", "zlib": "z", "lzo": "l", "snappy": "s", "windmp": "w", "raw": "R"}


def cmd_sendkey(mon, args) -> None:
    from devicemodel.monitor.keys import DEFAULT_HOLD_MS, parse_keys
    keys = parse_keys(args["keys"])
    hold = args.get("hold-time") or DEFAULT_HOLD_MS
    keyboard = mon.machine.platform.kbd
    with mon.machine.bql:
        for key in keys:
            keyboard.send_key(key, True)
    time.sleep(hold / 1000)
    with mon.machine.bql:
        for key in reversed(keys):
            keyboard.send_key(key, False)


def cmd_log(mon, args) -> Optional[str]:
    from devicemodel.log import LOG_ITEMS, log_items_help
    items = args["items"].split(",")
    if any(item not in LOG_ITEMS and item != "none" for item in items):
        return log_items_help() + "\nnone" + " " * (max(map(len, LOG_ITEMS)) - 2) + "remove all logs"
    mon.machine.set_exit_trace("exits" in items)
    return None


def cmd_trace(mon, args) -> None:
    what, state = args["what"], args["state"]
    if what != "exits":
        raise MonitorError(f"trace: unknown event group '{what}' (pyhv traces: exits)")
    if state not in ("on", "off"):
        raise MonitorError("trace: expected 'on' or 'off'")
    mon.machine.set_exit_trace(state == "on")


def cmd_set_link(mon, args) -> None:
    if args["up"] not in ("on", "off"):
        raise MonitorError("Expected 'on' or 'off'", usage=True)
    mon.machine.net.set_link(args["name"], args["up"] == "on")


COMMANDS = [
    Command("help|?", "name:S?", "[cmd]", "show the help", cmd_help),
    Command("info", "item:S?", "[subcommand]", "show various information about the system state",
            lambda mon, args: None),
    Command("cont|c", "", "", "resume emulation", cmd_cont),
    Command("stop|s", "", "", "stop emulation", cmd_stop),
    Command("system_reset", "", "", "reset the system", cmd_system_reset),
    Command("system_powerdown", "", "", "send system power down event", cmd_system_powerdown),
    Command("quit|q", "", "", "quit the emulator", cmd_quit),
    Command("balloon", "value:M", "target", "request VM to change its memory allocation (in MB)", cmd_balloon),
    Command("cpu", "index:i", "index", "set the default CPU", cmd_cpu),
    Command("x", "fmt:/,addr:l", "/fmt addr", "virtual memory dump starting at 'addr'", cmd_x),
    Command("xp", "fmt:/,addr:l", "/fmt addr", "physical memory dump starting at 'addr'", cmd_xp),
    Command("print|p", "fmt:/,val:l", "/fmt expr",
            "print expression value (use $reg for CPU register access)", cmd_print),
    Command("gva2gpa", "addr:l", "addr",
            "print the guest physical address corresponding to a guest virtual address", cmd_gva2gpa),
    Command("memsave", "val:l,size:i,filename:s", "addr size file",
            "save to disk virtual memory dump starting at 'addr' of size 'size'", cmd_memsave),
    Command("pmemsave", "val:l,size:l,filename:s", "addr size file",
            "save to disk physical memory dump starting at 'addr' of size 'size'", cmd_pmemsave),
    Command("dump-guest-memory",
            "paging:-p,detach:-d,windmp:-w,zlib:-z,lzo:-l,snappy:-s,raw:-R,filename:F,begin:l?,length:l?",
            "[-p] filename [begin length]",
            "dump guest memory into file 'filename' as an ELF core.\n\t\t\t"
            "-p: do paging to get guest's memory mapping.\n\t\t\t"
            "begin: the starting physical address.\n\t\t\tlength: the memory size, in bytes.",
            cmd_dump_guest_memory),
    Command("sendkey", "keys:s,hold-time:i?", "keys [hold_ms]",
            "send keys to the VM (e.g. 'sendkey ctrl-alt-f1', default hold time=100 ms)", cmd_sendkey),
    Command("set_link", "name:s,up:s", "name on|off", "change the link status of a network adapter",
            cmd_set_link),
    Command("log", "items:s", "item1[,...]", "activate logging of the specified items", cmd_log),
    Command("trace", "what:s,state:s", "exits on|off",
            "trace every VM exit (vCPU, reason, RIP, qualification) into the log", cmd_trace),
]

INFO_COMMANDS = [
    Command("version", "", "", "show the version of pyhv", info.info_version),
    Command("status", "", "", "show the current VM status (running|paused)", info.info_status),
    Command("name", "", "", "show the current VM name", info.info_name),
    Command("kvm", "", "", "show KVM information", info.info_kvm),
    Command("cpus", "", "", "show infos for each CPU", info.info_cpus),
    Command("registers", "cpustate_all:-a,vcpu:i?", "[-a|vcpu]",
            "show the cpu registers (-a: show register info for all cpus; vcpu: specific vCPU to "
            "query; show the current CPU's registers if no argument is specified)", info.info_registers),
    Command("mtree", "flatview:-f", "[-f]", "show memory tree (-f: dump flat view for address spaces)",
            info.info_mtree),
    Command("pic", "", "", "show PIC state", info.info_pic),
    Command("lapic", "apic-id:i?", "[apic-id]",
            "show local apic state (apic-id: local apic to read, default is which of current CPU)",
            info.info_lapic),
    Command("ioapic", "", "", "show the IOAPIC's redirection table", info.info_ioapic),
    Command("irq", "", "", "show the interrupts statistics (if available)", info.info_irq),
    Command("tlb", "", "", "show virtual to physical memory mappings", info.info_tlb),
    Command("mem", "", "", "show the active virtual memory mappings", info.info_mem),
    Command("qtree", "", "", "show device tree", info.info_qtree),
    Command("block", "", "", "show the block devices", info.info_block),
    Command("pci", "", "", "show PCI info", info.info_pci),
    Command("balloon", "", "", "show balloon information", info.info_balloon),
    Command("chardev", "", "", "show the character devices", info.info_chardev),
    Command("network", "", "", "show the network state", info.info_network),
    Command("roms", "", "", "show roms", info.info_roms),
    Command("history", "", "", "show the command line history", info.info_history),
    Command("vmcs", "", "", "show every field of the current vCPU's VMCS, decoded", info.info_vmcs),
    Command("ept", "addr:l", "gpa", "show the EPT walk of a guest-physical address", info.info_ept),
    Command("exits", "", "", "show the VM-exit statistics (reason, count, share, time)", info.info_exits),
    Command("vmx", "", "", "show the VMX capabilities of the processor", info.info_vmx),
    Command("jit", "", "", "show dynamic compiler info", info.info_jit),
]

ARGUMENT_CHOICES = {
    ("trace",): ["exits"],
    ("trace", "exits"): ["on", "off"],
    ("log",): ["exits", "exits-summary", "none"],
    ("info", "registers"): ["-a"],
    ("info", "mtree"): ["-f"],
    ("dump-guest-memory",): ["-p"],
}

