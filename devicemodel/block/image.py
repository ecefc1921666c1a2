"""What every disk image format offers a device: a byte-addressed virtual disk of
``size`` bytes that can be read, written, flushed to stable storage, discarded and
zeroed; and the host file underneath, read and written at offsets."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from devicemodel.errors import PyhvError


class BlockError(PyhvError):
    """An image cannot be opened, or an I/O request on it failed."""


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


class HostFile:
    """A host file accessed with pread/pwrite; OSErrors become BlockErrors naming the file."""

    def __init__(self, path: str, read_only: bool):
        self.path = path
        self.read_only = read_only
        try:
            self.fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            raise BlockError(f"Could not open '{path}': {e.strerror}") from None

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def pread(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; bytes past the end of the file read as zeros."""
        parts, done = [], 0
        try:
            while done < length:
                chunk = os.pread(self.fd, length - done, offset + done)
                if not chunk:
                    break
                parts.append(chunk)
                done += len(chunk)
        except OSError as e:
            raise BlockError(f"read of '{self.path}' at {offset:#x} failed: {e.strerror}") from None
        data = b"".join(parts)
        return data + bytes(length - done) if done < length else data

    def pwrite(self, offset: int, data) -> None:
        view, done = memoryview(data), 0
        try:
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)
        except OSError as e:
            raise BlockError(f"write to '{self.path}' at {offset:#x} failed: {e.strerror}") from None

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise BlockError(f"flush of '{self.path}' failed: {e.strerror}") from None

    def punch_hole(self, offset: int, length: int) -> bool:
        """Deallocate the range (fallocate PUNCH_HOLE, the size kept): it reads as zeros
        afterwards. False if the file system cannot."""
        if length <= 0:
            return True
        if _libc.fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
            return True
        code = ctypes.get_errno()
        if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise BlockError(f"discard on '{self.path}' at {offset:#x} failed: {os.strerror(code)}")

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as e:
            raise BlockError(f"resize of '{self.path}' failed: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BlockImage:
    """A virtual disk. Offsets and lengths are bytes; requests must lie within ``size``
    (the device checks); ``write``/``discard``/``write_zeroes`` on a read-only image raise."""

    format = "?"
    size: int
    read_only: bool
    filename: str

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def write(self, offset: int, data) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make every completed write durable (fsync)."""
        raise NotImplementedError

    def discard(self, offset: int, length: int) -> None:
        """The guest no longer needs the range; what it reads afterwards is unspecified."""

    def write_zeroes(self, offset: int, length: int, unmap: bool = False) -> None:
        """The range reads as zeros afterwards; with ``unmap`` the image may free its space."""
        step = 1 << 20
        for pos in range(offset, offset + length, step):
            self.write(pos, bytes(min(step, offset + length - pos)))

    def close(self) -> None:
        raise NotImplementedError

    def check_writable(self) -> None:
        if self.read_only:
            raise BlockError(f"'{self.filename}' is read-only")

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BlockError(f"request {offset:#x}+{length:#x} is outside '{self.filename}' "
                             f"({self.size} bytes)")
