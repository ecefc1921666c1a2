"""Debian's Linux kernel on virtio-net-pci: two pyhv VMs on one -netdev socket
(listen/connect) ping each other and move 4 MiB over TCP intact, and a pyhv VM pings a QEMU (TCG) VM booted from the
same kernel and initramfs, each way; and a pyhv VM on a tap interface in a network
namespace of its own pings the host side of the tap."""

import re
import selectors
import shutil
import socket
import subprocess
import sys

import pytest

import debian
import monitor_client
from test_linux_boot import BOOT_TIMEOUT, COMMAND_TIMEOUT, PROMPT, Console

pytestmark = pytest.mark.slow

MODULES = ("virtio_net", "virtio_pci")
PING_OK = re.compile(r"(\d+) packets transmitted, (\d+) packets received, 0% packet loss\n"
                     r"round-trip min/avg/max = [\d.]+/([\d.]+)/[\d.]+ ms")


class Guest(Console):
    """A VM (pyhv or QEMU, ``command``) with its serial console on a pipe."""

    def __init__(self, command):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.output = ""

    def boot(self):
        log = self.read_until(debian.tool.READY_MARKER, BOOT_TIMEOUT)
        self.read_until(PROMPT, COMMAND_TIMEOUT)
        assert "Kernel panic" not in log and "Oops" not in log
        self.run("dmesg -n 1")        # kernel messages on the console would split the echo of commands
        return log

    def up(self, address: str) -> None:
        """eth0 configured and up -- operstate "up" once Linux has seen the carrier, before
        which what it sends is dropped."""
        assert self.run(f"ip addr add {address}/24 dev eth0 && ip link set eth0 up") == ""
        self.wait_for_operstate("up")

    def wait_for_operstate(self, state: str) -> None:
        monitor_client.wait_for(lambda: self.run("cat /sys/class/net/eth0/operstate").strip() == state, timeout=60)

    def ping(self, address: str, *options) -> float:
        """``ping -c 3``: all three answered; the average round trip in ms. One ping first,
        whatever its fate, settles ARP and a link that just came up (under load a first
        echo was once lost right after set_link on)."""
        self.run(f"ping -c 1 -W 5 {address}")
        out = self.run(" ".join(["ping", "-c", "3", *options, address]))
        match = PING_OK.search(out)
        assert match and match.group(1) == match.group(2) == "3", out
        print(f"ping {' '.join(options)} {address}: avg {match.group(3)} ms")
        return float(match.group(3))

    def check_dmesg(self) -> None:
        dmesg = self.run("dmesg")
        assert not re.search(r"BUG:|Oops|WARNING:|soft lockup|Call Trace|virtio_net.*(error|fail)", dmesg), dmesg


@pytest.fixture(scope="module")
def linux():
    return debian.debian_linux(MODULES)


def pyhv(linux, *netdev_and_device):
    return [sys.executable, "-m", "devicemodel", "-m", "256M", "-kernel", str(linux.vmlinux),
            "-initrd", str(linux.initrd), "-append", "console=ttyS0", "-nographic", "-no-reboot",
            *netdev_and_device]


