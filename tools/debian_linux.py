#!/usr/bin/env python3
"""Debian's Linux kernel and a busybox initramfs, ready for pyhv's -kernel and -initrd.

    python tools/debian_linux.py [--module NAME]... [--cache DIR]

prints three lines, ``kernel PATH`` (the bzImage), ``vmlinux PATH`` (the uncompressed
ELF kernel, which carries the PVH entry note) and ``initrd PATH``.

The kernel is the package that Debian's ``linux-image-amd64`` depends on (for bookworm
``linux-image-6.1.0-N-amd64``), the shell is ``busybox-static``; both are fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` into the cache directory
($PYHV_CACHE/debian, by default ~/.cache/pyhv/debian). Everything is made once and
reused: a second run downloads and writes nothing.

The initramfs (a gzip-compressed newc cpio archive) holds busybox with a symlink per
applet, /dev/console, the kernel modules asked for (with the modules they depend on),
and an /init that mounts proc, sysfs and devtmpfs, loads the modules, prints
``PYHV-LINUX-READY`` and runs a shell on the console with job control (``setsid
cttyhack sh``); when the shell exits, the machine powers off.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from construct import Bytes, Const, ExprAdapter, Struct
from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devicemodel.loaders.bzimage import parse_bzimage  # noqa: E402

KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
READY_MARKER = "PYHV-LINUX-READY"
VIRTIO_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "virtio_console")

INIT_SCRIPT = f"""#!/bin/sh
# pyhv's initramfs init: the kernel's filesystems, modules, then a shell on the console.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do
    insmod "/lib/modules/$(uname -r)/$module"
done < /etc/modules.order
echo {READY_MARKER}
setsid cttyhack sh
poweroff -f
"""


class ToolError(Exception):
    """Something this tool needs is missing or failed; the message says what."""


def cache_dir() -> Path:
    return Path(os.environ.get("PYHV_CACHE", "~/.cache/pyhv")).expanduser() / "debian"


def _run(args, **kw) -> str:
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise ToolError(f"{' '.join(map(str, args))} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def _apt_env() -> dict:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def kernel_package_name() -> str:
    """The kernel package linux-image-amd64 depends on (apt-get update when apt knows none)."""
    for attempt in range(2):
        r = subprocess.run(["apt-cache", "depends", KERNEL_METAPACKAGE], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        for line in r.stdout.splitlines():
            kind, _, name = line.strip().partition(": ")
            if kind == "Depends" and name.startswith("linux-image-"):
                return name
        if attempt == 0:
            _run(["apt-get", "update"], env=_apt_env())
    raise ToolError(f"apt-cache finds no kernel that {KERNEL_METAPACKAGE} depends on")


def fetch(package: str, debs: Path) -> Path:
    """The package's .deb in ``debs``, downloaded with apt-get unless it is there already."""
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        try:
            _run(["apt-get", "download", package], cwd=debs, env=_apt_env())
        except ToolError:
            _run(["apt-get", "update"], env=_apt_env())
            _run(["apt-get", "download", package], cwd=debs, env=_apt_env())
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise ToolError(f"apt-get download {package} left no .deb in {debs}")
    return found[-1]


def deb_version(deb: Path) -> str:
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def extract(deb: Path, into: Path) -> Path:
    """The package's files, unpacked once into ``into``/<deb name>."""
    root = into / deb.stem
    done = root / ".extracted"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        done.touch()
    return root


# --- the uncompressed kernel -------------------------------------------------

def _decompress(payload: bytes) -> bytes:
    """The kernel's compressed payload, decompressed (Linux's vmlinux.bin.* formats)."""
    if payload.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(wbits=31).decompress(payload)
    if payload.startswith(b"BZh"):
        return bz2.BZ2Decompressor().decompress(payload)
    if payload.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        if shutil.which("zstd") is None:
            raise ToolError("the kernel is zstd-compressed: install Debian's zstd package")
        return subprocess.run(["zstd", "-d", "-c"], input=payload, capture_output=True, check=True).stdout
    raise ToolError(f"unknown kernel compression (payload starts {payload[:6].hex()})")


