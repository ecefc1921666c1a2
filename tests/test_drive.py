"""-drive, -snapshot and -chardev on the command line, and the machine they build: drive
ids and indexes as QEMU assigns them, every kind of bad input as one error line, format
probing, cache modes, temporary overlays, if=virtio's virtio-blk-pci, and the virtio-mmio
announcement on a Linux kernel's command line."""

import os

import pytest

from devicemodel.block.drive import open_drive, parse_drive
from devicemodel.block.image import BlockError
from devicemodel.block.qcow2_format import QCOW2_MAGIC
from devicemodel.cli import main, parse_command_line
from devicemodel.loaders.bzimage import BootParams
from devicemodel.machine import Machine
from devicemodel.virtio.blk import VirtioBlk
from devicemodel.virtio.serial import VirtioSerial
from test_bzimage_loader import bzimage

MiB = 1 << 20


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(MiB))
    return str(path)


def error_of(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 1 and out == "" and err.count("\n") == 1 and err.startswith("pyhv: "), err
    return err


def test_ids_and_indexes_as_qemu_names_them(disk):
    drives = []
    for arg in (f"file={disk},if=virtio", f"file={disk},if=virtio", f"file={disk},if=none",
                f"file={disk},if=virtio,index=5", f"file={disk},if=none,id=mine"):
        drives.append(parse_drive(arg, drives))
    assert [(d.id, d.index) for d in drives] == [("virtio0", 0), ("virtio1", 1), ("none0", 0),
                                                ("virtio5", 5), ("mine", 1)]
    d = parse_drive(f"file={disk},if=none,format=qcow2,readonly=on,cache=unsafe,snapshot=off", [])
    assert (d.format, d.read_only, d.cache, d.snapshot) == ("qcow2", True, "unsafe", False)


@pytest.mark.parametrize("arg, message", [
    ("file=DISK,if=scsi", "interface 'scsi' is not supported by pyhv yet"),
    ("file=DISK,if=bogus", "unsupported bus type 'bogus'"),
    ("file=DISK,if=virtio,format=vmdk", "Unknown driver 'vmdk'"),
    ("file=DISK,if=virtio,media=cdrom", "media=cdrom is not supported: pyhv has no ATAPI CD-ROM drives"),
    ("file=DISK,if=virtio,media=tape", "'tape' invalid media"),
    ("file=DISK,if=virtio,cache=fast", "invalid cache option"),
    ("file=DISK,if=virtio,readonly=maybe", "Parameter 'readonly' expects 'on' or 'off'"),
    ("file=DISK,if=virtio,bogus=1", "Invalid parameter 'bogus'"),
    ("if=virtio", "a drive needs file=PATH"),
    ("file=DISK,if=none,id=9x", "Parameter 'id' expects an identifier"),
    ("file=DISK,if=virtio,index=x", "Parameter 'index' expects a number"),
])
def test_bad_drive_options(capsys, no_vm, kernel, disk, arg, message):
    err = error_of(capsys, "-kernel", kernel, "-drive", arg.replace("DISK", disk))
    assert message in err and "-drive " in err


@pytest.mark.parametrize("args, message", [
    (["-drive", "file=DISK,if=virtio", "-drive", "file=DISK,if=virtio,index=0"],
     "drive with bus=0, unit=0 (index=0) exists"),
    (["-drive", "file=DISK,if=none,id=a", "-drive", "file=DISK,if=none,id=a"], "Duplicate ID 'a' for drive"),
    (["-drive", "file=/nonexistent/disk,if=virtio"], "Could not open '/nonexistent/disk'"),
    (["-device", "virtio-blk-device"], "drive property not set"),
    (["-device", "virtio-blk-device,drive=nope"], "Property 'virtio-blk-device.drive' can't find value 'nope'"),
    (["-drive", "file=DISK,if=virtio,format=raw", "-device", "virtio-blk-device,drive=virtio0"],
     "Property 'virtio-blk-device.drive' can't take value 'virtio0', it's in use"),
    (["-drive", "file=DISK,if=none,id=d,format=raw", "-device", "virtio-blk-device,drive=d,queue-size=100"],
     "invalid queue-size property (100)"),
    (["-device", "virtconsole"], "No 'virtio-serial-bus' bus found for device 'virtconsole'"),
    (["-device", "virtio-serial-device", "-device", "virtconsole,chardev=c9"],
     "Property 'virtconsole.chardev' can't find value 'c9'"),
    (["-device", "virtio-serial-device", "-device", "virtserialport,nr=0"], "port number 0 is reserved"),
    (["-device", "virtio-serial-device,emergency-write=maybe"], "expects on or off"),
    (["-chardev", "stdio"], "Parameter 'id' is missing"),
    (["-chardev", "file,id=f"], "chardev: file: 'path' is required"),
    (["-chardev", "socket,id=s"], "chardev: socket: 'host' and 'port', or 'path', is required"),
    (["-chardev", "null,id=a", "-chardev", "null,id=a"], "attempt to add duplicate property 'id' ('a')"),
    (["-chardev", "stdio,id=a"], "cannot use stdio by multiple character devices"),
    (["-device", "virtio-rng-device"] * 9, "all 8 virtio-mmio transports are in use"),
])
def test_bad_device_and_chardev_options(capsys, no_vm, kernel, disk, args, message):
    err = error_of(capsys, "-kernel", kernel, *[a.replace("DISK", disk) for a in args])
    assert message in err


def test_drive_if_virtio_adds_a_device_in_command_line_order(kernel, disk):
    config = parse_command_line(["-kernel", kernel, "-device", "virtio-rng-device",
                                 "-drive", f"file={disk},if=virtio,format=raw", "-snapshot"])
    assert [d.driver for d in config.devices] == ["virtio-rng-device", "virtio-blk-pci"]
    assert config.devices[1].props["drive"] == "virtio0" and config.snapshot


def test_drive_if_virtio_is_virtio_blk_pci_on_the_pc(kernel, disk):
    machine = Machine(parse_command_line(["-kernel", kernel, "-drive", f"file={disk},if=virtio,format=raw"]))
    try:
        function = machine.chipset.bus.devices[2 << 3]             # 00:02.0, the first free slot
        assert function.name == "virtio-blk-pci" and isinstance(function.device, VirtioBlk)
        assert not any(r.name.startswith("virtio-mmio") for r in machine.mmio.regions)
    finally:
        machine.close()


def test_drive_if_virtio_needs_pci_as_in_qemu(capsys, no_vm, kernel, disk):
    err = error_of(capsys, "-kernel", kernel, "-M", "microvm", "-drive", f"file={disk},if=virtio,format=raw")
    assert "No 'PCI' bus found for device 'virtio-blk-pci'" in err


def test_machine_places_devices_and_announces_them_to_linux(tmp_path, disk):
    linux = tmp_path / "bzImage"
    linux.write_bytes(bzimage())
    config = parse_command_line(["-kernel", str(linux), "-append", "console=ttyS0",
                                 "-drive", f"file={disk},if=none,id=d0,format=raw",
                                 "-device", "virtio-blk-device,drive=d0", "-device", "virtio-serial-device", "-chardev", "null,id=c0",
                                 "-device", "virtconsole,chardev=c0,name=org.pyhv.console"])
    machine = Machine(config)
    try:
        transports = [d for d in machine.devices if hasattr(d, "device")]
        assert [(t.base, type(t.device)) for t in transports] == [(0xFEB00E00, VirtioBlk),
                                                                  (0xFEB00C00, VirtioSerial)]
        assert len([r for r in machine.mmio.regions if r.name.startswith("virtio-mmio")]) == 8
        params = BootParams.parse(bytes(machine.ram[machine.boot.boot_params_addr:][:4096]))
        cmdline = bytes(machine.ram[params.hdr.cmd_line_ptr:][:200]).split(b"\0")[0].decode()
        assert cmdline == ("console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12"
                           " virtio_mmio.device=512@0xfeb00c00:11")
    finally:
        machine.close()


def test_multiboot_kernels_get_no_announcement(kernel, disk):
    machine = Machine(parse_command_line(["-kernel", kernel, "-append", "x=1",
                                          "-drive", f"file={disk},if=none,id=d0,format=raw",
                                          "-device", "virtio-blk-device,drive=d0"]))
    try:
        assert b"virtio_mmio" not in bytes(machine.ram[:2 * MiB])
    finally:
        machine.close()


def test_no_virtio_device_no_transports(kernel):
    machine = Machine(parse_command_line(["-kernel", kernel]))
    try:
        assert not any(r.name.startswith("virtio-mmio") for r in machine.mmio.regions)
    finally:
        machine.close()


def test_probed_raw_warns_and_guards_block_0(tmp_path, capsys):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(MiB))
    drive = open_drive(parse_drive(f"file={path},if=none", []))
    assert "probing guessed raw" in capsys.readouterr().err
    drive.write(0, b"boot sector")
    with pytest.raises(BlockError, match="probed"):
        drive.write(0, QCOW2_MAGIC + bytes(508))
    drive.write(0, QCOW2_MAGIC[:2])
    with pytest.raises(BlockError, match="probed"):
        drive.write(2, QCOW2_MAGIC[2:])       # completes the magic at offset 0
    drive.close()
    drive = open_drive(parse_drive(f"file={path},if=none,format=raw", []))
    drive.write(0, QCOW2_MAGIC)                 # explicitly raw: allowed
    drive.close()


