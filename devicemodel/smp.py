"""QEMU's ``-smp [[cpus=]n][,maxcpus=m][,sockets=s][,dies=d][,cores=c][,threads=t]``.

As in QEMU (hw/core/machine-smp.c): missing topology parameters are computed from the
others, preferring sockets; the topology must multiply up to maxcpus, which defaults to
cpus. pyhv has no CPU hotplug, so maxcpus must equal cpus.
"""

from __future__ import annotations

from dataclasses import dataclass

from devicemodel.errors import ConfigError
from devicemodel.qemu_opts import parse_opts

MAX_CPUS = 64   # what the MP table, the MADT and the xAPIC IDs of the pc machine allow here
KEYS = ("cpus", "maxcpus", "sockets", "dies", "cores", "threads")


@dataclass(frozen=True)
class SmpTopology:
    cpus: int = 1
    sockets: int = 1
    dies: int = 1
    cores: int = 1
    threads: int = 1


def parse_smp(text: str) -> SmpTopology:
    given: dict[str, int] = {}
    for key, value in parse_opts(text, implied_key="cpus"):
        if key not in KEYS:
            raise ConfigError(f"Invalid parameter '{key}'")
        try:
            number = int(value, 0)
        except ValueError:
            raise ConfigError(f"Parameter '{key}' expects a number") from None
        if number <= 0:
            raise ConfigError("Invalid CPU topology: CPU topology parameters must be greater than zero")
        given[key] = number
    dies, threads = given.get("dies", 1), given.get("threads", 1)
    cpus, maxcpus = given.get("cpus"), given.get("maxcpus")
    sockets, cores = given.get("sockets"), given.get("cores")
    count = maxcpus or cpus or 1
    if sockets is None:
        sockets = max(1, count // ((cores or 1) * threads * dies))
    if cores is None:
        cores = max(1, count // (sockets * threads * dies))
    total = sockets * dies * cores * threads
    maxcpus = maxcpus or total
    cpus = cpus or maxcpus
    if total != maxcpus:
        raise ConfigError(f"Invalid CPU topology: product of the hierarchy must match maxcpus: "
                          f"sockets ({sockets}) * dies ({dies}) * cores ({cores}) * threads ({threads}) "
                          f"!= maxcpus ({maxcpus})")
    if cpus > maxcpus:
        raise ConfigError(f"Invalid CPUs {cpus}: maxcpus must be equal to or greater than smp")
    if cpus != maxcpus:
        raise ConfigError(f"maxcpus={maxcpus} is not supported: pyhv has no CPU hotplug "
                          f"(maxcpus must equal cpus={cpus})")
    if cpus > MAX_CPUS:
        raise ConfigError(f"Invalid SMP CPUs {cpus}. The max CPUs supported by machine 'pc' is {MAX_CPUS}")
    return SmpTopology(cpus=cpus, sockets=sockets, dies=dies, cores=cores, threads=threads)
