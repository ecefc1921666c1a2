"""HMP argument parsing after QEMU's monitor_parse_arguments(): each command declares its
arguments as an ``args_type`` string of ``name:type`` items, comma-separated:

    s   a word (a "quoted string" may hold spaces)     S   the rest of the line
    i   an integer expression (32 bits)               l   an expression (64 bits: addresses)
    /   a format ``/[count][x|d|u|o|c|i][b|h|w|g]``    -x  the flag ``-x`` (a bool)
    F   a file name (a word)                          M   a size in bytes, in MiB without a
                                                            suffix (K, M, G, T: QEMU's strtosz)

A ``?`` after the type makes the argument optional. Expressions are QEMU's: numbers
(``0x`` hexadecimal, ``0`` octal, else decimal), ``$reg`` registers of the current vCPU
(``$pc``, ``$eax``, ``$rsp``, ``$cr3``, ...), ``+ - * / % & | ^ ~`` and parentheses.
Errors are QEMU's messages (``unexpected end of expression``, ``invalid char in
format: 'z'``), raised as MonitorError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

FORMATS = "xduoci"
SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
MASK64 = (1 << 64) - 1


class MonitorError(Exception):
    """An error reply of the monitor; ``usage`` adds QEMU's 'Try "help CMD"' line and
    ``named`` puts the command's name in front ("log: string expected")."""

    def __init__(self, message: str, usage: bool = False, named: bool = False):
        super().__init__(message)
        self.usage = usage
        self.named = named


@dataclass
class Format:
    count: int
    format: str
    size: int


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str
    optional: bool


def parse_args_type(args_type: str) -> list[ArgSpec]:
    specs = []
    for item in filter(None, args_type.split(",")):
        name, _, kind = item.partition(":")
        optional = kind.endswith("?")
        specs.append(ArgSpec(name, kind.rstrip("?"), optional))
    return specs


class _Cursor:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        self.skip_spaces()
        return self.pos >= len(self.text)

    def word(self) -> Optional[str]:
        """A word or a "quoted string"; None at the end of the line."""
        self.skip_spaces()
        if self.pos >= len(self.text):
            return None
        if self.peek() == '"':
            end = self.text.find('"', self.pos + 1)
            if end < 0:
                raise MonitorError("unterminated string")
            value = self.text[self.pos + 1:end]
            self.pos = end + 1
            return value
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace():
            self.pos += 1
        return self.text[start:self.pos]


class _Expression:
    """QEMU's expr_sum/expr_logic/expr_prod/expr_unary over a cursor."""

    def __init__(self, cursor: _Cursor, register: Callable[[str], int]):
        self.c = cursor
        self.register = register

    def _next(self) -> str:
        self.c.skip_spaces()
        return self.c.peek()

    def sum(self) -> int:
        value = self.logic()
        while self._next() in ("+", "-"):
            op = self.c.peek()
            self.c.pos += 1
            rhs = self.logic()
            value = value + rhs if op == "+" else value - rhs
        return value & MASK64

    def logic(self) -> int:
        value = self.prod()
        while self._next() in ("&", "|", "^"):
            op = self.c.peek()
            self.c.pos += 1
            rhs = self.prod()
            value = value & rhs if op == "&" else value | rhs if op == "|" else value ^ rhs
        return value

    def prod(self) -> int:
        value = self.unary()
        while self._next() in ("*", "/", "%"):
            op = self.c.peek()
            self.c.pos += 1
            rhs = self.unary()
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise MonitorError("division by zero")
            else:
                value = value // rhs if op == "/" else value % rhs
        return value

    def unary(self) -> int:
        ch = self._next()
        if not ch:
            raise MonitorError("unexpected end of expression", usage=True)
        if ch in "+-~":
            self.c.pos += 1
            value = self.unary()
            return value if ch == "+" else (-value) & MASK64 if ch == "-" else ~value & MASK64
        if ch == "(":
            self.c.pos += 1
            value = self.sum()
            if self._next() != ")":
                raise MonitorError("')' expected", usage=True)
            self.c.pos += 1
            return value
        if ch == "'":
            text = self.c.text
            if self.c.pos + 2 < len(text) and text[self.c.pos + 2] == "'":
                self.c.pos += 3
                return ord(text[self.c.pos - 2])
            raise MonitorError("invalid char constant", usage=True)
        if ch == "$":
            start = self.c.pos = self.c.pos + 1
            while self.c.peek().isalnum() or self.c.peek() == "_":
                self.c.pos += 1
            name = self.c.text[start:self.c.pos]
            return self.register(name)
        if ch.isdigit():
            return self._number()
        raise MonitorError(f"invalid char '{ch}' in expression", usage=True)

    def _number(self) -> int:
        text, start = self.c.text, self.c.pos
        if text[start:start + 2].lower() == "0x":
            end = start + 2
            while end < len(text) and text[end] in "0123456789abcdefABCDEF":
                end += 1
            digits, base = text[start + 2:end], 16
        else:
            end = start
            while end < len(text) and text[end].isdigit():
                end += 1
            digits = text[start:end]
            base = 8 if len(digits) > 1 and digits[0] == "0" else 10
        if not digits:
            raise MonitorError("invalid number", usage=True)
        try:
            value = int(digits, base)
        except ValueError:
            raise MonitorError("invalid number", usage=True) from None
        self.c.pos = end
        if end < len(text) and (text[end].isalpha() or text[end] == "_"):
            raise MonitorError(f"invalid char '{text[end]}' in expression", usage=True)
        return value