def vmlinux_from_bzimage(image: bytes, path: str = "bzImage") -> bytes:
    """The ELF kernel inside a bzImage: the payload at payload_offset in the protected-mode
    part, whose last 4 bytes are the decompressed size."""
    bz = parse_bzimage(path, image)
    h = bz.header
    payload = bz.kernel[h.payload_offset:h.payload_offset + h.payload_length]
    if not h.payload_length or len(payload) != h.payload_length:
        raise ToolError(f"'{path}' has no compressed payload where its header says")
    vmlinux = _decompress(payload)
    expected = int.from_bytes(payload[-4:], "little")
    if len(vmlinux) != expected or not vmlinux.startswith(b"\x7fELF"):
        raise ToolError(f"'{path}': the payload decompresses to {len(vmlinux)} bytes, not the "
                        f"{expected}-byte ELF kernel")
    return vmlinux


# --- the initramfs -----------------------------------------------------------

def _hex8():
    return ExprAdapter(Bytes(8), decoder=lambda b, ctx: int(b, 16), encoder=lambda v, ctx: b"%08X" % v)


# The "new ASCII" cpio header (070701): each number as 8 hex digits.
NewcHeader = Struct(
    "magic" / Const(b"070701"),
    "ino" / _hex8(), "mode" / _hex8(), "uid" / _hex8(), "gid" / _hex8(), "nlink" / _hex8(),
    "mtime" / _hex8(), "filesize" / _hex8(), "devmajor" / _hex8(), "devminor" / _hex8(),
    "rdevmajor" / _hex8(), "rdevminor" / _hex8(), "namesize" / _hex8(), "check" / _hex8(),
)

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


class Cpio:
    """A newc cpio archive being written; owners root, timestamps 0 (reproducible)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0)) -> None:
        if name in self.names:
            return
        self.names.add(name)
        encoded = name.encode() + b"\0"
        header = NewcHeader.build(dict(
            ino=len(self.names), mode=mode, uid=0, gid=0, nlink=2 if mode & S_IFDIR == S_IFDIR else 1,
            mtime=0, filesize=len(data), devmajor=0, devminor=0, rdevmajor=rdev[0], rdevminor=rdev[1],
            namesize=len(encoded), check=0))
        self.parts += [header, encoded, bytes(-(len(header) + len(encoded)) % 4), data, bytes(-len(data) % 4)]

    def _parents(self, name: str) -> None:
        parent = name.rpartition("/")[0]
        if parent:
            self.directory(parent)

    def directory(self, name: str) -> None:
        self._parents(name)
        self._entry(name, S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._parents(name)
        self._entry(name, S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._parents(name)
        self._entry(name, S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, S_IFCHR | perm, rdev=(major, minor))

    def archive(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Loadable module name (with '_' for '-') -> its .ko under ``modules_dir``."""
    return {ko.stem.replace("-", "_"): ko for ko in (modules_dir / "kernel").rglob("*.ko")}


