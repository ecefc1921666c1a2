"""ACPI tables for the PC machine (ACPI 6.5, chapter 5), as QEMU's pc machine provides them.

``build_acpi_tables(base, rsdp_addr, cpus)`` lays out, from ``base`` up, the FACS, the
DSDT, the FADT, the MADT, the HPET table (if asked for), the RSDT and the XSDT, and
returns them with the RSDP that points at the RSDT and XSDT. Every table carries its
checksum; the RSDP both of its own (first 20 bytes, whole structure).

The FADT (revision 3, ACPI 2.0 layout, 244 bytes) describes QEMU's PIIX4 power
management block: PM1a event block at 0x600 (4 bytes), PM1a control block at 0x604
(2 bytes), the ACPI PM timer at 0x608 (24-bit unless ``pm_timer_32bit``), SCI on IRQ 9,
the SMI command port 0xb2 (the PIIX4's APM control port) with QEMU's ACPI_ENABLE 0xf1
and ACPI_DISABLE 0xf0 values, through which the operating system switches the machine
to ACPI mode (PM1a_CNT.SCI_EN), and the reset register (I/O port 0xcf9, value 6). The
DSDT holds ``\\_S5`` with SLP_TYP 0 (PIIX4's soft-off) so that a kernel can power the
machine off, and the PCI root bridge ``\\_SB.PCI0`` (PNP0A03: bus 0-255, the ports but
0xcf8-0xcff, the VGA window and the 32-bit window from the end of low RAM up to the
I/O APIC, as QEMU's), through which an operating system finds the PCI devices. Its
``_PRT`` gives INTA-D of slot s the I/O APIC input 16 + ((pin + s - 1) & 3): the PIIX3's
PIRQ lines, which pyhv's board also wires straight to inputs 16-19 (QEMU routes them
through link devices to ISA IRQs 10 and 11 instead).

The MADT has one enabled Processor Local APIC per vCPU (ACPI processor UID = APIC ID =
vCPU index), the I/O APIC (ID 0 at 0xfec00000, GSI base 0), the interrupt source
overrides QEMU gives (ISA IRQ 0 to GSI 2; the PCI lines 5, 9, 10, 11 level-triggered,
active high) and the local APIC NMI on LINT1 of all processors.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import Bytes, Const, GreedyBytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from devicemodel.firmware_tables import aml
from devicemodel.firmware_tables.checksum import field_offset, set_checksum
from devicemodel.firmware_tables.mptable import IOAPIC_ADDR, IOAPIC_ID, LOCAL_APIC_ADDR, PCI_IRQS

OEM_ID = b"PYHV  "
OEM_REVISION = 1
CREATOR_ID = b"PYHV"
CREATOR_REVISION = 1

PM1A_EVT_BLK = 0x600
PM1A_CNT_BLK = 0x604
PM_TMR_BLK = 0x608
SCI_IRQ = 9
SMI_CMD = 0xB2
ACPI_ENABLE = 0xF1
ACPI_DISABLE = 0xF0
RESET_PORT = 0xCF9
RESET_VALUE = 0x06
HPET_ADDR = 0xFED00000
HPET_BLOCK_ID = 0x8086A201     # Intel, legacy-replacement capable, 64-bit counter, 3 timers

# Generic Address Structure address spaces and access sizes
SPACE_SYSTEM_MEMORY = 0
SPACE_SYSTEM_IO = 1
ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD = 1, 2, 3

# FADT flags (ACPI 6.5, table 5.10)
FADT_WBINVD = 1 << 0
FADT_PROC_C1 = 1 << 2
FADT_SLP_BUTTON = 1 << 5
FADT_RTC_S4 = 1 << 7
FADT_TMR_VAL_EXT = 1 << 8
FADT_RESET_REG_SUP = 1 << 10
FADT_USE_PLATFORM_CLOCK = 1 << 15
IAPC_LEGACY_DEVICES = 1 << 0
IAPC_8042 = 1 << 1
RTC_CENTURY_INDEX = 0x32

MADT_PCAT_COMPAT = 1 << 0
MADT_LOCAL_APIC, MADT_IO_APIC, MADT_INTERRUPT_OVERRIDE, MADT_LOCAL_APIC_NMI = 0, 1, 2, 4
LOCAL_APIC_ENABLED = 1 << 0
MPS_ACTIVE_HIGH = 0x1
MPS_LEVEL_TRIGGERED = 0xC
ALL_PROCESSORS = 0xFF

SdtHeader = Struct(
    "signature" / Bytes(4),
    "length" / Int32ul,
    "revision" / Int8ul,
    "checksum" / Int8ul,
    "oem_id" / Bytes(6),
    "oem_table_id" / Bytes(8),
    "oem_revision" / Int32ul,
    "creator_id" / Bytes(4),
    "creator_revision" / Int32ul,
)

Gas = Struct(
    "space_id" / Int8ul,
    "bit_width" / Int8ul,
    "bit_offset" / Int8ul,
    "access_size" / Int8ul,
    "address" / Int64ul,
)

Rsdp = Struct(
    "signature" / Const(b"RSD PTR "),
    "checksum" / Int8ul,               # of the first 20 bytes (the ACPI 1.0 structure)
    "oem_id" / Bytes(6),
    "revision" / Int8ul,               # 2: ACPI 2.0 and later, with the XSDT
    "rsdt_address" / Int32ul,
    "length" / Int32ul,
    "xsdt_address" / Int64ul,
    "extended_checksum" / Int8ul,      # of the whole structure
    "reserved" / Bytes(3),
)
RSDP_V1_LENGTH = 20

Facs = Struct(
    "signature" / Const(b"FACS"),
    "length" / Int32ul,
    "hardware_signature" / Int32ul,
    "firmware_waking_vector" / Int32ul,
    "global_lock" / Int32ul,
    "flags" / Int32ul,
    "x_firmware_waking_vector" / Int64ul,
    "version" / Int8ul,
    "reserved" / Bytes(3),
    "ospm_flags" / Int32ul,
    "reserved2" / Bytes(24),
)

Fadt = Struct(
    "header" / SdtHeader,
    "firmware_ctrl" / Int32ul,
    "dsdt" / Int32ul,
    "reserved" / Int8ul,
    "preferred_pm_profile" / Int8ul,
    "sci_int" / Int16ul,
    "smi_cmd" / Int32ul,
    "acpi_enable" / Int8ul,
    "acpi_disable" / Int8ul,
    "s4bios_req" / Int8ul,
    "pstate_cnt" / Int8ul,
    "pm1a_evt_blk" / Int32ul,
    "pm1b_evt_blk" / Int32ul,
    "pm1a_cnt_blk" / Int32ul,
    "pm1b_cnt_blk" / Int32ul,
    "pm2_cnt_blk" / Int32ul,
    "pm_tmr_blk" / Int32ul,
    "gpe0_blk" / Int32ul,
    "gpe1_blk" / Int32ul,
    "pm1_evt_len" / Int8ul,
    "pm1_cnt_len" / Int8ul,
    "pm2_cnt_len" / Int8ul,
    "pm_tmr_len" / Int8ul,
    "gpe0_blk_len" / Int8ul,
    "gpe1_blk_len" / Int8ul,
    "gpe1_base" / Int8ul,
    "cst_cnt" / Int8ul,
    "p_lvl2_lat" / Int16ul,
    "p_lvl3_lat" / Int16ul,
    "flush_size" / Int16ul,
    "flush_stride" / Int16ul,
    "duty_offset" / Int8ul,
    "duty_width" / Int8ul,
    "day_alrm" / Int8ul,
    "mon_alrm" / Int8ul,
    "century" / Int8ul,
    "iapc_boot_arch" / Int16ul,
    "reserved2" / Int8ul,
    "flags" / Int32ul,
    "reset_reg" / Gas,
    "reset_value" / Int8ul,
    "arm_boot_arch" / Int16ul,
    "fadt_minor_version" / Int8ul,
    "x_firmware_ctrl" / Int64ul,
    "x_dsdt" / Int64ul,
    "x_pm1a_evt_blk" / Gas,
    "x_pm1b_evt_blk" / Gas,
    "x_pm1a_cnt_blk" / Gas,
    "x_pm1b_cnt_blk" / Gas,
    "x_pm2_cnt_blk" / Gas,
    "x_pm_tmr_blk" / Gas,
    "x_gpe0_blk" / Gas,
    "x_gpe1_blk" / Gas,
)
FADT_REVISION = 3

MadtFixed = Struct(
    "header" / SdtHeader,
    "local_apic_address" / Int32ul,
    "flags" / Int32ul,
)

MadtLocalApic = Struct(
    "type" / Const(MADT_LOCAL_APIC, Int8ul),
    "length" / Const(8, Int8ul),
    "processor_uid" / Int8ul,
    "apic_id" / Int8ul,
    "flags" / Int32ul,
)

MadtIoApic = Struct(
    "type" / Const(MADT_IO_APIC, Int8ul),
    "length" / Const(12, Int8ul),
    "io_apic_id" / Int8ul,
    "reserved" / Int8ul,
    "address" / Int32ul,
    "gsi_base" / Int32ul,
)

MadtInterruptOverride = Struct(
    "type" / Const(MADT_INTERRUPT_OVERRIDE, Int8ul),
    "length" / Const(10, Int8ul),
    "bus" / Int8ul,                    # 0: ISA
    "source" / Int8ul,
    "gsi" / Int32ul,
    "flags" / Int16ul,                 # MPS INTI flags: polarity bits 1:0, trigger bits 3:2
)

MadtLocalApicNmi = Struct(
    "type" / Const(MADT_LOCAL_APIC_NMI, Int8ul),
    "length" / Const(6, Int8ul),
    "processor_uid" / Int8ul,
    "flags" / Int16ul,
    "lint" / Int8ul,
)

MADT_ENTRY_TYPES = {MADT_LOCAL_APIC: MadtLocalApic, MADT_IO_APIC: MadtIoApic,
                    MADT_INTERRUPT_OVERRIDE: MadtInterruptOverride, MADT_LOCAL_APIC_NMI: MadtLocalApicNmi}

Hpet = Struct(
    "header" / SdtHeader,
    "event_timer_block_id" / Int32ul,
    "base_address" / Gas,
    "hpet_number" / Int8ul,
    "minimum_tick" / Int16ul,
    "page_protection" / Int8ul,
)

# A definition block's body: the header, then AML.
DefinitionBlock = Struct("header" / SdtHeader, "aml" / GreedyBytes)

# AML (ACPI 6.5, chapter 20): Name (_S5, Package (4) {0, 0, 0, 0}): SLP_TYP for PM1a_CNT
# and PM1b_CNT, then two reserved values.
AML_NAME_OP, AML_PACKAGE_OP, AML_ZERO_OP = 0x08, 0x12, 0x00
S5_PACKAGE = bytes((4,)) + bytes((AML_ZERO_OP,)) * 4      # NumElements, elements
DSDT_AML = bytes((AML_NAME_OP,)) + b"_S5_" + bytes((AML_PACKAGE_OP, 1 + len(S5_PACKAGE))) + S5_PACKAGE
DSDT_REVISION = 2                     # 64-bit AML integers

CHECKSUM_OFFSET = field_offset(SdtHeader, "checksum")


def sdt(signature: bytes, revision: int, body: bytes) -> bytes:
    """A System Description Table: the header, then ``body``; checksummed."""
    header = SdtHeader.build(dict(
        signature=signature, length=SdtHeader.sizeof() + len(body), revision=revision, checksum=0,
        oem_id=OEM_ID, oem_table_id=b"PYHV" + signature, oem_revision=OEM_REVISION,
        creator_id=CREATOR_ID, creator_revision=CREATOR_REVISION))
    return set_checksum(header + body, CHECKSUM_OFFSET)


def _without_header(struct, **fields) -> bytes:
    """``struct`` built with a zero header and stripped of it: the table body."""
    zero_header = dict(signature=bytes(4), length=0, revision=0, checksum=0, oem_id=bytes(6),
                       oem_table_id=bytes(8), oem_revision=0, creator_id=bytes(4), creator_revision=0)
    return struct.build(dict(header=zero_header, **fields))[SdtHeader.sizeof():]


def _io(port: int, length: int, access_size: int = 0) -> dict:
    return dict(space_id=SPACE_SYSTEM_IO, bit_width=8 * length, bit_offset=0, access_size=access_size,
                address=port)


NO_GAS = dict(space_id=0, bit_width=0, bit_offset=0, access_size=0, address=0)


def build_facs() -> bytes:
    return Facs.build(dict(length=Facs.sizeof(), hardware_signature=0, firmware_waking_vector=0,
                           global_lock=0, flags=0, x_firmware_waking_vector=0, version=2,
                           reserved=bytes(3), ospm_flags=0, reserved2=bytes(24)))


PCI_FIRST_GSI = 16
PCI_WINDOW_END = 0xFEBFFFFF      # below the I/O APIC


def pci_root_bridge(window_start: int) -> bytes:
    """Device (PCI0) with its resources and interrupt routing (see above)."""
    resources = aml.resource_template(
        aml.word_address(aml.RESOURCE_BUS, 0x00, 0xFF),
        aml.io_port(0xCF8, 8),
        aml.word_address(aml.RESOURCE_IO, 0x0000, 0x0CF7, aml.IO_ENTIRE_RANGE),
        aml.word_address(aml.RESOURCE_IO, 0x0D00, 0xFFFF, aml.IO_ENTIRE_RANGE),
        aml.dword_memory(0x000A0000, 0x000BFFFF, cacheable=True),
        aml.dword_memory(window_start, PCI_WINDOW_END, cacheable=False))
    routes = [aml.package(aml.integer(slot << 16 | 0xFFFF), aml.integer(pin), aml.integer(0),
                          aml.integer(PCI_FIRST_GSI + ((pin + slot - 1) & 3)))
              for slot in range(32) for pin in range(4)]
    return aml.device("PCI0", aml.name("_HID", aml.eisa_id("PNP0A03")), aml.name("_ADR", aml.integer(0)),
                      aml.name("_UID", aml.integer(0)), aml.name("_CRS", resources),
                      aml.name("_PRT", aml.package(*routes)))


def build_dsdt(pci_window_start: int = None) -> bytes:
    """The DSDT; with the PCI root bridge if ``pci_window_start`` (the end of low RAM) is given."""
    body = DSDT_AML
    if pci_window_start is not None:
        body += aml.scope("\\_SB", pci_root_bridge(pci_window_start))
    return sdt(b"DSDT", DSDT_REVISION, body)


def build_fadt(facs_addr: int, dsdt_addr: int, pm_timer_32bit: bool = False) -> bytes:
    flags = (FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RTC_S4 | FADT_RESET_REG_SUP
             | FADT_USE_PLATFORM_CLOCK | (FADT_TMR_VAL_EXT if pm_timer_32bit else 0))
    body = _without_header(
        Fadt,
        firmware_ctrl=facs_addr, dsdt=dsdt_addr, reserved=0, preferred_pm_profile=0, sci_int=SCI_IRQ,
        smi_cmd=SMI_CMD, acpi_enable=ACPI_ENABLE, acpi_disable=ACPI_DISABLE, s4bios_req=0, pstate_cnt=0,
        pm1a_evt_blk=PM1A_EVT_BLK, pm1b_evt_blk=0, pm1a_cnt_blk=PM1A_CNT_BLK, pm1b_cnt_blk=0,
        pm2_cnt_blk=0, pm_tmr_blk=PM_TMR_BLK, gpe0_blk=0, gpe1_blk=0,
        pm1_evt_len=4, pm1_cnt_len=2, pm2_cnt_len=0, pm_tmr_len=4, gpe0_blk_len=0, gpe1_blk_len=0,
        gpe1_base=0, cst_cnt=0,
        p_lvl2_lat=0xFFF, p_lvl3_lat=0xFFF,       # no C2, no C3
        flush_size=0, flush_stride=0, duty_offset=0, duty_width=0, day_alrm=0, mon_alrm=0,
        century=RTC_CENTURY_INDEX, iapc_boot_arch=IAPC_LEGACY_DEVICES | IAPC_8042, reserved2=0,
        flags=flags, reset_reg=_io(RESET_PORT, 1, ACCESS_BYTE), reset_value=RESET_VALUE,
        arm_boot_arch=0, fadt_minor_version=0, x_firmware_ctrl=0, x_dsdt=dsdt_addr,
        x_pm1a_evt_blk=_io(PM1A_EVT_BLK, 4), x_pm1b_evt_blk=NO_GAS,
        x_pm1a_cnt_blk=_io(PM1A_CNT_BLK, 2), x_pm1b_cnt_blk=NO_GAS, x_pm2_cnt_blk=NO_GAS,
        x_pm_tmr_blk=_io(PM_TMR_BLK, 4), x_gpe0_blk=NO_GAS, x_gpe1_blk=NO_GAS)
    return sdt(b"FACP", FADT_REVISION, body)


def build_madt(cpus: int) -> bytes:
    if not 1 <= cpus <= 255:
        raise ValueError(f"the MADT's local APIC entries describe 1 to 255 processors, not {cpus}")
    entries = [MadtLocalApic.build(dict(processor_uid=i, apic_id=i, flags=LOCAL_APIC_ENABLED))
               for i in range(cpus)]
    entries.append(MadtIoApic.build(dict(io_apic_id=IOAPIC_ID, reserved=0, address=IOAPIC_ADDR, gsi_base=0)))
    entries.append(MadtInterruptOverride.build(dict(bus=0, source=0, gsi=2, flags=0)))
    for irq in PCI_IRQS:
        entries.append(MadtInterruptOverride.build(dict(bus=0, source=irq, gsi=irq,
                                                        flags=MPS_ACTIVE_HIGH | MPS_LEVEL_TRIGGERED)))
    entries.append(MadtLocalApicNmi.build(dict(processor_uid=ALL_PROCESSORS, flags=0, lint=1)))
    body = _without_header(MadtFixed, local_apic_address=LOCAL_APIC_ADDR, flags=MADT_PCAT_COMPAT)
    return sdt(b"APIC", 1, body + b"".join(entries))


def build_hpet() -> bytes:
    body = _without_header(Hpet, event_timer_block_id=HPET_BLOCK_ID,
                           base_address=dict(space_id=SPACE_SYSTEM_MEMORY, bit_width=64, bit_offset=0,
                                             access_size=0, address=HPET_ADDR),
                           hpet_number=0, minimum_tick=0, page_protection=0)
    return sdt(b"HPET", 1, body)


def build_rsdp(rsdt_addr: int, xsdt_addr: int) -> bytes:
    rsdp = Rsdp.build(dict(checksum=0, oem_id=OEM_ID, revision=2, rsdt_address=rsdt_addr,
                           length=Rsdp.sizeof(), xsdt_address=xsdt_addr, extended_checksum=0,
                           reserved=bytes(3)))
    rsdp = set_checksum(rsdp, field_offset(Rsdp, "checksum"), RSDP_V1_LENGTH)
    return set_checksum(rsdp, field_offset(Rsdp, "extended_checksum"))


@dataclass(frozen=True)
class AcpiTables:
    """The tables as one blob to copy to ``base``, the RSDP to copy to ``rsdp_addr``, and
    the address of each table by signature (and "FACS")."""

    base: int
    blob: bytes
    rsdp_addr: int
    rsdp: bytes
    addresses: dict

    def write(self, mem) -> None:
        mem[self.base:self.base + len(self.blob)] = self.blob
        mem[self.rsdp_addr:self.rsdp_addr + len(self.rsdp)] = self.rsdp


def build_acpi_tables(base: int, rsdp_addr: int, cpus: int, hpet: bool = False,
                      pm_timer_32bit: bool = False, pci_window_start: int = None) -> AcpiTables:
    """The ACPI tables for ``cpus`` vCPUs laid out from ``base`` (64-byte aligned), their RSDP
    meant for ``rsdp_addr`` (16-byte aligned, in 0xe0000-0xfffff)."""
    if base % 64 or rsdp_addr % 16:
        raise ValueError("the FACS must be 64-byte aligned and the RSDP 16-byte aligned")
    blob = bytearray()
    addresses = {}

    def place(name: str, table: bytes) -> int:
        blob.extend(bytes(-len(blob) % 16))
        addresses[name] = base + len(blob)
        blob.extend(table)
        return addresses[name]

    facs = place("FACS", build_facs())
    dsdt = place("DSDT", build_dsdt(pci_window_start))
    described = [place("FACP", build_fadt(facs, dsdt, pm_timer_32bit)), place("APIC", build_madt(cpus))]
    if hpet:
        described.append(place("HPET", build_hpet()))
    rsdt = place("RSDT", sdt(b"RSDT", 1, b"".join(Int32ul.build(a) for a in described)))
    xsdt = place("XSDT", sdt(b"XSDT", 1, b"".join(Int64ul.build(a) for a in described)))
    return AcpiTables(base=base, blob=bytes(blob), rsdp_addr=rsdp_addr, rsdp=build_rsdp(rsdt, xsdt),
                      addresses=addresses)
