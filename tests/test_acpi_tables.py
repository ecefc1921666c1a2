"""ACPI tables, parsed back from guest RAM the way an OS finds them: RSDP, then the
RSDT/XSDT, then each table; and, when Debian's iasl is installed, disassembled by it."""

import shutil
import subprocess

import pytest
from construct import GreedyRange, Int32ul, Int64ul

from devicemodel.firmware_tables.acpi import (DefinitionBlock, Facs, Fadt, Hpet, MADT_ENTRY_TYPES,
                                              MadtFixed, Rsdp, SdtHeader, build_acpi_tables)
from devicemodel.firmware_tables.pc import RSDP_ADDR, install_pc_firmware_tables

MiB = 1 << 20


def byte_sum(data):
    return sum(data) & 0xFF


def find_rsdp(mem):
    """The RSDP as Linux looks for it: 16-byte aligned in 0xe0000-0xfffff, both checksums good."""
    for addr in range(0xE0000, 0x100000, 16):
        if mem[addr:addr + 8] == b"RSD PTR " and byte_sum(mem[addr:addr + 20]) == 0:
            assert byte_sum(mem[addr:addr + 36]) == 0
            return addr, Rsdp.parse(bytes(mem[addr:addr + 36]))
    raise AssertionError("no RSDP")


def table_at(mem, addr):
    header = SdtHeader.parse(bytes(mem[addr:addr + 36]))
    data = bytes(mem[addr:addr + header.length])
    assert byte_sum(data) == 0, f"{header.signature} checksum"
    assert header.oem_id == b"PYHV  "
    return header, data


def tables(mem):
    _, rsdp = find_rsdp(mem)
    rsdt_header, rsdt = table_at(mem, rsdp.rsdt_address)
    xsdt_header, xsdt = table_at(mem, rsdp.xsdt_address)
    assert rsdt_header.signature == b"RSDT" and xsdt_header.signature == b"XSDT"
    rsdt_entries = GreedyRange(Int32ul).parse(rsdt[36:])
    xsdt_entries = GreedyRange(Int64ul).parse(xsdt[36:])
    assert list(rsdt_entries) == list(xsdt_entries)
    found = {}
    for addr in xsdt_entries:
        header, data = table_at(mem, addr)
        found[header.signature] = (addr, data)
    return found


@pytest.fixture
def mem():
    mem = bytearray(64 * MiB)
    install_pc_firmware_tables(mem, cpus=4, hpet=True)
    return mem


def test_rsdp_in_the_bios_area_with_both_checksums(mem):
    addr, rsdp = find_rsdp(mem)
    assert addr == RSDP_ADDR
    assert rsdp.revision == 2 and rsdp.length == 36
    acpi_area = range(64 * MiB - 0x20000, 64 * MiB)
    assert rsdp.rsdt_address in acpi_area and rsdp.xsdt_address in acpi_area


def test_rsdt_and_xsdt_list_fadt_madt_hpet(mem):
    assert set(tables(mem)) == {b"FACP", b"APIC", b"HPET"}


def test_fadt_points_at_facs_and_dsdt_and_describes_piix4_pm(mem):
    _, data = tables(mem)[b"FACP"]
    fadt = Fadt.parse(data)
    assert fadt.header.revision >= 3 and fadt.header.length == len(data) == 244
    assert fadt.sci_int == 9
    assert (fadt.pm1a_evt_blk, fadt.pm1_evt_len) == (0x600, 4)
    assert (fadt.pm1a_cnt_blk, fadt.pm1_cnt_len) == (0x604, 2)
    assert (fadt.pm_tmr_blk, fadt.pm_tmr_len) == (0x608, 4)
    assert not fadt.flags & (1 << 8)                      # 24-bit PM timer by default
    assert fadt.flags & (1 << 10)                         # reset register supported
    assert (fadt.reset_reg.space_id, fadt.reset_reg.address, fadt.reset_value) == (1, 0xCF9, 6)
    assert (fadt.x_pm1a_evt_blk.address, fadt.x_pm1a_cnt_blk.address, fadt.x_pm_tmr_blk.address) == (
        0x600, 0x604, 0x608)
    assert fadt.x_dsdt == fadt.dsdt
    facs = Facs.parse(bytes(mem[fadt.firmware_ctrl:fadt.firmware_ctrl + 64]))
    assert facs.length == 64 and fadt.firmware_ctrl % 64 == 0
    header, dsdt = table_at(mem, fadt.dsdt)
    assert header.signature == b"DSDT"
    assert b"_S5_" in DefinitionBlock.parse(dsdt).aml


def test_fadt_smi_command_switches_to_acpi_mode_as_qemu(mem):
    fadt = Fadt.parse(tables(mem)[b"FACP"][1])
    assert (fadt.smi_cmd, fadt.acpi_enable, fadt.acpi_disable) == (0xB2, 0xF1, 0xF0)


def test_dsdt_s5_package_gives_the_soft_off_sleep_type(mem):
    """Name (_S5, Package () {SLP_TYPa, SLP_TYPb, ...}) decoded as ACPICA does it."""
    fadt = Fadt.parse(tables(mem)[b"FACP"][1])
    aml = DefinitionBlock.parse(table_at(mem, fadt.dsdt)[1]).aml
    at = aml.index(b"\x08_S5_")                              # NameOp, NameSeg
    assert aml[at + 5] == 0x12                                # PackageOp
    length, count = aml[at + 6], aml[at + 7]                  # a one-byte PkgLength, NumElements
    assert length < 0x40 and count >= 2
    elements = aml[at + 8:at + 6 + length]
    values = []
    for op in elements:
        assert op in (0x00, 0x01)                             # ZeroOp, OneOp: no other encodings here
        values.append(op)
    assert values[:2] == [0, 0]                               # PIIX4's soft-off SLP_TYP is 0


