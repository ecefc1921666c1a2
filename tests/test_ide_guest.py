"""The IDE test kernel (firmware/kernels/ide.c) drives the PIIX3 IDE function and two
disks from inside the guest -- IDENTIFY, PIO and DMA reads and writes, PRD tables too
short and too long, errors, the secondary channel -- on raw and qcow2 images, attached by
-drive if=ide, -hda/-hdc or -device ide-hd, and under QEMU (TCG) for comparison: the
same lines, the same images afterwards, except where pyhv follows ATA-6 (the IDENTIFY
integrity word, IDNF for an address past the end)."""

import shutil
import struct
import subprocess

import pytest

import guests
from guests import run_pyhv
from ide_board import SECTOR, make_image

EXIT_CODE = 0x15
BANNER = "ide test"
PRIMARY_SECTORS = 8192
SECONDARY_MARKER = b"second disk here"
# lines where pyhv and QEMU differ on purpose: (pyhv's, QEMU's)
PYHV_ONLY = {"identify integrity word: signature a5, checksum ok": "identify integrity word: none (0x0000)",
             "read past the end: status 0x41 error 0x10": "read past the end: status 0x41 error 0x04"}


def make_secondary(path):
    """1 MiB with an MS-DOS partition table ending at head 15, sector 32 (4/16/32 CHS)."""
    data = bytearray(1 << 20)
    data[16:32] = SECONDARY_MARKER
    data[0x1BE:0x1CE] = struct.pack("<B3sB3sII", 0x80, bytes([1, 1, 0]), 0x83, bytes([15, 32, 3]), 32, 2000)
    data[510:512] = b"\x55\xaa"
    path.write_bytes(data)


def written_sector(lba: int) -> bytes:
    data = bytearray((0xA5 ^ (lba * 13 + i * 3)) & 0xFF for i in range(SECTOR))
    data[:5] = b"WROTE"
    data[8:12] = struct.pack("<I", lba)
    return bytes(data)


def after_the_test(original: bytes) -> bytes:
    """The primary disk as the kernel leaves it (its PIO, MULTIPLE and DMA writes)."""
    data = bytearray(original)
    for lba in (100, 101, 200, 201, 202, 203, 204, 205, 300, 301):
        data[lba * SECTOR:(lba + 1) * SECTOR] = written_sector(lba)
    return bytes(data)


def guest_lines(out: str) -> list[str]:
    return [line for line in guests.serial_lines(out, BANNER) if line]


@pytest.fixture(scope="module")
def kernel(firmware_dir):
    return str(firmware_dir / "ide.elf")


@pytest.fixture
def disks(tmp_path):
    primary, secondary = tmp_path / "primary.img", tmp_path / "secondary.img"
    original = make_image(primary, PRIMARY_SECTORS)
    make_secondary(secondary)
    return primary, secondary, original


def check_pyhv_run(status, out, err):
    assert status == guests.exit_status(EXIT_CODE), (out, err)
    lines = guest_lines(out)
    assert lines[-1] == "ide test done"
    assert not [line for line in lines if "bad" in line or "timeout" in line or "no DRQ" in line], lines
    for line in PYHV_ONLY:
        assert line in lines
    for expected in ("00:01.1 8086:7010 class 010180",
                     'primary master identify: model "QEMU HARDDISK                           " '
                     'serial "QM00001             " firmware "2.5+    "',
                     "primary master chs 8/16/63 lba28 8192 lba48 8192, status after 0x50",
                     "read multiple lba 20: 10 sectors, 3 interrupts, status 0x50",
                     "read dma lba 40: irq yes, bm status 0x04, ata status 0x50 error 0x00",
                     "short prd table: irqs 0, bm status 0x00, ata alt status 0x50",
                     "long prd table: irq yes, bm status 0x05, ata status 0x50 error 0x00",
                     "secondary master chs 4/16/32 lba28 2048 lba48 2048, status after 0x50",
                     'secondary sector 0: "second disk here" signature 55aa'):
        assert expected in lines
    return lines


def test_drive_if_ide(kernel, disks):
    primary, secondary, original = disks
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-drive", f"file={primary},format=raw,if=ide,index=0",
                                "-drive", f"file={secondary},format=raw,index=2")
    check_pyhv_run(status, out, err)
    assert primary.read_bytes() == after_the_test(original)


def test_hda_hdc_and_snapshot(kernel, disks):
    primary, secondary, original = disks
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS, "-snapshot",
                                "-hda", str(primary), "-hdc", str(secondary))
    check_pyhv_run(status, out, err)                  # the guest read its writes back
    assert "Image format was not specified" in err
    assert primary.read_bytes() == original


def test_device_ide_hd_on_qcow2_made_by_qemu_img(kernel, disks, tmp_path):
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        pytest.skip("qemu-img is not installed (Debian package qemu-utils)")
    primary, secondary, original = disks
    image = tmp_path / "primary.qcow2"
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(primary), str(image)], check=True)
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-drive", f"file={image},if=none,id=p",
                                "-drive", f"file={secondary},format=raw,if=none,id=s",
                                "-device", "ide-hd,drive=s,bus=ide.1,unit=0",
                                "-device", "ide-hd,drive=p,bus=ide.0")
    check_pyhv_run(status, out, err)
    check = subprocess.run([qemu_img, "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout + check.stderr
    primary.write_bytes(after_the_test(original))
    compare = subprocess.run([qemu_img, "compare", "-f", "qcow2", "-F", "raw", str(image), str(primary)],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr


@pytest.mark.qemu
def test_matches_qemu(kernel, tmp_path, qemu):
    runs = {}
    for who in ("qemu", "pyhv"):
        primary, secondary = tmp_path / f"{who}-primary.img", tmp_path / f"{who}-secondary.img"
        make_image(primary, PRIMARY_SECTORS)
        make_secondary(secondary)
        drives = ["-drive", f"file={primary},format=raw,if=ide,index=0",
                  "-drive", f"file={secondary},format=raw,if=ide,index=2"]
        if who == "qemu":
            status, out = guests.run_qemu(kernel, extra_args=drives)[:2]
            err = ""
        else:
            status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS, *drives)
        assert status == guests.exit_status(EXIT_CODE), (who, out, err)
        runs[who] = (guest_lines(out), primary.read_bytes(), secondary.read_bytes())
    pyhv_lines, qemu_lines = runs["pyhv"][0], runs["qemu"][0]
    assert [PYHV_ONLY.get(line, line) for line in pyhv_lines] == qemu_lines
    assert runs["pyhv"][1:] == runs["qemu"][1:]
