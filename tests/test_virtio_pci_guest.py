"""The virtio-pci test kernel (firmware/kernels/virtio_pci_blk.c) finds virtio-blk-pci by
scanning configuration space and drives it through its capabilities from inside the
guest: MSI-X to the local APIC (masked vectors wait in the PBA), requests in flight,
queue and device resets, then INTx through the I/O APIC. QEMU, given the same device
(modern only, in the same slot), prints the same lines and leaves the same image."""

import pytest

import guests
from guests import run_pyhv

MiB = 1 << 20
EXIT_CODE = 0x16
SECTOR0 = bytes(range(0xA0, 0xB0))
MESSAGE = b"written by the pyhv virtio-pci test kernel"
DEVICE = ["-device", "virtio-blk-pci,drive=d0,addr=04.0,serial=pyhv-disk"]


def expected_lines(slot: int = 4, disk_id: str = "pyhv-disk", interrupt_line: int = 11) -> list[str]:
    return [
        "virtio-pci test",
        f"virtio-blk-pci at 00:{slot:02x}.0: revision 1, class 0x0100, subsystem 1af4:1100, pin 1",
        "cap 0x98: MSI-X, 2 vectors, table in BAR 1 at 0x0, PBA in BAR 1 at 0x800",
        "cap 0x84: virtio type 5, length 20, BAR 0, offset 0x0, size 0x0",
        "cap 0x70: virtio type 2, length 20, BAR 4, offset 0x3000, size 0x1000",
        "notify_off_multiplier: 4",
        "cap 0x60: virtio type 4, length 16, BAR 4, offset 0x2000, size 0x1000",
        "cap 0x50: virtio type 3, length 16, BAR 4, offset 0x1000, size 0x1000",
        "cap 0x40: virtio type 1, length 16, BAR 4, offset 0x0, size 0x1000",
        "offers VERSION_1 yes, INDIRECT_DESC yes, EVENT_IDX yes, RING_RESET yes",
        "offers SEG_MAX yes, BLK_SIZE yes, FLUSH yes, DISCARD yes, WRITE_ZEROES yes",
        "features accepted: yes",
        "num_queues: 1, queue 0 size: 256, notify_off: 0",
        "capacity: 2048 sectors, through the PCI_CFG window: 2048",
        "num_queues through the PCI_CFG window: 1",
        "config_msix_vector 7 reads 0xffff",
        "config_msix_vector: 0, queue_msix_vector: 1",
        "queue_enable: 1, status: 0x0f",
        "read sector 0: status 0",
        "sector 0: " + " ".join(f"{b:02x}" for b in SECTOR0),
        "MSI-X interrupt: yes",
        "write sector 1 (vector masked): status 0",
        "interrupt while masked: no, pending bit: 1",
        "after unmasking: interrupt yes, pending bit 0",
        "indirect read of sector 1: status 0, matches",
        "3 requests in flight: heads 0 3 6, statuses 0 0 0, sector 1 in buffer 1: yes",
        "interrupted: yes",
        f'get id: status 0, id "{disk_id}"',
        "flush: status 0",
        "write zeroes to sector 2: status 0",
        "sector 2 now zero: yes",
        "discard sector 3: status 0",
        "read past the end: status 1",
        "queue reset: enable 0, size 256, vector 0xffff",
        "read after the queue reset: status 0, interrupt yes",
        "device reset: config vector 0xffff, queue enable 0, queue vector 0xffff",
        "config interrupts: 0",
        "INTx read of sector 0: status 0",
        f"INTx interrupt on IRQ {interrupt_line}: yes, ISR in the handler 0x1, ISR after 0x0",
        "virtio-pci test done",
    ]


def make_image(path):
    data = bytearray(MiB)
    data[:16] = SECTOR0
    data[2 * 512:3 * 512] = b"\x5a" * 512            # the guest zeroes sector 2
    path.write_bytes(data)
    return bytes(data)


def after_run(original: bytes) -> bytes:
    sector1 = bytearray((i * 7 + 3) & 0xFF for i in range(512))
    sector1[:len(MESSAGE)] = MESSAGE
    return original[:512] + bytes(sector1) + bytes(512) + original[3 * 512:]


def guest_lines(out: str) -> list[str]:
    return [line for line in guests.serial_lines(out, "virtio-pci test") if line]


@pytest.fixture(scope="module")
def kernel(firmware_dir):
    return str(firmware_dir / "virtio_pci_blk.elf")


def test_msix_and_intx_on_a_raw_image(kernel, tmp_path):
    image = tmp_path / "disk.img"
    original = make_image(image)
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-drive", f"file={image},if=none,format=raw,id=d0", *DEVICE)
    assert status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(out) == expected_lines()
    assert image.read_bytes() == after_run(original)


def test_drive_if_virtio_is_found_in_the_first_free_slot(kernel, tmp_path):
    image = tmp_path / "disk.img"
    make_image(image)
    status, out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS, "-snapshot",
                                "-drive", f"file={image},if=virtio,format=raw")
    assert status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(out) == expected_lines(slot=2, disk_id="", interrupt_line=10)


@pytest.mark.qemu
def test_matches_qemu(kernel, tmp_path, qemu):
    pyhv_image, qemu_image = tmp_path / "pyhv.img", tmp_path / "qemu.img"
    make_image(pyhv_image)
    make_image(qemu_image)
    q_status, q_out = guests.run_qemu(kernel, extra_args=[
        "-drive", f"file={qemu_image},if=none,format=raw,id=d0", DEVICE[0], DEVICE[1] + ",disable-legacy=on"])[:2]
    p_status, p_out, err = run_pyhv("-kernel", kernel, "-nographic", *guests.DEBUG_EXIT_ARGS,
                                    "-drive", f"file={pyhv_image},if=none,format=raw,id=d0", *DEVICE)
    assert p_status == q_status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(p_out) == guest_lines(q_out) == expected_lines()
    assert pyhv_image.read_bytes() == qemu_image.read_bytes()
