"""Which boot protocol a kernel file speaks, and loading it by that protocol: a Linux
bzImage (the "HdrS" setup header), a Multiboot kernel (a Multiboot header in its first
8 KiB), or an ELF with the PVH entry note (an uncompressed Linux vmlinux)."""

from __future__ import annotations

from typing import Optional

from devicemodel.loaders.bzimage import load_bzimage
from devicemodel.loaders.elf import elf_notes, read_elf_kernel, read_kernel_file
from devicemodel.errors import LoaderError
from devicemodel.loaders.multiboot import find_multiboot_header, load_multiboot
from devicemodel.loaders.pvh import load_pvh, pvh_entry_point

SETUP_HEADER_MAGIC_OFFSET = 0x202


def _has_pvh_note(path: str, image: bytes) -> bool:
    try:
        pvh_entry_point(path, elf_notes(path, read_elf_kernel(path, image, "a PVH kernel")))
    except LoaderError:
        return False
    return True


def kernel_protocol(path: str, image: bytes) -> str:
    """'linux', 'multiboot' or 'pvh'; a file that is none of them is left to the Multiboot
    loader, whose errors say what a kernel file lacks."""
    if image[SETUP_HEADER_MAGIC_OFFSET:SETUP_HEADER_MAGIC_OFFSET + 4] == b"HdrS":
        return "linux"
    if find_multiboot_header(path, image)[0] is None and _has_pvh_note(path, image):
        return "pvh"
    return "multiboot"


def load_kernel(path: str, ram, cmdline: str, initrd: Optional[str], rsdp_addr: Optional[int],
                linux_cmdline_extra: str = ""):
    """Load the kernel at ``path`` by its protocol; the result's ``.entry`` is the vCPU state.
    ``linux_cmdline_extra`` (device announcements such as virtio-mmio's) is appended to the
    command line of a Linux or PVH kernel, as QEMU's microvm does, not to a Multiboot one."""
    protocol = kernel_protocol(path, read_kernel_file(path))
    if protocol == "linux":
        return load_bzimage(path, ram, cmdline + linux_cmdline_extra, initrd=initrd, rsdp_addr=rsdp_addr)
    if protocol == "pvh":
        return load_pvh(path, ram, cmdline + linux_cmdline_extra, initrd=initrd, rsdp_addr=rsdp_addr)
    if initrd is not None:
        raise LoaderError("-initrd: Multiboot modules are not supported yet")
    return load_multiboot(path, ram, f"{path} {cmdline}")   # as QEMU: the file name first
