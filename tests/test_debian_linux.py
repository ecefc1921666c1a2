"""tools/debian_linux.py: Debian's kernel, the vmlinux inside it, and the initramfs."""

import gzip
import os
import shutil
import struct
import subprocess
import sys

import pytest
from elftools.elf.elffile import ELFFile

import debian
from debian import tool

pytestmark = pytest.mark.slow

XEN_ELFNOTE_PHYS32_ENTRY = 18


@pytest.fixture(scope="module")
def linux():
    return debian.debian_linux(("virtio_blk",))


def read_newc(archive):
    """{name: (mode, data, (rdevmajor, rdevminor))} of a newc cpio archive: an independent reader."""
    entries, pos = {}, 0
    while True:
        header = archive[pos:pos + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name = archive[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = archive[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            assert not archive[pos:].strip(b"\0")
            return entries
        entries[name] = (mode, data, rdev)


def test_the_files_exist_and_the_kernel_is_a_bzimage(linux):
    for path in (linux.kernel, linux.vmlinux, linux.initrd):
        assert path.is_file() and path.stat().st_size > 0
    assert linux.kernel_package.startswith("linux-image-6.1.0-") and linux.kernel_package.endswith("-amd64")
    image = linux.kernel.read_bytes()
    assert image[0x1FE:0x200] == b"\x55\xaa" and image[0x202:0x206] == b"HdrS"


def test_vmlinux_is_an_elf64_with_the_pvh_note(linux):
    with open(linux.vmlinux, "rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf["e_machine"] == "EM_X86_64" and elf["e_type"] == "ET_EXEC"
        notes = b"".join(seg.data() for seg in elf.iter_segments() if seg["p_type"] == "PT_NOTE")
    entries, pos = [], 0
    while pos < len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, pos)
        name = notes[pos + 12:pos + 12 + namesz].rstrip(b"\0")
        desc_at = pos + 12 + (namesz + 3 & ~3)
        if name == b"Xen" and kind == XEN_ELFNOTE_PHYS32_ENTRY:
            entries.append(int.from_bytes(notes[desc_at:desc_at + descsz], "little"))
        pos = desc_at + (descsz + 3 & ~3)
    (entry,) = entries
    assert 0x100000 <= entry < 1 << 32


def test_initramfs_parses_back(linux):
    entries = read_newc(gzip.decompress(linux.initrd.read_bytes()))
    mode, init, _ = entries["init"]
    assert mode & 0o170000 == 0o100000 and mode & 0o111
    assert init.startswith(b"#!/bin/sh\n") and b"PYHV-LINUX-READY" in init
    assert b"mount -t devtmpfs" in init and b"setsid cttyhack sh" in init
    mode, busybox, _ = entries["bin/busybox"]
    assert busybox.startswith(b"\x7fELF") and mode & 0o111
    mode, target, _ = entries["bin/sh"]
    assert mode & 0o170000 == 0o120000 and target == b"/bin/busybox"
    for applet in ("bin/mount", "usr/bin/setsid", "bin/cttyhack", "sbin/insmod", "sbin/poweroff"):
        assert entries[applet][1] == b"/bin/busybox", applet
    mode, _, rdev = entries["dev/console"]
    assert mode & 0o170000 == 0o020000 and rdev == (5, 1)


def test_modules_and_their_dependencies_in_load_order(linux):
    entries = read_newc(gzip.decompress(linux.initrd.read_bytes()))
    order = entries["etc/modules.order"][1].decode().split()
    names = [path.rsplit("/", 1)[1] for path in order]
    assert names[-1] == "virtio_blk.ko"
    assert names.index("virtio.ko") < names.index("virtio_blk.ko")
    assert names.index("virtio_ring.ko") < names.index("virtio_blk.ko")
    release = linux.kernel_release
    for path in order:
        assert entries[f"lib/modules/{release}/{path}"][1].startswith(b"\x7fELF")


def test_busybox_cpio_lists_the_archive(linux, tmp_path):
    """busybox's own cpio reads the archive (a second, independent reader)."""
    busybox = tmp_path / "busybox"
    shutil.copy(linux.busybox, busybox)
    r = subprocess.run([str(busybox), "cpio", "-t"], input=gzip.decompress(linux.initrd.read_bytes()),
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    listed = r.stdout.decode().split()
    assert "init" in listed and "dev/console" in listed and "bin/busybox" in listed


def test_second_run_is_cached_and_prints_the_paths(linux):
    stamps = {p: p.stat().st_mtime_ns for p in (linux.kernel, linux.vmlinux, linux.initrd)}
    r = subprocess.run([sys.executable, tool.__file__, "--module", "virtio_blk"], capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines == {"kernel": str(linux.kernel), "vmlinux": str(linux.vmlinux), "initrd": str(linux.initrd)}
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_unknown_module_is_a_clear_error(linux):
    with pytest.raises(tool.ToolError, match="no loadable kernel module 'no_such_module'"):
        tool.modules_in_load_order(linux.modules_dir, ["no_such_module"])