def test_snapshot_overlay_keeps_the_image_and_its_own_file(tmp_path, monkeypatch):
    path = tmp_path / "disk.img"
    path.write_bytes(b"\x11" * MiB)
    overlays = tmp_path / "tmp"
    overlays.mkdir()
    monkeypatch.setenv("TMPDIR", str(overlays))
    drive = open_drive(parse_drive(f"file={path},if=none,format=raw", []), snapshot=True)
    assert list(overlays.iterdir()) == []            # the overlay's name is gone already
    drive.write(4096, b"\x22" * 4096)
    drive.flush()
    assert drive.read(0, 3 * 4096) == b"\x11" * 4096 + b"\x22" * 4096 + b"\x11" * 4096
    drive.close()
    assert path.read_bytes() == b"\x11" * MiB
    drive = open_drive(parse_drive(f"file={path},if=none,format=raw,snapshot=off", []), snapshot=True)
    drive.write(0, b"\x33")
    drive.close()
    assert path.read_bytes()[:1] == b"\x33"


@pytest.mark.parametrize("cache, writeback, flushes_on_write, flushes_on_flush", [
    ("writeback", True, False, True), ("none", True, False, True), ("writethrough", False, True, True),
    ("directsync", False, True, True), ("unsafe", True, False, False)])
def test_cache_modes(disk, monkeypatch, cache, writeback, flushes_on_write, flushes_on_flush):
    drive = open_drive(parse_drive(f"file={disk},if=none,format=raw,cache={cache}", []))
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    assert drive.cache.writeback == writeback
    drive.write(0, b"x")
    assert bool(synced) == flushes_on_write
    synced.clear()
    drive.flush()
    assert bool(synced) == flushes_on_flush
    drive.close()


def test_device_help_lists_the_virtio_devices(capsys):
    assert main(["-device", "help"]) == 0
    out = capsys.readouterr().out
    for name in ("virtio-blk-device", "virtio-rng-device", "virtio-serial-device", "virtconsole", "virtserialport"):
        assert f'name "{name}"' in out
    assert main(["-device", "virtio-blk-device,help"]) == 0
    assert "drive=<str>" in capsys.readouterr().out
