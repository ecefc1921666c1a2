"""Debian's kernel with its own IDE drivers (ata_piix, ata_generic, libata, sd_mod from
the initramfs) finds the disk on pyhv's PIIX3 IDE function as it finds QEMU's, reads it
whole (bus-master DMA, interrupts on IRQ 14), writes and flushes a sector that the host
then sees in the image; it finds the PCI bus through the DSDT's root bridge."""

import hashlib
import re

import pytest

import debian
from ide_board import SECTOR, make_image
from test_linux_boot import BOOT_TIMEOUT, COMMAND_TIMEOUT, PROMPT, Console

pytestmark = pytest.mark.slow

MODULES = ("ata_piix", "ata_generic", "sd_mod")
SECTORS = 8192


@pytest.fixture(scope="module")
def linux():
    return debian.debian_linux(MODULES)


def test_linux_reads_and_writes_an_ide_disk(linux, tmp_path):
    image = tmp_path / "disk.img"
    original = make_image(image, SECTORS)
    console = Console(linux.vmlinux, linux.initrd, "-drive", f"file={image},format=raw,if=ide,index=0")
    try:
        boot_log = console.read_until(debian.tool.READY_MARKER, BOOT_TIMEOUT)
        console.read_until(PROMPT, COMMAND_TIMEOUT)
        assert "ata1: PATA max MWDMA2 cmd 0x1f0 ctl 0x3f6 bmdma 0xc000 irq 14" in boot_log
        assert "ata2: PATA max MWDMA2 cmd 0x170 ctl 0x376 bmdma 0xc008 irq 15" in boot_log
        assert "ata1.00: ATA-7: QEMU HARDDISK, 2.5+, max UDMA/100" in boot_log
        assert "ata1.00: 8192 sectors, multi 16: LBA48" in boot_log
        assert "[sda] Attached SCSI disk" in boot_log

        assert console.run("cat /sys/block/sda/size").strip() == str(SECTORS)
        assert console.run("cat /sys/class/ata_device/dev1.0/xfer_mode").strip() == "XFER_MW_DMA_2"
        digest = console.run("dd if=/dev/sda bs=64k 2>/dev/null | md5sum").split()[0]
        assert digest == hashlib.md5(original).hexdigest()
        console.run("echo written by linux > /tmp/m")
        console.run("dd if=/tmp/m of=/dev/sda bs=512 seek=9 conv=sync,fsync")
        irq14 = re.search(r"^\s*14:\s+(\d+)\s+IO-APIC\s+14-edge\s+ata_piix$",
                          console.run("cat /proc/interrupts"), re.M)
        assert irq14 and int(irq14.group(1)) > 10
        dmesg = console.run("dmesg")
        assert not re.search(r"BUG:|Oops|WARNING:|exception Emask|failed command|timeout", dmesg), dmesg

        console.proc.stdin.write(b"poweroff -f\n")
        console.proc.stdin.flush()
        assert console.proc.wait(COMMAND_TIMEOUT) == 0
    finally:
        console.close()
    data = image.read_bytes()
    expected = b"written by linux\n".ljust(SECTOR, b"\0")
    assert data[9 * SECTOR:10 * SECTOR] == expected
    assert data[:9 * SECTOR] == original[:9 * SECTOR] and data[10 * SECTOR:] == original[10 * SECTOR:]
