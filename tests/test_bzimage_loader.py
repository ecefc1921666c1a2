"""The Linux boot protocol loader, on synthetic bzImages built here and on Debian's kernel."""

import mmap
import struct

import pytest

from boot_check import DEBUG_PORT, gdt_descriptors, run_until_port_write, translate
from devicemodel.errors import LoaderError
from devicemodel.firmware_tables.e820 import pc_memory_map
from devicemodel.loaders.bzimage import BootParams, SetupHeader, load_bzimage
from devicemodel.loaders.x86_boot import CODE32, CODE64

MiB = 1 << 20
SETUP_SECTS = 4
KERNEL_AT = 0x100000

# 64-bit code at startup_64 (load address + 0x200): a 64-bit-only instruction, then write
# the result and boot_params' cmd_line_ptr (through RSI) to the debug port.
#   mov rax, 0x1122334455667788 ; shr rax, 32 ; add eax, [rsi + 0x228] ; out 0xf4, eax ; hlt
STARTUP_64 = (b"\x48\xb8" + struct.pack("<Q", 0x1122334455667788) + b"\x48\xc1\xe8\x20"
              + b"\x03\x86\x28\x02\x00\x00" + b"\xe7\xf4\xf4")
# 32-bit code at code32_start: out 0xf4, eax with eax = [esi + 0x228] + 1
STARTUP_32 = b"\x8b\x86\x28\x02\x00\x00" + b"\x40" + b"\xe7\xf4\xf4"


def bzimage(version=0x020F, loadflags=0x01, xloadflags=0x03, init_size=0x400000, cmdline_size=2047,
            initrd_addr_max=0x7FFFFFFF, kernel_alignment=0x200000, pref_address=0x1000000,
            header_end=0x26C, boot_flag=0xAA55, magic=b"HdrS", setup_sects=SETUP_SECTS):
    """A minimal bzImage: the setup sectors with a setup header, then a protected-mode kernel
    with STARTUP_32 at its start and STARTUP_64 at +0x200."""
    header = SetupHeader.build(dict(
        setup_sects=setup_sects, root_flags=1, syssize=0, ram_size=0, vid_mode=0xFFFF, root_dev=0,
        boot_flag=boot_flag, jump=0xEB | (header_end - 0x202) << 8, header=magic, version=version,
        realmode_swtch=0, start_sys_seg=0x1000, kernel_version=0, type_of_loader=0, loadflags=loadflags,
        setup_move_size=0x8000, code32_start=KERNEL_AT, ramdisk_image=0, ramdisk_size=0,
        bootsect_kludge=0, heap_end_ptr=0, ext_loader_ver=0, ext_loader_type=0, cmd_line_ptr=0,
        initrd_addr_max=initrd_addr_max, kernel_alignment=kernel_alignment, relocatable_kernel=1,
        min_alignment=21, xloadflags=xloadflags, cmdline_size=cmdline_size, hardware_subarch=0,
        hardware_subarch_data=0, payload_offset=0, payload_length=0, setup_data=0,
        pref_address=pref_address, init_size=init_size, handover_offset=0, kernel_info_offset=0x1234))
    setup = bytearray((SETUP_SECTS + 1) * 512)
    setup[0x1F1:0x1F1 + len(header)] = header
    setup[header_end:0x26C] = b"\xcc" * (0x26C - header_end)     # code, where the header is shorter
    kernel = STARTUP_32.ljust(0x200, b"\x90") + STARTUP_64
    return bytes(setup) + kernel.ljust(0x1000, b"\0")


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def ram(size=64 * MiB):
    return mmap.mmap(-1, size)


def params(mem, boot):
    return BootParams.parse(bytes(mem[boot.boot_params_addr:boot.boot_params_addr + 4096]))


def cstring(mem, addr):
    return bytes(mem[addr:mem.find(b"\0", addr)]).decode()


def load_error(tmp_path, image, mem=None, **kw):
    with pytest.raises(LoaderError) as e:
        load_bzimage(write(tmp_path, "bz", image), ram() if mem is None else mem, **kw)
    return str(e.value).replace(str(tmp_path / "bz"), "<path>")


# --- what goes where ----------------------------------------------------------

