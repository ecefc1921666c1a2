"""QEMU's ``-drive``: a disk image, the interface it is attached by, and how the host
caches it.

    -drive file=PATH[,if=ide|virtio|none][,format=raw|qcow2][,id=ID][,index=N][,media=disk]
           [,readonly=on|off][,cache=writeback|none|writethrough|directsync|unsafe]
           [,snapshot=on|off]

``if=ide`` (the default, as on QEMU's pc) also creates the IDE disk for the drive,
``if=virtio`` the virtio-blk device; ``if=none`` leaves that to ``-device ...,drive=ID``.
Without ``format=`` the format is probed (with QEMU's warning when that guesses raw,
whose block 0 then cannot be written to look like another format). A drive without
``id=`` is named as QEMU names it: ``virtio0``, ``none1``, ... after its interface and
index, ``ide0-hd1`` after its IDE bus and unit. ``-snapshot`` (or ``snapshot=on``) sends
the guest's writes to a temporary qcow2 overlay, deleted when pyhv exits, over the image
opened read-only.

Cache modes, as QEMU's: ``writeback`` (the default) and ``none`` report a volatile
write cache that the guest flushes with fsync; ``writethrough`` and ``directsync`` make
every write durable before it completes; ``unsafe`` ignores flushes. (pyhv does not
bypass the host page cache: ``none`` and ``directsync`` do not use O_DIRECT.)
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Optional

from devicemodel.block.image import BlockError, BlockImage
from devicemodel.block.open import FORMATS, open_image, probe_format
from devicemodel.block.qcow2_create import create_qcow2
from devicemodel.errors import ConfigError, warn_report
from devicemodel.qemu_opts import parse_bool, parse_opts, parse_uint

INTERFACES = ("ide", "virtio", "none")
QEMU_ONLY_INTERFACES = ("scsi", "floppy", "pflash", "mtd", "sd", "xen")
IDE_UNITS_PER_BUS = 2
PARAMETERS = ("file", "if", "format", "id", "index", "media", "readonly", "cache", "snapshot")


@dataclass(frozen=True)
class CacheMode:
    writeback: bool      # the guest sees a volatile write cache (and flushes it)
    no_flush: bool       # flushes do nothing (cache=unsafe)


CACHE_MODES = {
    "writeback": CacheMode(writeback=True, no_flush=False),
    "none": CacheMode(writeback=True, no_flush=False),
    "writethrough": CacheMode(writeback=False, no_flush=False),
    "directsync": CacheMode(writeback=False, no_flush=False),
    "unsafe": CacheMode(writeback=True, no_flush=True),
}


@dataclass(frozen=True)
class DriveSpec:
    file: str
    interface: str
    format: Optional[str]
    id: str
    index: int
    read_only: bool
    cache: str
    snapshot: Optional[bool]     # None: as -snapshot says
    arg: str


def _identifier(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", text):
        raise ConfigError("Parameter 'id' expects an identifier")
    return text


def _bus_unit(interface: str, index: int) -> tuple[int, int]:
    """QEMU's bus and unit of a drive index: two units per IDE bus, one bus otherwise."""
    return divmod(index, IDE_UNITS_PER_BUS) if interface == "ide" else (0, index)


