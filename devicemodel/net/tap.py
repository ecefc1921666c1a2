"""``-netdev tap,ifname=NAME,script=no,downscript=no``: a Linux tap interface (QEMU's
net/tap-linux.c). /dev/net/tun is opened and TUNSETIFF makes it the tap interface
``ifname`` (created if it does not exist, which needs CAP_NET_ADMIN; without ifname the
kernel names it ``tapN``), with IFF_NO_PI: each read and write is one whole Ethernet
frame, without the packet-information prefix and without a virtio-net header (pyhv's
NICs offer no offloads). pyhv runs no ifup/ifdown scripts: script= and downscript= must
be ``no`` (or absent); the host side configures the interface itself.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import threading

from devicemodel.errors import ConfigError
from devicemodel.net.netdev import NET_BUFSIZE, Netdev

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA          # _IOW('T', 202, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")     # struct ifreq: the name, then ifr_flags
CLOSE_POLL = 0.2                # seconds between the reader's looks at close()


def open_tap(ifname: str) -> tuple[int, str]:
    """A tap file descriptor for ``ifname`` ("" lets the kernel choose) and the interface's
    name; ConfigError with QEMU's messages."""
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"could not open {TUN_PATH}: {e.strerror}") from None
    request = IFREQ.pack(ifname.encode()[:IFNAMSIZ - 1], IFF_TAP | IFF_NO_PI)
    try:
        reply = fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError as e:
        os.close(fd)
        raise ConfigError(f"could not configure {TUN_PATH} ({ifname}): {e.strerror}") from None
    return fd, IFREQ.unpack(reply)[0].rstrip(b"\0").decode()


class TapNetdev(Netdev):
    kind = "tap"

    def __init__(self, ident: str, options: dict):
        super().__init__(ident)
        self.fd, self.ifname = open_tap(options.get("ifname", "tap%d"))
        self._closed = False

    def info(self) -> str:
        return f"ifname={self.ifname},script=no,downscript=no"

    def send(self, frame: bytes) -> None:
        try:
            os.write(self.fd, frame)
        except OSError:
            pass              # the interface is down or its queue full: dropped, as a link would

    def start(self, receiver) -> None:
        threading.Thread(target=self._read_loop, args=(receiver,), name=f"netdev-{self.id}-rx",
                         daemon=True).start()

    def _read_loop(self, receiver) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self._closed:
            if not poller.poll(CLOSE_POLL * 1000):
                continue
            try:
                frame = os.read(self.fd, NET_BUFSIZE)
            except OSError:
                return
            if frame:
                receiver.deliver(frame)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)