def test_kernel_at_1mib_and_the_zero_page(tmp_path):
    mem = ram()
    image = bzimage()
    initrd = write(tmp_path, "initrd", b"INITRD" * 1000)
    boot = load_bzimage(write(tmp_path, "bz", image), mem, "console=ttyS0 quiet", initrd=initrd,
                        rsdp_addr=0xF0000)
    assert boot.kernel_addr == KERNEL_AT and mem[KERNEL_AT:KERNEL_AT + 0x1000] == image[5 * 512:]
    bp = params(mem, boot)
    h = bp.hdr
    assert h.boot_flag == 0xAA55 and h.header == b"HdrS" and h.version == 0x020F
    assert h.setup_sects == SETUP_SECTS and h.kernel_info_offset == 0x1234     # copied from the image
    assert h.type_of_loader == 0xFF and h.vid_mode == 0xFFFF
    assert h.loadflags & 1
    assert cstring(mem, h.cmd_line_ptr) == "console=ttyS0 quiet" and h.cmd_line_ptr == boot.cmdline_addr
    assert (h.ramdisk_image, h.ramdisk_size) == (boot.initrd_addr, 6000)
    assert bp.ext_ramdisk_image == bp.ext_ramdisk_size == bp.ext_cmd_line_ptr == 0
    assert mem[boot.initrd_addr:boot.initrd_addr + 6000] == b"INITRD" * 1000
    assert bp.acpi_rsdp_addr == 0xF0000
    e820 = [(e.addr, e.size, e.type) for e in bp.e820_table[:bp.e820_entries]]
    assert e820 == pc_memory_map(64 * MiB)


def test_initrd_goes_as_high_as_allowed(tmp_path):
    mem = ram()
    initrd = write(tmp_path, "initrd", bytes(10000))
    boot = load_bzimage(write(tmp_path, "bz", bzimage()), mem, initrd=initrd)
    top = 64 * MiB - 0x20000                                   # below the ACPI area
    assert boot.initrd_addr % 4096 == 0
    assert top - 4096 - 10000 < boot.initrd_addr and boot.initrd_addr + 10000 <= top
    boot = load_bzimage(write(tmp_path, "bz", bzimage(initrd_addr_max=0x2FFFFFF)), mem, initrd=initrd)
    assert boot.initrd_addr + 10000 <= 0x3000000 and boot.initrd_addr > 0x3000000 - 4096 - 10000


def test_no_initrd(tmp_path):
    mem = ram()
    boot = load_bzimage(write(tmp_path, "bz", bzimage()), mem)
    h = params(mem, boot).hdr
    assert (h.ramdisk_image, h.ramdisk_size, boot.initrd_size) == (0, 0, 0)
    assert params(mem, boot).acpi_rsdp_addr == 0


def test_fields_past_the_header_end_are_zero(tmp_path):
    """A 2.12 header ends before kernel_info_offset: the bytes there are code, not header."""
    mem = ram()
    boot = load_bzimage(write(tmp_path, "bz", bzimage(version=0x020C, header_end=0x268)), mem)
    assert params(mem, boot).hdr.kernel_info_offset == 0
    assert params(mem, boot).hdr.handover_offset == 0 and params(mem, boot).hdr.init_size == 0x400000


# --- the entry states ----------------------------------------------------------

def test_64_bit_entry_state_page_tables_and_gdt(tmp_path):
    mem = ram()
    boot = load_bzimage(write(tmp_path, "bz", bzimage()), mem, "x")
    e = boot.entry
    assert e.rip == KERNEL_AT + 0x200 and e.regs == {"rsi": boot.boot_params_addr}
    assert e.code == CODE64 and e.code.selector == 0x10 and e.data.selector == 0x18 and e.long_mode
    assert e.cr0 & 0x80000001 == 0x80000001 and e.cr4 & 0x20 and e.efer == 0x500
    for linear in (0, KERNEL_AT + 0x200, boot.boot_params_addr, boot.cmdline_addr, 0x5432100, 0xFFFFF123):
        assert translate(mem, e.cr3, linear) == linear
    assert translate(mem, e.cr3, 1 << 32) is None
    null1, null2, code, data = gdt_descriptors(mem, e.gdt)
    assert code.access.type == 0xB and code.access.present and code.flags.l and not code.flags.db
    assert data.access.type == 0x3 and data.flags.g and data.flags.db


def test_32_bit_entry_state(tmp_path):
    mem = ram()
    boot = load_bzimage(write(tmp_path, "bz", bzimage()), mem, entry="32")
    e = boot.entry
    assert e.rip == KERNEL_AT and e.regs == {"rsi": boot.boot_params_addr}
    assert e.code == CODE32 and not e.long_mode and e.cr0 & 0x80000001 == 1 and e.efer == 0 and e.cr3 == 0
    _, _, code, data = gdt_descriptors(mem, e.gdt)
    assert code.flags.db and not code.flags.l and code.flags.g


