"""Debian's kernel drives pyhv's virtio-pci devices with its own drivers (virtio_pci,
virtio_blk, virtio_rng, virtio_balloon, virtio_console from the initramfs): it finds them through the
DSDT's PCI root bridge, gives virtio-blk and virtio-rng MSI-X vectors (PCI-MSI in
/proc/interrupts) and the balloon its INTx line; reads a known pattern from a raw image
and writes one that the host then finds in the file; reads /dev/hwrng; writes to a
virtconsole on virtio-serial-pci (/dev/hvc0) what the host finds in its file; and gives memory
back and takes it again when the monitor's ``balloon`` asks, which ``info balloon`` and
the guest's MemTotal show."""

import hashlib
import re
import time

import pytest

import debian
from monitor_client import HmpClient, wait_for
from test_linux_boot import BOOT_TIMEOUT, COMMAND_TIMEOUT, PROMPT, Console

pytestmark = pytest.mark.slow

MiB = 1 << 20
MODULES = ("virtio_pci", "virtio_blk", "virtio_rng", "virtio_balloon", "virtio_console")
WRITTEN = b"pyhv-written-by-Linux"


@pytest.fixture(scope="module")
def linux():
    return debian.debian_linux(MODULES)


def make_image(path) -> bytes:
    data = bytes((i * 13 + i // 4096) & 0xFF for i in range(8 * MiB))
    path.write_bytes(data)
    return data


def mem_total_kib(console) -> int:
    return int(re.search(r"MemTotal:\s+(\d+) kB", console.run("cat /proc/meminfo")).group(1))


def test_virtio_pci_devices_under_linux(linux, tmp_path):
    image = tmp_path / "disk.img"
    data = make_image(image)
    monitor = tmp_path / "monitor.sock"
    console_log = tmp_path / "hvc0.log"
    console = Console(linux.vmlinux, linux.initrd, "-drive", f"file={image},if=none,id=d0,format=raw",
                      "-device", "virtio-blk-pci,drive=d0,serial=pyhv-linux", "-device", "virtio-rng-pci",
                      "-device", "virtio-balloon-pci", "-monitor", f"unix:{monitor},server=on,wait=off",
                      "-device", "virtio-serial-pci", "-chardev", f"file,id=c0,path={console_log}",
                      "-device", "virtconsole,chardev=c0")
    try:
        boot_log = console.read_until(debian.tool.READY_MARKER, BOOT_TIMEOUT)
        console.read_until(PROMPT, COMMAND_TIMEOUT)
        assert "Kernel panic" not in boot_log and "BUG" not in boot_log
        assert "ACPI: PCI Root Bridge [PCI0]" in boot_log
        hmp = HmpClient(str(monitor))

        # the block device, with MSI-X
        assert console.run("cat /sys/block/vda/size").strip() == str(8 * MiB // 512)
        assert console.run("cat /sys/block/vda/serial").strip() == "pyhv-linux"
        md5 = console.run("dd if=/dev/vda bs=4096 skip=3 count=5 2>/dev/null | md5sum").split()[0]
        assert md5 == hashlib.md5(data[3 * 4096:8 * 4096]).hexdigest()
        console.run(f"printf {WRITTEN.decode()} | dd of=/dev/vda seek=100 conv=fsync")      # < 80 columns
        assert image.read_bytes()[100 * 512:100 * 512 + len(WRITTEN)] == WRITTEN

        # the entropy source, with MSI-X
        assert console.run("cat /sys/class/misc/hw_random/rng_current").strip() == "virtio_rng.0"
        random = console.run("dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n'").strip()
        assert len(random) == 64 and random != "0" * 64

        # a console port on virtio-serial-pci
        console.run("echo hello from hvc0 > /dev/hvc0")
        assert console_log.read_bytes() == b"hello from hvc0\r\n"             # a tty: ONLCR

        interrupts = console.run("cat /proc/interrupts")
        assert re.search(r"PCI-MSI.*virtio0-req\.0", interrupts), interrupts
        assert re.search(r"PCI-MSI.*virtio1-input", interrupts), interrupts
        assert re.search(r"IO-APIC\s+\d+-fasteoi\s+virtio2", interrupts), interrupts   # the balloon: INTx
        assert re.search(r"PCI-MSI.*virtio3-virtqueues", interrupts), interrupts

        # the balloon, from the monitor
        total = mem_total_kib(console)
        assert hmp.cmd("info balloon").strip() == "balloon: actual=256"
        assert hmp.cmd("balloon 128") == ""
        wait_for(lambda: hmp.cmd("info balloon").strip() == "balloon: actual=128", timeout=120, interval=0.5)
        shrunk = mem_total_kib(console)
        assert total - shrunk >= 127 * 1024, (total, shrunk)
        assert hmp.cmd("balloon 256") == ""
        wait_for(lambda: hmp.cmd("info balloon").strip() == "balloon: actual=256", timeout=120, interval=0.5)
        time.sleep(1)
        assert mem_total_kib(console) == total
        assert re.search(r"IO-APIC\s+\d+-fasteoi\s+virtio2", console.run("cat /proc/interrupts"))
        hmp.close()
    finally:
        console.close()
