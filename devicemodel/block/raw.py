"""Raw images: the virtual disk is the host file, byte for byte."""

from __future__ import annotations

from devicemodel.block.image import BlockImage, HostFile


class RawImage(BlockImage):
    format = "raw"

    def __init__(self, path: str, read_only: bool = False):
        self.filename = path
        self.read_only = read_only
        self.file = HostFile(path, read_only)
        self.size = self.file.size()

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        return self.file.pread(offset, length)

    def write(self, offset: int, data) -> None:
        self.check_writable()
        self.check_range(offset, len(data))
        self.file.pwrite(offset, data)

    def flush(self) -> None:
        self.file.sync()

    def discard(self, offset: int, length: int) -> None:
        # Nothing to give back: the guest's data stays (QEMU punches a hole with discard=unmap).
        self.check_writable()
        self.check_range(offset, length)

    def close(self) -> None:
        self.file.close()