def parse_drive(arg: str, existing: list[DriveSpec]) -> DriveSpec:
    """A ``-drive`` argument, checked against the drives before it (ids, indexes)."""
    given = {}
    for key, value in parse_opts(arg):
        if key not in PARAMETERS:
            raise ConfigError(f"Invalid parameter '{key}'")
        given[key] = value
    interface = given.get("if", "ide")
    if interface in QEMU_ONLY_INTERFACES:
        raise ConfigError(f"interface '{interface}' is not supported by pyhv yet (use if=virtio or if=none)")
    if interface not in INTERFACES:
        raise ConfigError(f"unsupported bus type '{interface}'")
    fmt = given.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"Unknown driver '{fmt}'")
    if given.get("media", "disk") == "cdrom":
        raise ConfigError("media=cdrom is not supported: pyhv has no ATAPI CD-ROM drives (disks only)")
    if given.get("media", "disk") != "disk":
        raise ConfigError(f"'{given['media']}' invalid media (pyhv has disks only)")
    cache = given.get("cache", "writeback")
    if cache not in CACHE_MODES:
        raise ConfigError("invalid cache option")
    if not given.get("file"):
        raise ConfigError("a drive needs file=PATH (pyhv has no empty drives)")
    same_bus = [d for d in existing if d.interface == interface]
    if "index" in given:
        try:
            index = parse_uint(given["index"])
        except ValueError:
            raise ConfigError("Parameter 'index' expects a number") from None
        if any(d.index == index for d in same_bus):
            bus, unit = _bus_unit(interface, index)
            raise ConfigError(f"drive with bus={bus}, unit={unit} (index={index}) exists")
    else:
        index = next(i for i in range(len(same_bus) + 1) if all(d.index != i for d in same_bus))
    if "id" in given:
        drive_id = _identifier(given["id"])
    elif interface == "ide":
        drive_id = "ide%d-hd%d" % _bus_unit(interface, index)
    else:
        drive_id = f"{interface}{index}"
    if any(d.id == drive_id for d in existing):
        raise ConfigError(f"Duplicate ID '{drive_id}' for drive")
    return DriveSpec(file=given["file"], interface=interface, format=fmt, id=drive_id, index=index,
                     read_only=parse_bool("readonly", given.get("readonly", "off")), cache=cache,
                     snapshot=parse_bool("snapshot", given["snapshot"]) if "snapshot" in given else None,
                     arg=arg)


class Drive:
    """An opened drive: its image and cache mode, as the block device sees them."""

    def __init__(self, spec: DriveSpec, image: BlockImage):
        self.spec = spec
        self.id = spec.id
        self.image = image
        self.cache = CACHE_MODES[spec.cache]
        self.user: Optional[str] = None      # the device the drive is attached to

    @property
    def size(self) -> int:
        return self.image.size

    @property
    def read_only(self) -> bool:
        return self.image.read_only

    def read(self, offset: int, length: int) -> bytes:
        return self.image.read(offset, length)

    def write(self, offset: int, data) -> None:
        self.image.write(offset, data)
        if not self.cache.writeback:
            self.image.flush()

    def flush(self) -> None:
        if not self.cache.no_flush:
            self.image.flush()

    def discard(self, offset: int, length: int) -> None:
        self.image.discard(offset, length)

    def write_zeroes(self, offset: int, length: int, unmap: bool) -> None:
        self.image.write_zeroes(offset, length, unmap)
        if not self.cache.writeback:
            self.image.flush()

    def close(self) -> None:
        self.image.close()


def open_drive(spec: DriveSpec, snapshot: bool = False) -> Drive:
    """Open the drive's image (over a temporary overlay with ``snapshot``); ConfigError
    naming the ``-drive`` argument if it cannot be opened."""
    try:
        fmt = spec.format
        if fmt is None:
            fmt = probe_format(spec.file)
            if fmt == "raw":
                warn_report(f"Image format was not specified for '{spec.file}' and probing guessed raw; "
                            f"write operations on block 0 will be restricted. Specify the 'raw' format "
                            f"explicitly to remove the restrictions.")
        if spec.snapshot if spec.snapshot is not None else snapshot:
            image = _open_overlay(spec.file, fmt, spec.read_only)
        else:
            image = open_image(spec.file, fmt, spec.read_only)
        if spec.format is None and fmt == "raw":
            image.probed = True
        return Drive(spec, image)
    except BlockError as e:
        raise ConfigError(f"-drive {spec.arg}: {e}") from None


def _open_overlay(path: str, fmt: str, read_only: bool) -> BlockImage:
    """A qcow2 overlay in $TMPDIR (or /var/tmp, as QEMU), over ``path`` opened read-only;
    the overlay's name is gone from the directory as soon as it is open."""
    base = open_image(path, fmt, read_only=True)
    size = base.size
    base.close()
    fd, overlay = tempfile.mkstemp(prefix="vl.", dir=os.environ.get("TMPDIR", "/var/tmp"))
    os.close(fd)
    try:
        create_qcow2(overlay, size, backing_file=os.path.abspath(path), backing_format=fmt)
        return open_image(overlay, "qcow2", read_only)
    finally:
        os.unlink(overlay)
