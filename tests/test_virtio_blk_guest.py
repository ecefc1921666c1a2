"""The virtio-blk test kernel (firmware/kernels/virtio_blk.c) drives the device over
virtio-mmio from inside the guest: on raw and qcow2 images, with -snapshot, and under
QEMU's microvm (without ACPI: the same eight transports at 0xfeb00000) for comparison --
same output, same image afterwards."""

import shutil
import subprocess

import pytest

import guests
from guests import run_pyhv

MiB = 1 << 20
EXIT_CODE = 0x14
SECTOR0 = bytes(range(0xA0, 0xB0))
MESSAGE = b"written by the pyhv virtio-blk test kernel"


def expected_sector1() -> bytes:
    data = bytearray((i * 7 + 3) & 0xFF for i in range(512))
    data[:len(MESSAGE)] = MESSAGE
    return bytes(data)


def expected_lines(disk_id: str) -> list[str]:
    return [
        "virtio-blk test",
        "virtio-blk at transport 7 (0xfeb00e00), version 2, vendor 0x554d4551",
        "offers VERSION_1: yes, INDIRECT_DESC: yes",
        "features accepted: yes",
        "capacity: 2048 sectors",
        "queue 0 max size at least 8: yes",
        "queue ready: 1, status: 0x0f",
        "read sector 0: status 0",
        "sector 0: " + " ".join(f"{b:02x}" for b in SECTOR0),
        "interrupt status after the read: 0x1, after ack: 0x0",
        "write sector 1: status 0",
        "indirect read of sector 1: status 0",
        "read back: matches",
        f'get id: status 0, id "{disk_id}"',
        "flush: status 0",
        "read past the end: status 1",
        "virtio-blk test done",
    ]


def make_image(path):
    data = bytearray(MiB)
    data[:16] = SECTOR0
    path.write_bytes(data)
    return bytes(data)


def after_write(original: bytes) -> bytes:
    return original[:512] + expected_sector1() + original[1024:]


def guest_lines(out: str) -> list[str]:
    return [line for line in guests.serial_lines(out, "virtio-blk test") if line]


@pytest.fixture(scope="module")
def kernel(firmware_dir):
    return str(firmware_dir / "virtio_blk.elf")


def test_raw_image(kernel, tmp_path):
    image = tmp_path / "disk.img"
    original = make_image(image)
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-drive", f"file={image},if=none,format=raw,id=d0",
                                "-device", "virtio-blk-device,drive=d0,serial=pyhv-disk")
    assert status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(out) == expected_lines("pyhv-disk")
    assert image.read_bytes() == after_write(original)


def test_snapshot_leaves_the_image_alone(kernel, tmp_path):
    image = tmp_path / "disk.img"
    original = make_image(image)
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS, "-snapshot",
                                "-drive", f"file={image},if=none,format=raw,id=d0", "-device", "virtio-blk-device,drive=d0")
    assert status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(out) == expected_lines("")        # the guest read its write back
    assert image.read_bytes() == original


@pytest.fixture
def qemu_img():
    path = shutil.which("qemu-img")
    if path is None:
        pytest.skip("qemu-img is not installed (Debian package qemu-utils)")
    return path


def test_qcow2_image_made_by_qemu_img(kernel, tmp_path, qemu_img):
    raw = tmp_path / "disk.raw"
    original = make_image(raw)
    image = tmp_path / "disk.qcow2"
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-drive", f"file={image},if=none,id=d0", "-device", "virtio-blk-device,drive=d0")
    assert status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(out) == expected_lines("")
    check = subprocess.run([qemu_img, "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout + check.stderr
    raw.write_bytes(after_write(original))
    compare = subprocess.run([qemu_img, "compare", "-f", "qcow2", "-F", "raw", str(image), str(raw)],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr


@pytest.mark.qemu
def test_matches_qemu_microvm(kernel, tmp_path, qemu):
    pyhv_image, qemu_image = tmp_path / "pyhv.img", tmp_path / "qemu.img"
    make_image(pyhv_image)
    make_image(qemu_image)
    device = ["-device", "virtio-blk-device,drive=d0,serial=pyhv-disk"]
    q_status, q_out = guests.run_qemu(kernel, extra_args=[
        "-M", "microvm,acpi=off", "-global", "virtio-mmio.force-legacy=false",
        "-drive", f"file={qemu_image},if=none,format=raw,id=d0", *device])[:2]
    p_status, p_out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                    "-drive", f"file={pyhv_image},if=none,format=raw,id=d0", *device)
    assert p_status == q_status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(p_out) == guest_lines(q_out) == expected_lines("pyhv-disk")
    assert pyhv_image.read_bytes() == qemu_image.read_bytes()