def test_64_bit_entry_runs_on_pyhv(tmp_path):
    mem = ram(32 * MiB)
    boot = load_bzimage(write(tmp_path, "bz", bzimage()), mem, "x")
    assert run_until_port_write(mem, boot.entry) == (DEBUG_PORT, 0x11223344 + boot.cmdline_addr)


def test_32_bit_entry_runs_on_pyhv(tmp_path):
    mem = ram(32 * MiB)
    boot = load_bzimage(write(tmp_path, "bz", bzimage()), mem, "x", entry="32")
    assert run_until_port_write(mem, boot.entry) == (DEBUG_PORT, boot.cmdline_addr + 1)


def test_entry_state_reaches_the_vcpu_registers():
    from fake_kvm import FakeKvm
    from devicemodel.entry_state import apply_entry_state
    from devicemodel.loaders.x86_boot import EntryState

    vcpu = FakeKvm([]).create_vm().create_vcpu(0)
    apply_entry_state(vcpu, EntryState(rip=0x100200, regs={"rsi": 0x7000}, code=CODE64, gdt=(0x500, 31),
                                       cr3=0x10000))
    s, r = vcpu.sregs, vcpu.regs
    assert (r.rip, r.rsi, r.rax, r.rflags) == (0x100200, 0x7000, 0, 2)
    assert (s.cs.selector, s.cs.l, s.cs.db, s.ss.selector, s.ds.selector) == (0x10, 1, 0, 0x18, 0x18)
    assert (s.gdt.base, s.gdt.limit, s.cr3, s.efer) == (0x500, 31, 0x10000, 0x500)
    assert s.cr0 & 0x80000001 == 0x80000001 and s.cr4 & 0x20


# --- refusals ------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(LoaderError, match="could not open kernel file"):
        load_bzimage(str(tmp_path / "nothing"), ram())


def test_not_a_kernel(tmp_path):
    assert "not a Linux kernel image" in load_error(tmp_path, b"\x7fELF" + bytes(1000))
    assert "not a Linux kernel image" in load_error(tmp_path, bzimage(boot_flag=0x1234))
    assert "not a Linux kernel image" in load_error(tmp_path, bzimage(magic=b"HdrX"))
    assert "too short" in load_error(tmp_path, b"short")


def test_old_protocol_and_zimage(tmp_path):
    assert "boot protocol 2.10 is too old" in load_error(tmp_path, bzimage(version=0x020A))
    assert "is a zImage" in load_error(tmp_path, bzimage(loadflags=0))


def test_no_64_bit_entry(tmp_path):
    assert "no 64-bit entry point" in load_error(tmp_path, bzimage(xloadflags=0))
    load_bzimage(write(tmp_path, "bz", bzimage(xloadflags=0)), ram(), entry="32")


def test_truncated_after_setup(tmp_path):
    assert "truncated" in load_error(tmp_path, bzimage()[:5 * 512])


def test_command_line_too_long(tmp_path):
    message = load_error(tmp_path, bzimage(cmdline_size=16), cmdline="x" * 17)
    assert message == "kernel command line too long: 17 bytes, '<path>' accepts 16"


def test_kernel_needs_more_ram(tmp_path):
    message = load_error(tmp_path, bzimage(init_size=64 * MiB), mem=ram(64 * MiB))
    assert "kernel too big for memory" in message and "init_size 0x4000000" in message


def test_initrd_does_not_fit(tmp_path):
    initrd = write(tmp_path, "initrd", bytes(40 * MiB))
    message = load_error(tmp_path, bzimage(init_size=16 * MiB), mem=ram(64 * MiB), initrd=initrd)
    assert "does not fit in guest RAM" in message


def test_missing_initrd(tmp_path):
    assert "could not open initrd file" in load_error(tmp_path, bzimage(), initrd=str(tmp_path / "none"))


# --- Debian's kernel ------------------------------------------------------------

@pytest.mark.slow
def test_debian_kernel_loads():
    import debian
    linux = debian.debian_linux()
    mem = ram(256 * MiB)
    boot = load_bzimage(str(linux.kernel), mem, "console=ttyS0", initrd=str(linux.initrd), rsdp_addr=0xF0000)
    h = params(mem, boot).hdr
    assert h.version >= 0x020F and h.xloadflags & 1 and h.relocatable_kernel
    assert h.ramdisk_size == linux.initrd.stat().st_size and boot.initrd_addr >= 16 * MiB + h.init_size
    image = linux.kernel.read_bytes()
    setup = (image[0x1F1] + 1) * 512
    assert mem[KERNEL_AT:KERNEL_AT + 4096] == image[setup:setup + 4096]
    assert boot.entry.rip == KERNEL_AT + 0x200
