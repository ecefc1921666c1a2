"""The BIOS data area (BDA, 0x400) and the start of the extended BIOS data area (EBDA), as
the BIOS leaves them after POST: kernels read where the EBDA is and how much conventional
memory there is (Linux's reserve_bios_regions) and look for the MP floating pointer in
the EBDA's first KiB and below the top of conventional memory (xv6, MP spec 4)."""

from __future__ import annotations

from construct import Array, Int16ul, Padding, Struct

from devicemodel.firmware_tables.e820 import EBDA_SEGMENT, EBDA_SIZE, LOW_MEMORY_END

BDA_ADDR = 0x400
EQUIPMENT_FPU = 1 << 1
EQUIPMENT_SERIAL_SHIFT = 9      # bits 11:9: number of serial ports

BiosDataArea = Struct(
    "com_ports" / Array(4, Int16ul),    # 0x400: I/O base of COM1-COM4, 0 if absent
    "lpt_ports" / Array(3, Int16ul),    # 0x408
    "ebda_segment" / Int16ul,           # 0x40e
    "equipment" / Int16ul,              # 0x410
    Padding(1),                         # 0x412
    "base_memory_kib" / Int16ul,        # 0x413: conventional memory below the EBDA
)


def build_bda(com_ports=(0x3F8,)) -> bytes:
    ports = list(com_ports)[:4]
    return BiosDataArea.build(dict(
        com_ports=ports + [0] * (4 - len(ports)),
        lpt_ports=[0, 0, 0],
        ebda_segment=EBDA_SEGMENT,
        equipment=EQUIPMENT_FPU | len(ports) << EQUIPMENT_SERIAL_SHIFT,
        base_memory_kib=LOW_MEMORY_END // 1024,
    ))


def write_bda(mem, com_ports=(0x3F8,)) -> None:
    """Fill the BDA and the EBDA's size byte (its first byte, in KiB) in ``mem``."""
    bda = build_bda(com_ports)
    mem[BDA_ADDR:BDA_ADDR + len(bda)] = bda
    mem[LOW_MEMORY_END] = EBDA_SIZE // 1024
