"""The Intel MultiProcessor Specification 1.4 tables (MP floating pointer and MP
configuration table), as SeaBIOS builds them for QEMU's pc machine.

Kernels that predate ACPI, or ignore it (xv6), find their processors and the I/O APIC
here. The table lists one processor entry per vCPU (local APIC ID = vCPU index, the
first one the bootstrap processor), the ISA bus, the I/O APIC and an I/O interrupt
entry per ISA IRQ routed to the I/O APIC input of the same number, except that IRQ 0
(the PIT) goes to input 2 and that the PCI interrupt lines (5, 9, 10, 11) are left out;
then ExtINT on LINT0 of the bootstrap processor and NMI on LINT1 of all processors.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Struct

from devicemodel.firmware_tables.checksum import field_offset, set_checksum

MP_SPEC_REV = 4                        # 1.4
LOCAL_APIC_ADDR = 0xFEE00000
LOCAL_APIC_VERSION = 0x14              # QEMU's local APIC
IOAPIC_ADDR = 0xFEC00000
IOAPIC_ID = 0
IOAPIC_VERSION = 0x20                  # QEMU's I/O APIC (82093AA-compatible, version 0x20)
CPU_SIGNATURE = 0x600                  # family 6, as SeaBIOS when CPUID says nothing
CPU_FEATURES = 0x201                   # FPU | APIC
PCI_IRQS = (5, 9, 10, 11)
ISA_BUS_ID = 0

ENTRY_PROCESSOR, ENTRY_BUS, ENTRY_IOAPIC, ENTRY_IO_INTERRUPT, ENTRY_LOCAL_INTERRUPT = range(5)
CPU_ENABLED = 1 << 0
CPU_BOOTSTRAP = 1 << 1
IOAPIC_ENABLED = 1 << 0
INT_VECTORED, INT_NMI, INT_SMI, INT_EXTINT = range(4)
ALL_LOCAL_APICS = 0xFF

FloatingPointer = Struct(
    "signature" / Const(b"_MP_"),
    "config_table" / Int32ul,
    "length" / Const(1, Int8ul),       # in 16-byte units
    "spec_rev" / Int8ul,
    "checksum" / Int8ul,
    "feature1" / Int8ul,               # 0: a configuration table is present
    "feature2" / Int8ul,               # bit 7 IMCRP: 0 = virtual wire mode, no IMCR
    "feature3_5" / Bytes(3),
)

ConfigHeader = Struct(
    "signature" / Const(b"PCMP"),
    "base_table_length" / Int16ul,
    "spec_rev" / Int8ul,
    "checksum" / Int8ul,
    "oem_id" / Bytes(8),
    "product_id" / Bytes(12),
    "oem_table" / Int32ul,
    "oem_table_size" / Int16ul,
    "entry_count" / Int16ul,
    "local_apic" / Int32ul,
    "extended_table_length" / Int16ul,
    "extended_table_checksum" / Int8ul,
    "reserved" / Int8ul,
)

ProcessorEntry = Struct(
    "type" / Const(ENTRY_PROCESSOR, Int8ul),
    "local_apic_id" / Int8ul,
    "local_apic_version" / Int8ul,
    "cpu_flags" / Int8ul,
    "cpu_signature" / Int32ul,
    "feature_flags" / Int32ul,
    "reserved" / Bytes(8),
)

BusEntry = Struct(
    "type" / Const(ENTRY_BUS, Int8ul),
    "bus_id" / Int8ul,
    "bus_type" / Bytes(6),
)

IoApicEntry = Struct(
    "type" / Const(ENTRY_IOAPIC, Int8ul),
    "ioapic_id" / Int8ul,
    "ioapic_version" / Int8ul,
    "flags" / Int8ul,
    "address" / Int32ul,
)

# I/O interrupt (type 3) and local interrupt (type 4) assignment entries.
InterruptEntry = Struct(
    "type" / Int8ul,
    "interrupt_type" / Int8ul,
    "flags" / Int16ul,                 # polarity bits 1:0, trigger mode bits 3:2; 0 = bus default
    "source_bus_id" / Int8ul,
    "source_bus_irq" / Int8ul,
    "destination_id" / Int8ul,         # I/O APIC ID, or local APIC ID (0xff: all)
    "destination_input" / Int8ul,      # I/O APIC INTIN#, or LINTIN#
)

ENTRY_SIZES = {ENTRY_PROCESSOR: ProcessorEntry.sizeof(), ENTRY_BUS: BusEntry.sizeof(),
               ENTRY_IOAPIC: IoApicEntry.sizeof(), ENTRY_IO_INTERRUPT: InterruptEntry.sizeof(),
               ENTRY_LOCAL_INTERRUPT: InterruptEntry.sizeof()}


def _entries(cpus: int) -> list[bytes]:
    entries = [ProcessorEntry.build(dict(
        local_apic_id=i, local_apic_version=LOCAL_APIC_VERSION,
        cpu_flags=CPU_ENABLED | (CPU_BOOTSTRAP if i == 0 else 0),
        cpu_signature=CPU_SIGNATURE, feature_flags=CPU_FEATURES, reserved=bytes(8))) for i in range(cpus)]
    entries.append(BusEntry.build(dict(bus_id=ISA_BUS_ID, bus_type=b"ISA   ")))
    entries.append(IoApicEntry.build(dict(ioapic_id=IOAPIC_ID, ioapic_version=IOAPIC_VERSION,
                                          flags=IOAPIC_ENABLED, address=IOAPIC_ADDR)))
    for irq in range(16):
        if irq in PCI_IRQS or irq == 2:    # input 2 is IRQ 0's
            continue
        entries.append(InterruptEntry.build(dict(
            type=ENTRY_IO_INTERRUPT, interrupt_type=INT_VECTORED, flags=0, source_bus_id=ISA_BUS_ID,
            source_bus_irq=irq, destination_id=IOAPIC_ID, destination_input=2 if irq == 0 else irq)))
    for interrupt_type, destination, lint in ((INT_EXTINT, 0, 0), (INT_NMI, ALL_LOCAL_APICS, 1)):
        entries.append(InterruptEntry.build(dict(
            type=ENTRY_LOCAL_INTERRUPT, interrupt_type=interrupt_type, flags=0, source_bus_id=ISA_BUS_ID,
            source_bus_irq=0, destination_id=destination, destination_input=lint)))
    return entries


def build_mp_config_table(cpus: int) -> bytes:
    """The MP configuration table (header and base entries) for ``cpus`` processors."""
    if not 1 <= cpus <= 255:
        raise ValueError(f"an MP table describes 1 to 255 processors, not {cpus}")
    entries = _entries(cpus)
    body = b"".join(entries)
    header = ConfigHeader.build(dict(
        base_table_length=ConfigHeader.sizeof() + len(body), spec_rev=MP_SPEC_REV, checksum=0,
        oem_id=b"PYHV    ", product_id=b"PC          ", oem_table=0, oem_table_size=0,
        entry_count=len(entries), local_apic=LOCAL_APIC_ADDR, extended_table_length=0,
        extended_table_checksum=0, reserved=0))
    return set_checksum(header + body, field_offset(ConfigHeader, "checksum"))


def build_floating_pointer(config_table_addr: int) -> bytes:
    pointer = FloatingPointer.build(dict(config_table=config_table_addr, spec_rev=MP_SPEC_REV, checksum=0,
                                         feature1=0, feature2=0, feature3_5=bytes(3)))
    return set_checksum(pointer, field_offset(FloatingPointer, "checksum"))
