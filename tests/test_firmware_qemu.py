"""The guest kernels in firmware/ under QEMU (TCG): the reference behaviour
that pyhv must reproduce with the same binaries."""

import re
import struct

import pytest

import guests
from guests import run_qemu, serial_lines

KERNELS = ["default", "exits", "hello"]


def _explain(result):
    status, output = result
    return f"exit status {status}\n--- serial output ---\n{output}\n--- qemu stderr ---\n{result.stderr}"


@pytest.mark.parametrize("name", KERNELS)
def test_kernel_is_multiboot_elf32(firmware_dir, name):
    data = (firmware_dir / f"{name}.elf").read_bytes()
    assert data[:4] == b"\x7fELF"
    assert data[4] == 1, "ELFCLASS32"
    assert data[5] == 1, "little endian"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert (e_type, e_machine) == (2, 3), "ET_EXEC for EM_386"

    # Multiboot v1 header: 4-byte aligned, within the first 8 KiB
    for off in range(0, min(len(data), 8192) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic == 0x1BADB002:
            break
    else:
        pytest.fail("no Multiboot header in the first 8 KiB")
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags == 0x3, "page-align + memory info, no a.out kludge"

    # loaded at 1 MiB
    e_entry, e_phoff = struct.unpack_from("<II", data, 24)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 42)
    loads = []
    for i in range(e_phnum):
        p_type, _, _, p_paddr = struct.unpack_from("<IIII", data, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append(p_paddr)
    assert min(loads) == 0x100000
    assert 0x100000 <= e_entry < 0x200000


@pytest.mark.qemu
def test_hello_under_qemu(firmware_dir, qemu):
    append = "foo bar=baz"
    result = run_qemu(firmware_dir / "hello.elf", append=append, timeout=60)
    status, output = result
    assert status == guests.exit_status(guests.HELLO_EXIT_CODE) == 67, _explain(result)

    lines = serial_lines(output, guests.HELLO_BANNER)
    assert lines[0] == guests.HELLO_BANNER
    expected = guests.hello_expected_lines()
    got = lines[1:1 + len(expected)]
    for want, line in zip(expected, got):
        assert line == want, _explain(result)
    assert len(got) == len(expected), _explain(result)

    rest = lines[1 + len(expected):]
    assert rest[0] == "magic: 0x2badb002 ok", _explain(result)
    lower = re.fullmatch(r"mem_lower: (\d+) KiB", rest[1])
    upper = re.fullmatch(r"mem_upper: (\d+) KiB", rest[2])
    assert lower and upper, _explain(result)
    assert 600 <= int(lower.group(1)) <= 640
    assert 120 * 1024 <= int(upper.group(1)) <= 127 * 1024  # -m 128M
    assert rest[3].startswith("cmdline: ") and rest[3].endswith(append), _explain(result)
    assert rest[4] == "hello done", _explain(result)


@pytest.mark.qemu
def test_exits_under_qemu(firmware_dir, qemu):
    result = run_qemu(firmware_dir / "exits.elf", timeout=60)
    status, output = result
    assert status == guests.exit_status(guests.EXITS_EXIT_CODE) == 33, _explain(result)
    lines = serial_lines(output, guests.EXITS_BANNER)
    assert lines[:5] == [
        "exits test",
        "lsr reads: 1000",
        "lsr thre set: 1000",
        "port 0x80 writes: 10",
        "exits test done",
    ], _explain(result)


@pytest.mark.qemu
def test_default_guest_under_qemu(firmware_dir, qemu):
    result = run_qemu(firmware_dir / "default.elf", append="hello world", timeout=60,
                      until=guests.DEFAULT_LAST_LINE)
    status, output = result
    # it halts forever: QEMU is killed once the last line has appeared
    assert result.until_seen, _explain(result)
    assert status is None

    lines = serial_lines(output, guests.DEFAULT_GREETING)
    text = "\n".join(lines)
    assert lines[0] == guests.DEFAULT_GREETING
    assert "Multiboot magic: 0x2badb002 (ok)" in text
    m = re.search(r"^Memory: lower (\d+) KiB, upper (\d+) KiB$", text, re.M)
    assert m, _explain(result)
    assert int(m.group(1)) > 0 and int(m.group(2)) > 100 * 1024
    assert "Memory map:" in text
    assert re.search(r"^  0x0000000000100000 - 0x[0-9a-f]{16}  available \(type 1\)$", text, re.M)
    m = re.search(r'^Command line: "(.*)"$', text, re.M)
    assert m and "hello world" in m.group(1), _explain(result)
    assert "Boot loader: qemu" in text
    for hint in ("pyhv -kernel your-kernel.elf -nographic", "pyhv --help", "pyhv -d exits",
                 "pyhv -append"):
        assert hint in text, _explain(result)
    assert lines[-1] == guests.DEFAULT_LAST_LINE or lines[-2] == guests.DEFAULT_LAST_LINE
