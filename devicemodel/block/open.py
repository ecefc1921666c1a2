"""Opening an image by format name, or by probing its first bytes as QEMU does when no
format is given; a qcow2 image's backing files open the same way, read-only."""

from __future__ import annotations

from typing import Optional

from devicemodel.block.image import BlockError, BlockImage, HostFile
from devicemodel.block.qcow2 import Qcow2Image
from devicemodel.block.qcow2_format import QCOW2_MAGIC
from devicemodel.block.raw import RawImage

FORMATS = ("raw", "qcow2")
MAX_BACKING_DEPTH = 32       # a deeper chain is almost surely a loop (a -> b -> a)


def probe_format(path: str) -> str:
    file = HostFile(path, read_only=True)
    try:
        return "qcow2" if file.pread(0, len(QCOW2_MAGIC)) == QCOW2_MAGIC else "raw"
    finally:
        file.close()


def open_image(path: str, fmt: Optional[str] = None, read_only: bool = False, _depth: int = 0) -> BlockImage:
    if _depth > MAX_BACKING_DEPTH:
        raise BlockError(f"'{path}': backing chain deeper than {MAX_BACKING_DEPTH} images (a loop?)")
    fmt = probe_format(path) if fmt is None else fmt
    if fmt == "raw":
        return RawImage(path, read_only)
    if fmt == "qcow2":
        return Qcow2Image(path, read_only,
                          open_backing=lambda backing, backing_fmt: open_image(backing, backing_fmt, True, _depth + 1))
    raise BlockError(f"Unknown driver '{fmt}' (pyhv knows {' and '.join(FORMATS)})")
