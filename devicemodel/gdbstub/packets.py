"""GDB remote serial protocol framing (gdb's "Overview" and "Binary Data" sections):
``$payload#cs`` with cs the modulo-256 sum of the payload in two hex digits, ``+``/``-``
acknowledgments until QStartNoAckMode, a lone 0x03 byte to interrupt the target, and
``}``-escaping of binary data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

INTERRUPT = 0x03
ESCAPE = 0x7D
MAX_PACKET = 0x4000      # the PacketSize qSupported announces


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def escape_binary(data: bytes) -> bytes:
    """Escape ``$``, ``#``, ``}`` and ``*`` in binary data (qXfer replies, X packets)."""
    out = bytearray()
    for b in data:
        if b in (0x23, 0x24, ESCAPE, 0x2A):
            out += bytes((ESCAPE, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for b in data:
        if escaped:
            out.append(b ^ 0x20)
            escaped = False
        elif b == ESCAPE:
            escaped = True
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """``$payload#cs``; the payload must already be escaped where it is binary."""
    return b"$" + payload + b"#%02x" % checksum(payload)


@dataclass
class Packet:
    payload: bytes


@dataclass
class BadPacket:
    """A packet whose checksum does not match: the stub asks for it again (``-``)."""
    payload: bytes


@dataclass
class Interrupt:
    """Ctrl-C: gdb asks the running target to stop."""


Event = Union[Packet, BadPacket, Interrupt]


class PacketReader:
    """Turns the bytes gdb sends into packets, interrupts and acknowledgments.  Bytes
    between packets that are neither (acks, line noise) are skipped; a packet longer than
    MAX_PACKET is dropped, as if its checksum were wrong."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_packet = False

    def feed(self, data: bytes) -> Iterator[Event]:
        for b in data:
            if not self._in_packet:
                if b == 0x24:                # '$'
                    self._in_packet = True
                    self._buf.clear()
                elif b == INTERRUPT:
                    yield Interrupt()
                continue                     # '+', '-' and noise outside packets
            self._buf.append(b)
            end = self._buf.find(b"#")
            if end >= 0 and len(self._buf) == end + 3:
                payload, digits = bytes(self._buf[:end]), bytes(self._buf[end + 1:])
                self._in_packet = False
                try:
                    good = int(digits, 16) == checksum(payload)
                except ValueError:
                    good = False
                yield Packet(payload) if good else BadPacket(payload)
            elif len(self._buf) > MAX_PACKET + 3:
                self._in_packet = False
                yield BadPacket(bytes(self._buf[:32]))