def parse_format(cursor: _Cursor, default: Format) -> Format:
    """``/[count][format][size]``; what is not given comes from ``default`` (QEMU keeps
    the last format and size between commands)."""
    cursor.skip_spaces()
    if cursor.peek() != "/":
        return Format(1, default.format, default.size)
    cursor.pos += 1
    start = cursor.pos
    while cursor.peek().isdigit():
        cursor.pos += 1
    count = int(cursor.text[start:cursor.pos]) if cursor.pos > start else 1
    fmt, size = None, None
    while True:
        ch = cursor.peek()
        if ch in FORMATS and ch:
            fmt = ch
        elif ch in SIZES and ch:
            size = SIZES[ch]
        else:
            break
        cursor.pos += 1
    ch = cursor.peek()
    if ch and not ch.isspace():
        raise MonitorError(f"invalid char in format: '{ch}'", usage=True)
    fmt = fmt or default.format
    if fmt == "c":
        size = 1
    elif size is None:
        size = default.size if fmt != "i" else 0
    return Format(count, fmt, size)


SIZE_SHIFTS = {"": 20, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def parse_size_mib(word: str) -> int:
    """QEMU's qemu_strtosz_MiB: a number (decimals allowed) with an optional unit suffix."""
    number = word.rstrip("bBkKmMgGtT")
    suffix = word[len(number):].lower()
    try:
        value = float(number) if suffix in SIZE_SHIFTS else -1
    except ValueError:
        value = -1
    if value < 0 or not number or value * (1 << SIZE_SHIFTS.get(suffix, 0)) >= 1 << 63:
        raise MonitorError("invalid size", usage=True)
    return int(value * (1 << SIZE_SHIFTS[suffix]))


def parse_arguments(args_type: str, text: str, register: Callable[[str], int],
                    default_format: Format) -> dict:
    """The arguments of one command line (after its name), by name."""
    cursor = _Cursor(text)
    values: dict = {}
    for spec in parse_args_type(args_type):
        kind = spec.type
        if kind == "/":
            values[spec.name] = parse_format(cursor, default_format)
        elif kind.startswith("-"):
            cursor.skip_spaces()
            flag = kind[1:]
            if cursor.text.startswith(f"-{flag}", cursor.pos) and \
                    (cursor.pos + len(flag) + 1 == len(text) or text[cursor.pos + len(flag) + 1].isspace()):
                cursor.pos += len(flag) + 1
                values[spec.name] = True
            else:
                values[spec.name] = False
        elif kind in ("i", "l"):
            if cursor.at_end():
                if spec.optional:
                    values[spec.name] = None
                    continue
                raise MonitorError("unexpected end of expression", usage=True)
            value = _Expression(cursor, register).sum()
            if kind == "i" and value >= 1 << 32 and value < MASK64 - 0xFFFFFFFF:
                raise MonitorError("integer is for 32-bit values", usage=True)
            values[spec.name] = value & (0xFFFFFFFF if kind == "i" else MASK64)
        elif kind in ("s", "F"):
            word = cursor.word()
            if word is None:
                if spec.optional:
                    values[spec.name] = None
                    continue
                raise MonitorError(f"{'filename' if kind == 'F' else 'string'} expected", usage=True,
                                   named=True)
            values[spec.name] = word
        elif kind == "M":
            word = cursor.word()
            if word is None:
                raise MonitorError("invalid size", usage=True)
            values[spec.name] = parse_size_mib(word)
        elif kind == "S":
            cursor.skip_spaces()
            rest = cursor.text[cursor.pos:].strip()
            if not rest and not spec.optional:
                raise MonitorError("string expected", usage=True, named=True)
            values[spec.name] = rest or None
            cursor.pos = len(cursor.text)
        else:
            raise ValueError(f"bad args_type {kind!r}")
    if not cursor.at_end():
        raise MonitorError("extraneous characters at the end of line", usage=True, named=True)
    return values
