"""The QMP commands pyhv has, with QEMU's names, arguments and replies (qapi/*.json).

Each command declares its arguments as ``{name: (type, required)}`` with the JSON types
"str", "int", "bool", "list", "dict"; the server checks them and answers QEMU's
GenericError on a missing, unexpected or mistyped argument. A handler returns the
"return" value, or raises QmpError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from devicemodel.errors import PyhvError
from devicemodel.runstate import RUNNING, SHUTDOWN

JSON_TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict}
TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "list": "array", "dict": "object"}
NS_PER_SEC = 10 ** 9


class QmpError(Exception):
    def __init__(self, desc: str, error_class: str = "GenericError"):
        super().__init__(desc)
        self.error_class = error_class


@dataclass(frozen=True)
class QmpCommand:
    name: str
    handler: Callable          # (session, arguments) -> return value
    args: dict


def check_arguments(command: QmpCommand, arguments: dict) -> None:
    for key, value in arguments.items():
        if key not in command.args:
            raise QmpError(f"Parameter '{key}' is unexpected")
        kind = command.args[key][0]
        if not isinstance(value, JSON_TYPES[kind]) or (kind == "int" and isinstance(value, bool)):
            raise QmpError(f"Invalid parameter type for '{key}', expected: {TYPE_NAMES[kind]}")
    for key, (_, required) in command.args.items():
        if required and key not in arguments:
            raise QmpError(f"Parameter '{key}' is missing")


def qom_path(index: int) -> str:
    return f"/machine/unattached/device[{index}]"


def _version(session, args) -> dict:
    from devicemodel.cli import version_text
    text = version_text().splitlines()[0].replace("pyhv version ", "")
    major, minor, micro = (int(part) for part in (text.split(".") + ["0", "0"])[:3])
    return {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": "pyhv"}


def _status(session, args) -> dict:
    status = session.machine.runstate.status
    return {"status": status, "running": status == RUNNING, "singlestep": False}


def _name(session, args) -> dict:
    name = getattr(session.machine.config, "name", None)
    return {"name": name} if name else {}


def _commands(session, args) -> list:
    return [{"name": name} for name in COMMANDS]


def _cpus_fast(session, args) -> list:
    machine = session.machine
    threads = getattr(machine, "vcpu_threads", [])
    return [{"cpu-index": i, "qom-path": qom_path(i),
             "thread-id": threads[i].native_id if i < len(threads) else 0,
             "props": {"core-id": 0, "thread-id": 0, "socket-id": i}, "target": "x86_64"}
            for i in range(len(machine.vcpus))]


def _chardev(session, args) -> list:
    return [{"label": c.label, "filename": c.filename, "frontend-open": True}
            for c in session.machine.all_chardevs()]


def _kvm(session, args) -> dict:
    return {"enabled": True, "present": True}


def _stop(session, args) -> dict:
    session.machine.pause()
    return {}


def _cont(session, args) -> dict:
    if session.machine.runstate.status == SHUTDOWN:
        raise QmpError("Resetting the Virtual Machine is required")
    session.machine.resume()
    return {}


def _system_reset(session, args) -> dict:
    session.machine.system_reset()
    return {}


def _system_powerdown(session, args) -> dict:
    try:
        session.machine.system_powerdown()
    except PyhvError as e:
        raise QmpError(str(e)) from None
    return {}


def _quit(session, args) -> dict:
    session.after_reply(session.machine.quit)
    return {}


def _balloon(session, args) -> dict:
    from devicemodel.virtio.machine_devices import NoBalloon, set_balloon_target
    try:
        set_balloon_target(session.machine, args["value"])
    except NoBalloon as e:
        raise QmpError(str(e), "DeviceNotActive") from None
    return {}


def _query_balloon(session, args) -> dict:
    from devicemodel.virtio.machine_devices import NoBalloon, active_balloon
    try:
        return {"actual": active_balloon(session.machine).actual_bytes}
    except NoBalloon as e:
        raise QmpError(str(e), "DeviceNotActive") from None


def _hmp(session, args) -> str:
    from devicemodel.monitor.hmp import Monitor
    output = []
    monitor = Monitor(session.machine, output.append)
    index = args.get("cpu-index")
    if index is not None:
        if not 0 <= index < len(session.machine.vcpus):
            raise QmpError(f"CPU {index} is not available")
        monitor.cpu_index = index
    monitor.handle_line(args["command-line"])
    return "".join(output).replace("\n", "\r\n")


# -- statistics (QEMU's query-stats with KVM's statistics, qapi/stats.json) ----------------

def _stat_schema(names_and_times: list[str]) -> list[dict]:
    out = []
    for name in names_and_times:
        entry = {"name": name, "type": "cumulative"}
        if name.startswith("exit_time"):
            entry.update(unit="seconds", base=10, exponent=-9)
        out.append(entry)
    return out


def _exit_stats(stats: dict) -> dict:
    """{stat name: value} from ExitStats.as_dict(): totals, then one count and one time
    per exit reason."""
    values = {"exits": sum(e["count"] for e in stats.values()),
              "exit_time": sum(e["time_ns"] for e in stats.values())}
    for reason, entry in stats.items():
        values[f"exits_{reason.lower()}"] = entry["count"]
        values[f"exit_time_{reason.lower()}"] = entry["time_ns"]
    return values


def _vm_stats(machine) -> dict:
    return _exit_stats(machine.vm.exit_stats().as_dict())


def _vcpu_stats(vcpu) -> dict:
    values = _exit_stats(vcpu.exit_stats())
    values["instructions"] = vcpu.instructions_retired()
    return values


def _filtered(values: dict, providers) -> list[dict]:
    names = None
    for provider in providers or ():
        if provider.get("provider") != "kvm":
            raise QmpError(f"Invalid parameter 'provider': '{provider.get('provider')}' (pyhv has 'kvm')")
        if "names" in provider:
            names = set(provider["names"])
    return [{"name": n, "value": v} for n, v in values.items() if names is None or n in names]


def _query_stats(session, args) -> list:
    machine = session.machine
    target = args["target"]
    if target == "vm":
        return [{"provider": "kvm", "stats": _filtered(_vm_stats(machine), args.get("providers"))}]
    if target != "vcpu":
        raise QmpError(f"Parameter 'target' does not accept value '{target}'")
    wanted = args.get("vcpus")
    return [{"provider": "kvm", "qom-path": qom_path(i),
             "stats": _filtered(_vcpu_stats(vcpu), args.get("providers"))}
            for i, vcpu in enumerate(machine.vcpus) if wanted is None or qom_path(i) in wanted]


def _query_stats_schemas(session, args) -> list:
    machine = session.machine
    provider = args.get("provider", "kvm")
    if provider != "kvm":
        return []
    vcpu = machine.vcpus[0]
    return [{"provider": "kvm", "target": "vm", "stats": _stat_schema(list(_vm_stats(machine)))},
            {"provider": "kvm", "target": "vcpu", "stats": _stat_schema(list(_vcpu_stats(vcpu)))}]


def _set_link(session, args) -> dict:
    try:
        session.machine.net.set_link(args["name"], args["up"])
    except PyhvError as e:
        raise QmpError(str(e), "DeviceNotFound") from None
    return {}


def _query_jit(session, args) -> dict:
    from devicemodel.monitor.info import jit_report
    return {"human-readable-text": jit_report(session.machine)}


def _capabilities(session, args) -> dict:
    return session.negotiate(args)


COMMANDS = {c.name: c for c in [
    QmpCommand("qmp_capabilities", _capabilities, {"enable": ("list", False)}),
    QmpCommand("query-version", _version, {}),
    QmpCommand("query-status", _status, {}),
    QmpCommand("query-name", _name, {}),
    QmpCommand("query-commands", _commands, {}),
    QmpCommand("query-cpus-fast", _cpus_fast, {}),
    QmpCommand("query-chardev", _chardev, {}),
    QmpCommand("query-kvm", _kvm, {}),
    QmpCommand("stop", _stop, {}),
    QmpCommand("cont", _cont, {}),
    QmpCommand("system_reset", _system_reset, {}),
    QmpCommand("system_powerdown", _system_powerdown, {}),
    QmpCommand("quit", _quit, {}),
    QmpCommand("set_link", _set_link, {"name": ("str", True), "up": ("bool", True)}),
    QmpCommand("balloon", _balloon, {"value": ("int", True)}),
    QmpCommand("query-balloon", _query_balloon, {}),
    QmpCommand("human-monitor-command", _hmp, {"command-line": ("str", True), "cpu-index": ("int", False)}),
    QmpCommand("query-stats", _query_stats, {"target": ("str", True), "providers": ("list", False),
                                             "vcpus": ("list", False)}),
    QmpCommand("query-stats-schemas", _query_stats_schemas, {"provider": ("str", False)}),
    QmpCommand("x-query-jit", _query_jit, {}),
]}
