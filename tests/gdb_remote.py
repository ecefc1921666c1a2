"""Helpers for the gdbstub tests: a Machine with a gdbstub on a free port running in a
thread, a minimal GDB remote protocol client written from gdb's documentation (not
from the stub's code), and ELF symbol lookup.  A helper module, not tests."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from elftools.elf.elffile import ELFFile

from devicemodel.machine import Machine, MachineConfig
from devicemodel.qdev import parse_device


class GdbMachine:
    """A VM started paused (-S) with ``-gdb tcp:127.0.0.1:0``; serial output to a file."""

    def __init__(self, kernel: Path, tmp_path: Path, cpus: int = 1, cmdline: str = ""):
        self.serial = tmp_path / "serial.txt"
        config = MachineConfig(kernel=str(kernel), cmdline=cmdline, cpus=cpus, start_paused=True,
                               serials=[f"file:{self.serial}"], gdb="tcp:127.0.0.1:0",
                               devices=[parse_device("isa-debug-exit,iobase=0xf4,iosize=4")])
        self.machine = Machine(config)
        self.port = self.machine.gdbstub.port
        self.machine.power_on()
        self.thread = threading.Thread(target=self.machine.run, daemon=True)
        self.thread.start()

    def output(self) -> str:
        return self.serial.read_text() if self.serial.exists() else ""

    def wait(self, timeout: float = 30) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the VM did not stop"
        return self.machine.runstate.exit_status

    def close(self):
        if self.thread.is_alive():
            self.machine.request_exit(0)
            self.thread.join(10)
        self.machine.close()


class RspClient:
    """gdb's side of the protocol, with acknowledgments."""

    def __init__(self, port: int, timeout: float = 20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.acks = True

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the stub closed the connection")
        self.buf += data

    def send_packet(self, payload: bytes, checksum: int = None):
        cs = sum(payload) & 0xFF if checksum is None else checksum
        self.sock.sendall(b"$" + payload + b"#%02x" % cs)

    def read_ack(self) -> bytes:
        while not self.buf:
            self._fill()
        ack, self.buf = self.buf[:1], self.buf[1:]
        return ack

    def read_packet(self) -> bytes:
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                payload = self.buf[start + 1:end]
                assert int(self.buf[end + 1:end + 3], 16) == sum(payload) & 0xFF, self.buf
                self.buf = self.buf[end + 3:]
                if self.acks:
                    self.sock.sendall(b"+")
                return payload
            self._fill()

    def command(self, payload) -> bytes:
        """Send a packet and return the reply."""
        if isinstance(payload, str):
            payload = payload.encode()
        self.send_packet(payload)
        if self.acks:
            assert self.read_ack() == b"+"
        return self.read_packet()

    def resume(self, payload) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        self.send_packet(payload)
        if self.acks:
            assert self.read_ack() == b"+"


def symbols(path: Path) -> dict[str, int]:
    with open(path, "rb") as f:
        table = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: s["st_value"] for s in table.iter_symbols() if s.name}
