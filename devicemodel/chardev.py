"""Character-device backends (QEMU's ``-chardev``/``-serial`` back ends).

A backend takes the bytes a device front end (the UART) transmits: ``write(data)``.
Specs, as for QEMU's ``-serial``: ``stdio``, ``null``, ``file:PATH``. ``-chardev``
names one: ``-chardev stdio,id=ID``, ``-chardev null,id=ID``, ``-chardev file,id=ID,path=PATH``.
"""

from __future__ import annotations

import os
import sys
import termios
import threading
import tty
from dataclasses import dataclass

from devicemodel.errors import ConfigError
from devicemodel.qemu_opts import parse_opts


CTRL_A = 0x01
ESCAPE_HELP = (b"\r\nC-a h    print this help\r\nC-a x    exit emulator\r\n"
               b"C-a C-a  sends C-a\r\n")


class StdioChardev:
    """Standard output (flushed after every write so output is never held back) and, once
    ``start_input`` is called, standard input.  A terminal is put in raw mode, as QEMU's
    -nographic does, so keys reach the guest; QEMU's Ctrl-A escapes work (C-a x quits)."""

    spec = "stdio"

    def __init__(self) -> None:
        self._broken = False
        self._saved_tty = None

    def start_input(self, deliver, quit=None) -> None:
        """Read stdin in a thread, passing bytes to ``deliver``; ``quit()`` on C-a x."""
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return
        if os.isatty(fd):
            self._saved_tty = (fd, termios.tcgetattr(fd))
            tty.setraw(fd)
        threading.Thread(target=self._read_loop, args=(fd, deliver, quit), name="stdin",
                         daemon=True).start()

    def _read_loop(self, fd: int, deliver, quit) -> None:
        escaped = False
        while True:
            try:
                data = os.read(fd, 1024)
            except OSError:
                return
            if not data:
                return
            if self._saved_tty is None:   # not a terminal: no escapes
                deliver(data)
                continue
            out = bytearray()
            for byte in data:
                if escaped:
                    escaped = False
                    if byte == ord("x"):
                        self.write(b"\r\npyhv: terminated by C-a x\r\n")
                        if quit is not None:
                            quit()
                        return
                    if byte == ord("h"):
                        self.write(ESCAPE_HELP)
                    elif byte == CTRL_A:
                        out.append(CTRL_A)
                elif byte == CTRL_A:
                    escaped = True
                else:
                    out.append(byte)
            if out:
                deliver(bytes(out))

    def write(self, data: bytes) -> None:
        if self._broken:
            return
        out = sys.stdout  # looked up on each write: whoever redirected stdout gets the bytes
        try:
            out.flush()
            out.buffer.write(data)
            out.buffer.flush()
        except BrokenPipeError:
            self._broken = True  # the reader went away: drop output, as QEMU does

    def close(self) -> None:
        if self._saved_tty is not None:
            fd, attrs = self._saved_tty
            termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
            self._saved_tty = None


class NullChardev:
    """Discards everything."""

    spec = "null"

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class FileChardev:
    """A file, created or truncated when the backend opens (as QEMU's ``file:`` backend)."""

    def __init__(self, path: str):
        self.spec = f"file:{path}"
        try:
            self._file = open(path, "wb", buffering=0)
        except OSError as e:
            raise ConfigError(f"could not open '{path}': {e.strerror}") from None

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def close(self) -> None:
        self._file.close()


def check_chardev_spec(spec: str) -> None:
    """ConfigError unless ``spec`` names a backend (checked without opening anything)."""
    name, colon, path = spec.partition(":")
    if spec in ("stdio", "null") or (name == "file" and path):
        return
    if name == "file":
        raise ConfigError("chardev 'file' needs a path: file:PATH")
    raise ConfigError(f"'{name}' is not a valid char driver name (use stdio, null or file:PATH)")


def open_chardev(spec: str):
    """The backend for a ``-serial`` spec; ConfigError if there is none or it cannot open."""
    check_chardev_spec(spec)
    if spec == "stdio":
        return StdioChardev()
    if spec == "null":
        return NullChardev()
    return FileChardev(spec[len("file:"):])


@dataclass(frozen=True)
class ChardevSpec:
    """A ``-chardev``: its id and the backend, spelled as a ``-serial`` spec."""

    id: str
    spec: str


def parse_chardev(arg: str) -> ChardevSpec:
    given = dict(parse_opts(arg, implied_key="backend"))
    backend = given.pop("backend", None)
    if not backend:
        raise ConfigError("Parameter 'backend' is missing")
    chardev_id = given.pop("id", None)
    if not chardev_id:
        raise ConfigError("Parameter 'id' is missing")
    path = given.pop("path", None) if backend == "file" else None
    for key in given:
        raise ConfigError(f"Invalid parameter '{key}'")
    if backend == "file":
        if not path:
            raise ConfigError("chardev 'file' needs a path: file,id=ID,path=PATH")
        return ChardevSpec(chardev_id, f"file:{path}")
    if backend not in ("stdio", "null"):
        raise ConfigError(f"'{backend}' is not a valid char driver name (use stdio, null or file)")
    return ChardevSpec(chardev_id, backend)
