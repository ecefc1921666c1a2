"""QEMU's -pidfile: the process ID in a file that stays locked while pyhv runs (a second
pyhv with the same file is refused) and is removed when pyhv exits."""

from __future__ import annotations

import fcntl
import os

from devicemodel.errors import ConfigError


class PidFile:
    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def __enter__(self) -> "PidFile":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot create PID file: Could not create '{self.path}': {e.strerror}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise ConfigError(f"cannot create PID file: Cannot lock pid file '{self.path}': {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> bool:
        try:
            os.unlink(self.path)
        except OSError:
            pass                  # someone removed it already
        os.close(self.fd)
        return False
