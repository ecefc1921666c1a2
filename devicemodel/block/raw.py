"""Raw images: the virtual disk is the host file, byte for byte."""

from __future__ import annotations

from devicemodel.block.image import BlockError, BlockImage, HostFile
from devicemodel.block.qcow2_format import QCOW2_MAGIC


class RawImage(BlockImage):
    """``probed``: the format was guessed, so (as QEMU) the guest may not write a header
    that would make the next guess qcow2."""

    format = "raw"
    probed = False

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
        if self.probed and offset < len(QCOW2_MAGIC):
            head = bytearray(self.file.pread(0, len(QCOW2_MAGIC)))
            part = bytes(data[:len(QCOW2_MAGIC) - offset])
            head[offset:offset + len(part)] = part
            if head == QCOW2_MAGIC:
                raise BlockError(f"'{self.filename}': writing a qcow2 header to block 0 of an image "
                                 f"whose raw format was only probed")
        self.file.pwrite(offset, data)

    def flush(self) -> None:
        self.file.sync()

    def discard(self, offset: int, length: int) -> None:
        """The host file gives the space back (a hole, as QEMU's discard=unmap punches)."""
        self.check_writable()
        self.check_range(offset, length)
        self.file.punch_hole(offset, length)

    def write_zeroes(self, offset: int, length: int, unmap: bool = False) -> None:
        """With ``unmap``, a hole where the file system can make one; zeros written otherwise."""
        self.check_writable()
        self.check_range(offset, length)
        if not (unmap and self.file.punch_hole(offset, length)):
            super().write_zeroes(offset, length, unmap)

    def close(self) -> None:
        self.file.close()
