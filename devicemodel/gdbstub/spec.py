"""The gdbstub's option: ``-gdb tcp:[HOST]:PORT[,options]`` or ``-gdb none``; ``-s`` is
``-gdb tcp::1234``.  (Kept apart from the stub, which needs the hypervisor.)"""

from __future__ import annotations

from typing import Optional

from devicemodel.errors import ConfigError

DEFAULT_SPEC = "tcp::1234"


def parse_gdb_spec(spec: str) -> Optional[tuple[str, int]]:
    """(host, port) of ``tcp:[HOST]:PORT[,options]`` (port 0: any free one); None for ``none``."""
    if spec == "none":
        return None
    address = spec.split(",", 1)[0]
    kind, _, rest = address.partition(":")
    host, sep, port = rest.rpartition(":")
    if kind != "tcp" or not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"'{spec}' is not a gdb socket: use tcp:[HOST]:PORT (or none)")
    return host.strip("[]"), int(port)


