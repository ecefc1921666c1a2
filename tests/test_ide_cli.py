"""IDE disks on the command line, as QEMU's pc machine takes them: -drive if=ide (the
default) with indexes 0-3, -hda..-hdd, -device ide-hd with bus= and unit=, the drive
names QEMU gives them, and the errors for what cannot be."""

import pytest

from devicemodel.block.drive import parse_drive
from devicemodel.cli import main, parse_command_line
from devicemodel.machine import Machine

MiB = 1 << 20


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk,1.img"                    # a comma, as QEMU's -hda allows
    path.write_bytes(bytes(MiB))
    return str(path)


def error_of(capsys, *argv):
    """The error line (after the format-probing warnings of drives without format=)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert status == 1 and out == "" and lines[-1].startswith("pyhv: "), err
    assert all("warning: Image format was not specified" in line for line in lines[:-1]), err
    return lines[-1]


def positions(machine):
    return {(channel.name, index): unit.disk.drive.id
            for channel in machine.chipset.ide.channels
            for index, unit in enumerate(channel.units) if unit.disk is not None}


def test_drive_ids_follow_bus_and_unit(disk):
    escaped = disk.replace(",", ",,")
    drives = []
    for arg in (f"file={escaped}", f"file={escaped},index=3", f"file={escaped},if=ide", f"file={escaped},id=x"):
        drives.append(parse_drive(arg, drives))
    assert [(d.id, d.index, d.interface) for d in drives] == [
        ("ide0-hd0", 0, "ide"), ("ide1-hd1", 3, "ide"), ("ide0-hd1", 1, "ide"), ("x", 2, "ide")]


def test_hd_options_and_drives_reach_their_positions(kernel, disk):
    escaped = disk.replace(",", ",,")
    config = parse_command_line(["-kernel", kernel, "-hdb", disk, "-hdc", disk,
                                 "-drive", f"file={escaped},format=raw",
                                 "-drive", f"file={escaped},format=raw,if=none,id=mine",
                                 "-device", "ide-hd,drive=mine,serial=SN42,model=Disk"])
    machine = Machine(config)
    try:
        assert positions(machine) == {("ide.0", 0): "ide0-hd0", ("ide.0", 1): "ide0-hd1",
                                      ("ide.1", 0): "ide1-hd0", ("ide.1", 1): "mine"}
        disk_device = machine.chipset.ide.channels[1].units[1].disk
        assert (disk_device.serial, disk_device.model, disk_device.firmware) == ("SN42", "Disk", "2.5+")
        assert machine.chipset.ide.channels[0].units[1].disk.serial == "QM00002"
        assert all(drive.user == "ide-hd" for drive in machine.drives.values())
    finally:
        machine.close()


def test_device_ide_hd_finds_a_free_unit(kernel, disk):
    escaped = disk.replace(",", ",,")
    config = parse_command_line(["-kernel", kernel] + [
        arg for n in range(3) for arg in ("-drive", f"file={escaped},format=raw,if=none,id=d{n}")] + [
        "-device", "ide-hd,drive=d0,bus=ide.1", "-device", "ide-hd,drive=d1", "-device", "ide-hd,drive=d2,unit=1"])
    machine = Machine(config)
    try:
        assert positions(machine) == {("ide.1", 0): "d0", ("ide.0", 0): "d1", ("ide.0", 1): "d2"}
    finally:
        machine.close()


@pytest.mark.parametrize("args, message", [
    (["-drive", "file=DISK,index=4"], "machine type does not support if=ide,bus=2,unit=0"),
    (["-hda", "DISK", "-drive", "file=DISK,index=0"], "drive with bus=0, unit=0 (index=0) exists"),
    (["-hdd", "DISK", "-drive", "file=DISK,if=ide,index=3"], "drive with bus=1, unit=1 (index=3) exists"),
    (["-drive", "file=DISK,media=cdrom"], "media=cdrom is not supported: pyhv has no ATAPI CD-ROM drives"),
    (["-hda", "/nonexistent/disk"], "Could not open '/nonexistent/disk'"),
    (["-device", "ide-hd"], "No drive specified"),
    (["-device", "ide-hd,drive=nope"], "Property 'ide-hd.drive' can't find value 'nope'"),
    (["-drive", "file=DISK,if=none,id=d", "-device", "ide-hd,drive=d,bus=ide.2"], "Bus 'ide.2' not found"),
    (["-drive", "file=DISK,if=none,id=d", "-device", "ide-hd,drive=d,unit=2"],
     "Can't create IDE unit 2, bus supports only 2 units"),
    (["-hda", "DISK", "-drive", "file=DISK,if=none,id=d", "-device", "ide-hd,drive=d,bus=ide.0,unit=0"],
     "IDE unit 0 is in use"),
    (["-drive", "file=DISK,if=none,id=d", "-device", "ide-hd,drive=d,bus=ide.0,unit=x"],
     "Property 'ide-hd.unit' doesn't take value 'x'"),
    (["-hda", "DISK", "-device", "ide-hd,drive=ide0-hd0"], "Property 'ide-hd.drive' can't take value 'ide0-hd0'"),
    (["-M", "microvm", "-hda", "DISK"], "No 'IDE' bus found for device 'ide-hd'"),
    (["-device", "ide-cd"], "'ide-cd' is not a valid device model name"),
])
def test_bad_ide_options(capsys, no_vm, kernel, disk, args, message):
    escaped = disk.replace(",", ",,")
    argv = [a.replace("file=DISK", f"file={escaped}").replace("DISK", disk) for a in args]
    err = error_of(capsys, "-kernel", kernel, *argv)
    assert message in err


def test_help_lists_ide(capsys):
    assert main(["-device", "help"]) == 0
    out = capsys.readouterr().out
    assert 'name "ide-hd", bus IDE, desc "virtual IDE disk"' in out
    assert main(["-device", "ide-hd,help"]) == 0
    out = capsys.readouterr().out
    assert "drive=<str>" in out and "unit=<uint32>" in out and "bus=<str>" in out
    assert main(["-help"]) == 0
    assert "-hda/-hdb file" in capsys.readouterr().out


def test_info_block_and_qtree(kernel, disk, tmp_path):
    from types import SimpleNamespace

    from devicemodel.monitor.info import info_block, info_qtree
    other = tmp_path / "other.img"
    other.write_bytes(bytes(MiB))
    escaped = disk.replace(",", ",,")
    config = parse_command_line(["-kernel", kernel, "-drive", f"file={escaped},format=raw,cache=unsafe",
                                 "-drive", f"file={other},format=raw,index=3,readonly=on",
                                 "-drive", f"file={other},format=raw,if=none,id=spare"])
    machine = Machine(config)
    try:
        mon = SimpleNamespace(machine=machine)
        assert info_block(mon, {}).split("\n\n") == [
            f"ide0-hd0: {disk} (raw)\n    Attached to:      ide-hd (ide.0, unit 0)\n"
            "    Cache mode:       writeback, ignore flushes",
            f"ide1-hd1: {other} (raw, read-only)\n    Attached to:      ide-hd (ide.1, unit 1)\n"
            "    Cache mode:       writeback",
            f"spare: {other} (raw)\n    Cache mode:       writeback"]
        qtree = info_qtree(mon, {}).splitlines()
        start = qtree.index('      dev: piix3-ide, id ""')
        assert qtree[start + 1] == "        addr = 01.1"
        assert qtree[start + 2].startswith("        class IDE controller, addr 00:01.1, pci id 8086:7010")
        assert qtree[start + 3].startswith("        bar 4: i/o at 0x")
        assert qtree[start + 4:start + 18] == [
            "        bus: ide.1", "          type IDE",
            '          dev: ide-hd, id ""', '            drive = "ide1-hd1"', '            serial = "QM00004"',
            '            model = "QEMU HARDDISK"', "            unit = 1 (0x1)",
            "        bus: ide.0", "          type IDE",
            '          dev: ide-hd, id ""', '            drive = "ide0-hd0"', '            serial = "QM00001"',
            '            model = "QEMU HARDDISK"', "            unit = 0 (0x0)"]
        assert 'dev: piix3-ide, id ""' not in qtree[:start]        # not an ISA device
    finally:
        machine.close()