def module_dependencies(ko: Path) -> list[str]:
    """The modules that ``ko`` needs loaded first (its .modinfo "depends=")."""
    with open(ko, "rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        info = section.data() if section is not None else b""
    for field in info.split(b"\0"):
        if field.startswith(b"depends="):
            return [name.replace("-", "_") for name in field[len(b"depends="):].decode().split(",") if name]
    return []


def modules_in_load_order(modules_dir: Path, names) -> list[Path]:
    """The .ko files of ``names`` and everything they depend on, dependencies first."""
    index = module_index(modules_dir)
    order: list[Path] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name not in index:
            raise ToolError(f"no loadable kernel module '{name}' in {modules_dir}")
        ko = index[name]
        if ko in order or name in visiting:
            return
        visiting.add(name)
        for dependency in module_dependencies(ko):
            visit(dependency)
        order.append(ko)

    for name in names:
        visit(name)
    return order


def add_modules(cpio: Cpio, modules_dir: Path, names) -> list[str]:
    """Put the modules ``names`` (and their dependencies) under /lib/modules/<release>/ and
    list them in /etc/modules.order, which /init loads in order; the listed paths."""
    release = modules_dir.name
    listed = []
    for ko in modules_in_load_order(modules_dir, names):
        relative = ko.relative_to(modules_dir).as_posix()
        cpio.file(f"lib/modules/{release}/{relative}", ko.read_bytes())
        listed.append(relative)
    cpio.file("etc/modules.order", "".join(f"{path}\n" for path in listed).encode())
    return listed


def build_initramfs(busybox: Path, applets: list[str], modules_dir: Path, modules=()) -> bytes:
    """The initramfs archive (not yet compressed)."""
    cpio = Cpio()
    for name in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc"):
        cpio.directory(name)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in applets:
        if applet != "bin/busybox":
            cpio.symlink(applet, "/bin/busybox")
    add_modules(cpio, modules_dir, modules)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    return cpio.archive()


def busybox_applets(busybox: Path) -> list[str]:
    """Where each applet lives (``usr/bin/awk``...), as the busybox binary itself says."""
    return _run([str(busybox), "--list-full"]).split()


# --- all of it ---------------------------------------------------------------

@dataclass(frozen=True)
class DebianLinux:
    kernel: Path
    vmlinux: Path
    initrd: Path
    kernel_package: str
    kernel_version: str
    kernel_release: str
    busybox_version: str
    busybox: Path
    modules_dir: Path


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def debian_linux(modules=(), cache: Path = None) -> DebianLinux:
    """Fetch, unpack and build what is missing; the paths and package versions."""
    cache = cache_dir() if cache is None else Path(cache)
    kernel_package = kernel_package_name()
    kernel_deb = fetch(kernel_package, cache / "debs")
    busybox_deb = fetch(BUSYBOX_PACKAGE, cache / "debs")
    kernel_root = extract(kernel_deb, cache / "root")
    busybox_root = extract(busybox_deb, cache / "root")
    (kernel,) = sorted((kernel_root / "boot").glob("vmlinuz-*"))
    release = kernel.name[len("vmlinuz-"):]
    modules_dir = kernel_root / "lib" / "modules" / release
    busybox = busybox_root / "bin" / "busybox"

    vmlinux = cache / f"vmlinux-{release}"
    if not vmlinux.exists():
        _write_atomically(vmlinux, vmlinux_from_bzimage(kernel.read_bytes(), str(kernel)))

    busybox_version = deb_version(busybox_deb)
    key = hashlib.sha256("\n".join([release, deb_version(kernel_deb), busybox_version, INIT_SCRIPT,
                                    *sorted(modules)]).encode()).hexdigest()[:16]
    initrd = cache / f"initrd-{key}.cpio.gz"
    if not initrd.exists():
        archive = build_initramfs(busybox, busybox_applets(busybox), modules_dir, modules)
        _write_atomically(initrd, gzip.compress(archive, mtime=0))
    return DebianLinux(kernel=kernel, vmlinux=vmlinux, initrd=initrd, kernel_package=kernel_package,
                       kernel_version=deb_version(kernel_deb), kernel_release=release,
                       busybox_version=busybox_version, busybox=busybox, modules_dir=modules_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", default=[], metavar="NAME",
                        help="a kernel module to put in the initramfs and load at boot (repeatable); "
                             "'virtio' stands for " + ", ".join(VIRTIO_MODULES))
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default: $PYHV_CACHE/debian "
                        "or ~/.cache/pyhv/debian)")
    args = parser.parse_args(argv)
    modules = [m for name in args.module for m in (VIRTIO_MODULES if name == "virtio" else (name,))]
    try:
        linux = debian_linux(modules, args.cache)
    except ToolError as e:
        print(f"debian_linux: {e}", file=sys.stderr)
        return 1
    print(f"kernel {linux.kernel}")
    print(f"vmlinux {linux.vmlinux}")
    print(f"initrd {linux.initrd}")
    print(f"{linux.kernel_package} {linux.kernel_version}, {BUSYBOX_PACKAGE} {linux.busybox_version}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