def test_no_acpi_tables_without_acpi():
    mem = bytearray(16 * MiB)
    installed = install_pc_firmware_tables(mem, acpi=False)
    assert installed.rsdp_addr is None and installed.acpi is None
    assert b"RSD PTR " not in mem
    assert mem[installed.mp_floating_pointer_addr:installed.mp_floating_pointer_addr + 4] == b"_MP_"


def test_32_bit_pm_timer_flag():
    mem = bytearray(16 * MiB)
    install_pc_firmware_tables(mem, pm_timer_32bit=True)
    assert Fadt.parse(tables(mem)[b"FACP"][1]).flags & (1 << 8)


def parse_madt(data):
    fixed = MadtFixed.parse(data)
    entries, pos = [], MadtFixed.sizeof()
    while pos < len(data):
        kind, length = data[pos], data[pos + 1]
        entries.append(MADT_ENTRY_TYPES[kind].parse(data[pos:pos + length]))
        pos += length
    assert pos == len(data)
    return fixed, entries


def test_madt_processors_ioapic_and_overrides_as_qemu(mem):
    fixed, entries = parse_madt(tables(mem)[b"APIC"][1])
    assert fixed.local_apic_address == 0xFEE00000 and fixed.flags == 1
    cpus = [(e.processor_uid, e.apic_id, e.flags) for e in entries if e.type == 0]
    assert cpus == [(i, i, 1) for i in range(4)]
    (ioapic,) = [e for e in entries if e.type == 1]
    assert (ioapic.address, ioapic.gsi_base) == (0xFEC00000, 0)
    overrides = {e.source: (e.gsi, e.flags) for e in entries if e.type == 2}
    assert overrides[0] == (2, 0)
    assert overrides[9] == (9, 0xD)                       # SCI: level-triggered, active high
    assert set(overrides) == {0, 5, 9, 10, 11}
    (nmi,) = [e for e in entries if e.type == 4]
    assert (nmi.processor_uid, nmi.lint) == (0xFF, 1)


def test_hpet_table_only_when_asked():
    mem = bytearray(16 * MiB)
    install_pc_firmware_tables(mem, cpus=1)
    assert b"HPET" not in tables(mem)


def test_hpet_table(mem):
    hpet = Hpet.parse(tables(mem)[b"HPET"][1])
    assert hpet.base_address.address == 0xFED00000 and hpet.base_address.space_id == 0
    assert hpet.event_timer_block_id >> 16 == 0x8086


def test_tables_stay_inside_the_reserved_area():
    acpi = build_acpi_tables(0x1000000, 0xF0000, cpus=255, hpet=True)
    assert len(acpi.blob) < 0x20000
    assert all(0x1000000 <= a < 0x1000000 + len(acpi.blob) for a in acpi.addresses.values())


def test_too_little_ram_for_the_tables():
    from devicemodel.errors import ConfigError
    with pytest.raises(ConfigError, match="too small for the firmware tables"):
        install_pc_firmware_tables(bytearray(MiB))


@pytest.fixture(scope="module")
def iasl():
    """Debian's ACPI disassembler, installed with apt-get when missing."""
    if shutil.which("iasl") is None:
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        for args in (["install", "-y", "acpica-tools"], ["update"], ["install", "-y", "acpica-tools"]):
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", *args], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True)
            if shutil.which("iasl"):
                break
    path = shutil.which("iasl")
    assert path, "could not install acpica-tools (iasl) with apt-get"
    return path


def test_iasl_disassembles_every_table(mem, tmp_path, iasl):
    found = tables(mem)
    fadt = Fadt.parse(found[b"FACP"][1])
    found[b"DSDT"] = (fadt.dsdt, table_at(mem, fadt.dsdt)[1])
    found[b"FACS"] = (fadt.firmware_ctrl, bytes(mem[fadt.firmware_ctrl:fadt.firmware_ctrl + 64]))
    for signature, (_, data) in found.items():
        path = tmp_path / f"{signature.decode().lower()}.dat"
        path.write_bytes(data)
        r = subprocess.run([iasl, "-d", str(path)], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        output = (r.stdout + r.stderr).lower()
        assert "error" not in output and "warning" not in output, output
        assert path.with_suffix(".dsl").exists()


def test_dsdt_pci_root_bridge_and_interrupt_routing():
    """\\_SB.PCI0 as iasl writes it: PNP0A03, the 32-bit window from the end of low RAM,
    and a _PRT entry per slot and pin to the I/O APIC inputs 16-19."""
    from devicemodel.firmware_tables import aml
    from devicemodel.firmware_tables.acpi import build_dsdt
    body = DefinitionBlock.parse(build_dsdt(0x08000000)).aml
    assert b"\x10" in body and b"\\_SB_" in body and b"\x5b\x82" in body and b"PCI0" in body
    assert b"_HID\x0c\x41\xd0\x0a\x03" in body                              # EisaId ("PNP0A03")
    window = aml.dword_memory(0x08000000, 0xFEBFFFFF, cacheable=False)
    assert window in body
    for slot, pin, gsi in ((1, 0, 16), (2, 0, 17), (4, 0, 19), (4, 1, 16), (31, 3, 17)):
        assert aml.package(aml.integer(slot << 16 | 0xFFFF), aml.integer(pin), aml.integer(0),
                           aml.integer(gsi)) in body
    assert aml.pkg_length(bytes(62)) == bytes((63,)) + bytes(62)
    assert aml.pkg_length(bytes(100))[:2] == bytes((0x40 | (102 & 0xF), 102 >> 4))
