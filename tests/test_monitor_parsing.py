"""The monitor's argument parsing and formatting without a VM: QEMU's expression syntax,
/fmt specs, the dump layout, and x/i without the disassembler library."""

import sys

import pytest

from devicemodel.monitor.memory import format_dump
from devicemodel.monitor.parser import Format, MonitorError, parse_arguments

DEFAULT = Format(1, "x", 4)


def registers(name):
    return {"eax": 0x10, "pc": 0x100000}[name]


@pytest.mark.parametrize("text, value", [
    ("0x10", 0x10), ("010", 8), ("10", 10), ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9),
    ("$eax + 1", 0x11), ("$pc & 0xff0000", 0x100000), ("-1", (1 << 64) - 1), ("~0 ^ 0xff", (1 << 64) - 256),
    ("7 % 4 | 8", 11), ("'A'", 65),
])
def test_expressions(text, value):
    assert parse_arguments("val:l", text, registers, DEFAULT)["val"] == value


@pytest.mark.parametrize("text, message", [
    ("", "unexpected end of expression"), ("1 +", "unexpected end of expression"),
    ("0x", "invalid number"), ("12abc", "invalid char 'a' in expression"), ("(1", "'\\)' expected"),
    ("4 / 0", "division by zero"),
])
def test_expression_errors(text, message):
    with pytest.raises(MonitorError, match=message):
        parse_arguments("val:l", text, registers, DEFAULT)


@pytest.mark.parametrize("text, fmt", [
    ("/4xb 0", Format(4, "x", 1)), ("/i 0", Format(1, "i", 0)), ("/2c 0", Format(2, "c", 1)),
    ("0", Format(1, "x", 4)), ("/g 0", Format(1, "x", 8)), ("/10dh 0", Format(10, "d", 2)),
])
def test_formats(text, fmt):
    assert parse_arguments("fmt:/,addr:l", text, registers, DEFAULT)["fmt"] == fmt


def test_flags_optional_arguments_and_strings():
    args = parse_arguments("all:-a,vcpu:i?", "-a", registers, DEFAULT)
    assert args == {"all": True, "vcpu": None}
    args = parse_arguments("val:l,size:i,filename:s", '0x1000 16 "/tmp/a b"', registers, DEFAULT)
    assert args == {"val": 0x1000, "size": 16, "filename": "/tmp/a b"}
    with pytest.raises(MonitorError, match="extraneous characters"):
        parse_arguments("", "junk", registers, DEFAULT)


def test_dump_of_unreadable_memory_stops_at_the_first_bad_line():
    data = bytes(range(16))
    read = lambda addr, size: data[addr:addr + size] if addr + size <= 16 else None
    assert format_dump(read, 0, Format(6, "x", 4)) == [
        "0000000000000000: 0x03020100 0x07060504 0x0b0a0908 0x0f0e0d0c",
        "0000000000000010: Cannot access memory"]


def test_disassembly_without_capstone_says_so(monkeypatch):
    from devicemodel.monitor.disasm import disassemble
    monkeypatch.setitem(sys.modules, "capstone", None)
    with pytest.raises(MonitorError, match=r"needs the capstone library.*pip install 'pyhv\[disasm\]'"):
        disassemble(lambda a, n: b"\x90" * n, 0, 1, 32)
