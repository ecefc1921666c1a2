"""Character-device backends (QEMU's ``-chardev``/``-serial`` back ends).

A backend takes the bytes a device front end (the UART) transmits: ``write(data)``.
Specs, as for QEMU's ``-serial``: ``stdio``, ``null``, ``file:PATH``.
"""

from __future__ import annotations

import sys

from devicemodel.errors import ConfigError


class StdioChardev:
    """The process's standard output; flushed after every write so output is never held back."""

    spec = "stdio"

    def __init__(self) -> None:
        self._broken = False

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
        pass


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