def test_two_pyhv_vms_ping_each_other(linux, tmp_path):
    """The second VM's NIC has no mergeable receive buffers (mrg_rxbuf=off): Linux's
    other receive path. And the monitor's set_link takes the link down and up: the guest's carrier follows
    (a configuration change interrupt) and pings fail while it is down."""
    port = monitor_client.free_tcp_port()
    monitor = tmp_path / "monitor.sock"
    a = Guest(pyhv(linux, "-netdev", f"socket,id=n0,listen=127.0.0.1:{port}", "-device", "virtio-net-pci,netdev=n0",
                   "-monitor", f"unix:{monitor},server=on,wait=off"))
    b = None
    try:
        monitor_client.wait_for(lambda: _listening(port))
        b = Guest(pyhv(linux, "-netdev", f"socket,id=n0,connect=127.0.0.1:{port}",
                       "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:57,mrg_rxbuf=off"))
        for guest in (a, b):
            guest.boot()
        assert "link/ether 52:54:00:12:34:56" in a.run("ip link show eth0")
        assert "link/ether 52:54:00:12:34:57" in b.run("ip link show eth0")
        a.up("10.0.0.1")
        b.up("10.0.0.2")
        a.ping("10.0.0.2")
        b.ping("10.0.0.1")
        b.ping("10.0.0.1", "-s", "4000")                 # IP fragments: full-size frames
        # a TCP transfer: 4 MiB from busybox httpd on b to wget on a, the same bytes
        b.run("mkdir -p /www && dd if=/dev/urandom of=/www/f bs=1k count=4096")
        b.run("httpd -p 8080 -h /www")
        a.run("wget -q -O /tmp/f 10.0.0.2:8080/f")
        assert a.run("md5sum < /tmp/f").split()[0] == b.run("md5sum < /www/f").split()[0]
        interrupts = a.run("cat /proc/interrupts")
        assert re.search(r"^\s*\d+:\s+[1-9]\d*\s+PCI-MSI \S+\s+virtio0-input.0$", interrupts, re.M), interrupts

        hmp = monitor_client.HmpClient(str(monitor))
        assert re.fullmatch(r"virtio-net-pci.0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56\n"
                            r" \\ n0: index=0,type=socket,socket: connection from 127.0.0.1:\d+\n",
                            hmp.cmd("info network"))
        assert a.run("cat /sys/class/net/eth0/carrier").strip() == "1"
        assert hmp.cmd("set_link n0 off") == ""
        a.wait_for_operstate("down")
        assert a.run("cat /sys/class/net/eth0/carrier").strip() == "0"
        assert "0 packets received, 100% packet loss" in a.run("ping -c 1 -W 2 10.0.0.2")
        assert hmp.cmd("set_link virtio-net-pci.0 on") == ""
        a.wait_for_operstate("up")
        assert a.run("cat /sys/class/net/eth0/carrier").strip() == "1"
        assert re.search(r"^\s*\d+:\s+[1-9]\d*\s+PCI-MSI \S+\s+virtio0-config$", a.run("cat /proc/interrupts"), re.M)
        a.ping("10.0.0.2")
        hmp.close()
        for guest in (a, b):
            guest.check_dmesg()
    finally:
        for guest in (a, b):
            if guest is not None:
                guest.close()


def _listening(port: int) -> bool:
    """Whether a VM listens on ``port`` yet (the probe connection is dropped at once; a
    listening backend then waits for the next peer)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.qemu
def test_pyhv_and_qemu_ping_each_other(linux, qemu):
    port = monitor_client.free_tcp_port()
    q = Guest([qemu, "-accel", "tcg", "-M", "pc", "-m", "256M", "-nographic", "-no-reboot",
               "-kernel", str(linux.kernel), "-initrd", str(linux.initrd), "-append", "console=ttyS0",
               "-netdev", f"socket,id=n0,listen=127.0.0.1:{port}",
               "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:57"])
    p = None
    try:
        monitor_client.wait_for(lambda: _listening(port), timeout=60)
        p = Guest(pyhv(linux, "-netdev", f"socket,id=n0,connect=127.0.0.1:{port}", "-device", "virtio-net-pci,netdev=n0"))
        q.boot()
        p.boot()
        q.up("10.0.0.2")          # QEMU's side first: it should not get frames before its driver is up
        p.up("10.0.0.1")
        p.ping("10.0.0.2")
        q.ping("10.0.0.1")
        p.check_dmesg()
    finally:
        for guest in (q, p):
            if guest is not None:
                guest.close()


def _can_unshare_network() -> bool:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def test_pyhv_on_a_tap_interface_pings_the_host(linux):
    """pyhv runs in a network namespace of its own (unshare -n) and makes the tap
    interface there; the host side gets an address in that namespace (nsenter) and
    answers the guest's ping -- and pings the guest with busybox."""
    if not _can_unshare_network():
        pytest.skip("needs unshare -n, nsenter and ip (root or CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    guest = Guest(["unshare", "-n"] + pyhv(linux, "-netdev", "tap,id=t0,ifname=pyhvtap0,script=no,downscript=no",
                                            "-device", "virtio-net-pci,netdev=t0"))
    host = ["nsenter", f"--net=/proc/{guest.proc.pid}/ns/net"]
    try:
        guest.boot()
        for command in (["ip", "addr", "add", "10.0.1.1/24", "dev", "pyhvtap0"], ["ip", "link", "set", "pyhvtap0", "up"]):
            subprocess.run(host + command, check=True, capture_output=True)
        guest.up("10.0.1.2")
        guest.ping("10.0.1.1")
        out = subprocess.run(host + [str(linux.busybox), "ping", "-c", "3", "10.0.1.2"], capture_output=True,
                             text=True, timeout=COMMAND_TIMEOUT).stdout
        assert PING_OK.search(out), out
        guest.check_dmesg()
    finally:
        guest.close()
