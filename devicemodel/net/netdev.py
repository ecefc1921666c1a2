"""``-netdev TYPE,id=ID,...``: the network backends, spelled and checked as QEMU does.

A backend carries Ethernet frames between a NIC and the host. pyhv has QEMU's

* ``socket``: ``listen=[HOST]:PORT`` or ``connect=HOST:PORT`` (a TCP stream, each frame
  after its length as a 4-byte big-endian number, as QEMU's -netdev socket and -netdev
  stream frame them), or ``udp=HOST:PORT,localaddr=HOST:PORT`` (a datagram a frame);
  see devicemodel/net/socket.py;
* ``tap``: ``ifname=NAME,script=no,downscript=no``, a Linux tap interface; see
  devicemodel/net/tap.py.

Other QEMU types (``user``, ``bridge``, ``stream``...) are refused with a clear error.

The interface every backend has (``Netdev``): ``info()`` is what ``info network`` shows
after ``type=``; ``start(receiver)`` starts passing received frames to
``receiver.deliver(frame)`` (on the backend's own thread, which may block there: that
is how a NIC without free buffers holds the backend back, as QEMU's can_receive does);
``can_send()`` says whether ``send(frame)`` takes a frame now -- when it did not, the
backend calls ``receiver.writable()`` once it can again. ``close()`` stops it all.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from devicemodel.errors import ConfigError
from devicemodel.qemu_opts import parse_opts

NET_BUFSIZE = 4096 + 65536     # QEMU's NET_BUFSIZE: the largest frame its backends take

SOCKET_MODES = ("listen", "connect", "mcast", "udp")
SOCKET_KEYS = SOCKET_MODES + ("localaddr", "fd")
TAP_KEYS = ("ifname", "script", "downscript", "fd", "fds", "helper", "br", "vhost", "vhostfd", "vhostfds",
            "vhostforce", "vnet_hdr", "queues", "sndbuf", "poll-us")
QEMU_ONLY_TYPES = {
    "user": "user-mode networking (QEMU's SLIRP) is not supported by pyhv; use -netdev socket or -netdev tap",
}
OTHER_QEMU_TYPES = ("bridge", "dgram", "hubport", "l2tpv3", "netmap", "stream", "vde", "vhost-user",
                    "vhost-vdpa", "vmnet-bridged", "vmnet-host", "vmnet-shared", "af-xdp")
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class NetdevSpec:
    """A checked ``-netdev`` option: its type, id, the other options given, and the
    argument it came from."""

    kind: str
    id: str
    options: dict
    arg: str


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def sockaddr(self) -> tuple[str, int]:
        """The address to bind or connect to (an empty host is any address, as in QEMU)."""
        try:
            return socket.gethostbyname(self.host or "0.0.0.0"), self.port
        except OSError:
            raise ConfigError(f"can't resolve host address '{self.host}'") from None


def parse_host_port(text: str) -> HostPort:
    """``[HOST]:PORT`` as QEMU's parse_host_port reads it."""
    host, colon, port = text.rpartition(":")
    if not colon:
        raise ConfigError(f"host address '{text}' doesn't contain ':' separating host from port")
    if not port.isdigit() or int(port) > 0xFFFF:
        raise ConfigError(f"port number '{port}' is invalid")
    return HostPort(host, int(port))


def parse_netdev_option(text: str) -> NetdevSpec:
    """``-netdev``'s argument, checked without opening anything; ConfigError as QEMU words it."""
    given = dict(parse_opts(text, implied_key="type"))
    kind = given.pop("type", None)
    ident = given.pop("id", None)
    if not kind:
        raise ConfigError("Parameter 'type' is missing")
    if kind in QEMU_ONLY_TYPES:
        raise ConfigError(QEMU_ONLY_TYPES[kind])
    if kind in OTHER_QEMU_TYPES:
        raise ConfigError(f"netdev type '{kind}' is not supported by pyhv (it has socket and tap)")
    if kind not in ("socket", "tap"):
        raise ConfigError(f"Parameter 'type' does not accept value '{kind}'")
    if ident is None:
        raise ConfigError("Parameter 'id' is missing")
    if not IDENTIFIER.fullmatch(ident):
        raise ConfigError("Parameter 'id' expects an identifier (letters, digits, '-', '.', '_', "
                          "starting with a letter)")
    known = SOCKET_KEYS if kind == "socket" else TAP_KEYS
    for key in given:
        if key not in known:
            raise ConfigError(f"Invalid parameter '{key}'")
    (_check_socket if kind == "socket" else _check_tap)(given)
    return NetdevSpec(kind, ident, given, text)


def _check_socket(options: dict) -> None:
    if "fd" in options:
        raise ConfigError("fd= is not supported by pyhv's socket netdev (use listen=, connect= or udp=)")
    modes = [mode for mode in SOCKET_MODES if mode in options]
    if len(modes) != 1:
        raise ConfigError("exactly one of listen=, connect=, mcast= or udp= is required")
    if modes[0] == "mcast":
        raise ConfigError("mcast= is not supported by pyhv's socket netdev (use listen=, connect= or udp=)")
    if "localaddr" in options and modes[0] != "udp":
        raise ConfigError("localaddr= is only valid with mcast= or udp=")
    if modes[0] == "udp" and "localaddr" not in options:
        raise ConfigError("localaddr= is mandatory with udp=")
    for key in ("listen", "connect", "udp", "localaddr"):
        if key in options:
            parse_host_port(options[key])


def _check_tap(options: dict) -> None:
    for key in options:
        if key not in ("ifname", "script", "downscript", "vnet_hdr"):
            raise ConfigError(f"Parameter '{key}' is not supported by pyhv's tap netdev "
                              f"(it takes ifname=, script=no and downscript=no)")
    for key in ("script", "downscript"):
        if options.get(key, "no") not in ("no", ""):
            raise ConfigError(f"{key}={options[key]}: pyhv runs no network scripts; use {key}=no "
                              f"and set the interface up yourself")
    if options.get("vnet_hdr", "off") != "off":
        raise ConfigError("vnet_hdr=on is not supported by pyhv's tap netdev (its NICs offer no offloads)")


class Netdev:
    """What every backend has; see the module's docstring."""

    kind = ""

    def __init__(self, ident: str):
        self.id = ident

    def info(self) -> str:
        return ""

    def start(self, receiver) -> None:
        pass

    def can_send(self) -> bool:
        return True

    def send(self, frame: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def open_netdev(spec: NetdevSpec) -> Netdev:
    """The backend of a checked spec; ConfigError if it cannot open."""
    if spec.kind == "tap":
        from devicemodel.net.tap import TapNetdev
        return TapNetdev(spec.id, spec.options)
    from devicemodel.net.socket import DatagramNetdev, StreamNetdev
    if "udp" in spec.options:
        return DatagramNetdev(spec.id, parse_host_port(spec.options["udp"]),
                              parse_host_port(spec.options["localaddr"]))
    if "listen" in spec.options:
        return StreamNetdev(spec.id, parse_host_port(spec.options["listen"]), listen=True)
    return StreamNetdev(spec.id, parse_host_port(spec.options["connect"]), listen=False)
