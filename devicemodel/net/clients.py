"""A machine's network: its ``-netdev`` backends and its NICs, each NIC joined to the
backend of its ``netdev=`` property (QEMU's net_clients list).

NICs are named as QEMU names them, MODEL.N (``virtio-net-device.0``), and get QEMU's
default MAC addresses, 52:54:00:12:34:56 and up, when they have no ``mac=``. ``info
network`` and ``set_link`` of the monitor read and change them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from devicemodel.errors import ConfigError, PyhvError, warn_report
from devicemodel.net.netdev import Netdev, NetdevSpec, open_netdev
from devicemodel.net.port import NetPort

DEFAULT_MAC_PREFIX = bytes.fromhex("5254001234")
DEFAULT_MAC_LAST = 0x56
MAC = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> Optional[bytes]:
    """``52:54:00:12:34:56`` (or with '-') as 6 bytes; None if it is not a MAC address."""
    if not MAC.fullmatch(text):
        return None
    return bytes.fromhex(text.replace(":", "").replace("-", ""))


@dataclass
class Nic:
    name: str
    model: str
    device: object          # has mac, set_link(up), peer
    netdev: Optional[Netdev]


class NetClients:
    def __init__(self, bql):
        self.bql = bql
        self.netdevs: dict[str, Netdev] = {}
        self.nics: list[Nic] = []
        self.ports: list[NetPort] = []
        self._claimed: set[str] = set()
        self._default_macs = 0

    def open(self, spec: NetdevSpec) -> None:
        try:
            if spec.id in self.netdevs:
                raise ConfigError(f"Duplicate ID '{spec.id}' for netdev")
            self.netdevs[spec.id] = open_netdev(spec)
        except PyhvError as e:
            raise ConfigError(f"-netdev {spec.arg}: {e}") from None

    def claim(self, ident: str, driver: str) -> Netdev:
        """The backend with that id, for one NIC only (a ``netdev=`` property)."""
        netdev = self.netdevs.get(ident)
        if netdev is None:
            raise ConfigError(f"Property '{driver}.netdev' can't find value '{ident}'")
        if ident in self._claimed:
            raise ConfigError(f"Property '{driver}.netdev' can't take value '{ident}', it's in use")
        self._claimed.add(ident)
        return netdev

    def default_mac(self) -> bytes:
        """QEMU's qemu_macaddr_default_if_unset: the next of 52:54:00:12:34:56, ...57, ..."""
        mac = DEFAULT_MAC_PREFIX + bytes([(DEFAULT_MAC_LAST + self._default_macs) & 0xFF])
        self._default_macs += 1
        return mac

    def add_nic(self, device, model: str, netdev: Optional[Netdev]) -> Nic:
        index = sum(1 for nic in self.nics if nic.model == model)
        nic = Nic(f"{model}.{index}", model, device, netdev)
        if netdev is not None:
            port = NetPort(device, netdev, self.bql)
            device.peer = port
            self.ports.append(port)
        self.nics.append(nic)
        return nic

    def warn_unused(self) -> None:
        for ident in self.netdevs:
            if ident not in self._claimed:
                warn_report(f"netdev {ident} has no peer")

    def start(self) -> None:
        for port in self.ports:
            port.start()

    def close(self) -> None:
        for port in self.ports:
            port.close()
        for netdev in self.netdevs.values():
            netdev.close()
        self.ports, self.netdevs = [], {}

    # --- the monitor -----------------------------------------------------------------

    def info(self) -> str:
        """``info network``, as QEMU prints it: the backends without a NIC, then each NIC
        with its backend under it."""
        lines = [f"{n.id}: index=0,type={n.kind},{n.info()}" for n in self.netdevs.values()
                 if n.id not in self._claimed]
        for nic in self.nics:
            lines.append(f"{nic.name}: index=0,type=nic,model={nic.model},macaddr="
                         + format_mac(nic.device.mac))
            if nic.netdev is not None:
                lines.append(f" \\ {nic.netdev.id}: index=0,type={nic.netdev.kind},{nic.netdev.info()}")
        return "\n".join(lines)

    def set_link(self, name: str, up: bool) -> None:
        """The link of the NIC called ``name``, or of the NIC on backend ``name``."""
        nics = [nic for nic in self.nics if name in (nic.name, nic.netdev.id if nic.netdev else None)]
        if not nics and name not in self.netdevs:
            raise PyhvError(f"Device '{name}' not found")
        with self.bql:
            for nic in nics:
                nic.device.set_link(up)
