"""The registers gdb sees: target descriptions (gdb's "Target Descriptions" appendix) for
x86-64 and i386, generated from one table that also fixes the layout of the g/G packets
and the numbers of p/P, and the values of those registers on a vCPU.

Both descriptions use gdb's own features (org.gnu.gdb.i386.core with the x87 registers
it requires; for x86-64 org.gnu.gdb.i386.segments for fs_base/gs_base, which i386
cannot use: gdb 13 fails an assertion on it) and add the control registers and EFER,
as QEMU's do.  The x87 registers read as unavailable: the
hypervisor layer does not give userspace the FPU state yet."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Optional

from kvm.structs import Segment

CORE, SEGMENTS, SYSTEM = "org.gnu.gdb.i386.core", "org.gnu.gdb.i386.segments", "org.pyhv.gdb.x86.sys"
MSR_KERNEL_GS_BASE = 0xC0000102

FLAG_TYPES = {   # flags types: their fields (one bit each)
    "i386_eflags": [("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8),
                    ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17),
                    ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)],
    "x86_cr0": [("PE", 0), ("MP", 1), ("EM", 2), ("TS", 3), ("ET", 4), ("NE", 5), ("WP", 16),
                ("AM", 18), ("NW", 29), ("CD", 30), ("PG", 31)],
    "x86_cr4": [("VME", 0), ("PVI", 1), ("TSD", 2), ("DE", 3), ("PSE", 4), ("PAE", 5), ("MCE", 6),
                ("PGE", 7), ("PCE", 8), ("OSFXSR", 9), ("OSXMMEXCPT", 10), ("UMIP", 11),
                ("VMXE", 13), ("SMXE", 14), ("FSGSBASE", 16), ("PCIDE", 17), ("OSXSAVE", 18),
                ("SMEP", 20), ("SMAP", 21), ("PKE", 22)],
    "x86_efer": [("SCE", 0), ("LME", 8), ("LMA", 10), ("NXE", 11), ("SVME", 12), ("LMSLE", 13),
                 ("FFXSR", 14), ("TCE", 15)],
}
X87 = ["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"]
X87_CONTROL = ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]
SEGMENT_NAMES = ["cs", "ss", "ds", "es", "fs", "gs"]


@dataclass(frozen=True)
class Reg:
    name: str
    bits: int
    type: str
    feature: str = CORE
    group: Optional[str] = None


def _x87_and_segments_part(core_head: list[Reg]) -> list[Reg]:
    return (core_head + [Reg(n, 32, "int32") for n in SEGMENT_NAMES]
            + [Reg(n, 80, "i387_ext") for n in X87]
            + [Reg(n, 32, "int", group="float") for n in X87_CONTROL])


X86_64_REGS = _x87_and_segments_part(
    [Reg(n, 64, "int64") for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")]
    + [Reg("rbp", 64, "data_ptr"), Reg("rsp", 64, "data_ptr")]
    + [Reg(f"r{n}", 64, "int64") for n in range(8, 16)]
    + [Reg("rip", 64, "code_ptr"), Reg("eflags", 32, "i386_eflags")]
) + [Reg("fs_base", 64, "int64", SEGMENTS), Reg("gs_base", 64, "int64", SEGMENTS),
     Reg("k_gs_base", 64, "int64", SYSTEM), Reg("cr0", 64, "x86_cr0", SYSTEM),
     Reg("cr2", 64, "int64", SYSTEM), Reg("cr3", 64, "int64", SYSTEM),
     Reg("cr4", 64, "x86_cr4", SYSTEM), Reg("cr8", 64, "int64", SYSTEM),
     Reg("efer", 64, "x86_efer", SYSTEM)]

I386_REGS = _x87_and_segments_part(
    [Reg(n, 32, "int32") for n in ("eax", "ecx", "edx", "ebx")]
    + [Reg("esp", 32, "data_ptr"), Reg("ebp", 32, "data_ptr"), Reg("esi", 32, "int32"),
       Reg("edi", 32, "int32"), Reg("eip", 32, "code_ptr"), Reg("eflags", 32, "i386_eflags")]
) + [Reg("fs_base", 32, "int32", SYSTEM), Reg("gs_base", 32, "int32", SYSTEM),
     Reg("cr0", 32, "x86_cr0", SYSTEM), Reg("cr2", 32, "int32", SYSTEM),
     Reg("cr3", 32, "int32", SYSTEM), Reg("cr4", 32, "x86_cr4", SYSTEM),
     Reg("efer", 64, "x86_efer", SYSTEM)]


class Layout:
    """One target description: the register list, its XML, and g-packet encoding."""

    def __init__(self, architecture: str, regs: list[Reg]):
        self.architecture = architecture
        self.regs = regs
        self.index = {r.name: n for n, r in enumerate(regs)}

    def xml(self) -> str:
        lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
                 '<target version="1.0">', f"  <architecture>{self.architecture}</architecture>"]
        features = []
        for r in self.regs:
            if r.feature not in features:
                features.append(r.feature)
        for feature in features:
            regs = [(n, r) for n, r in enumerate(self.regs) if r.feature == feature]
            lines.append(f'  <feature name="{feature}">')
            flag_regs = {r.type: r.bits // 8 for _, r in regs if r.type in FLAG_TYPES}
            for type_name, size in flag_regs.items():   # a flags type is its register's size
                lines.append(f'    <flags id="{type_name}" size="{size}">')
                lines += [f'      <field name="{f}" start="{bit}" end="{bit}"/>'
                          for f, bit in FLAG_TYPES[type_name]]
                lines.append("    </flags>")
            for n, r in regs:
                group = f' group="{r.group}"' if r.group else ""
                lines.append(f'    <reg name="{r.name}" bitsize="{r.bits}" type="{r.type}" regnum="{n}"{group}/>')
            lines.append("  </feature>")
        lines.append("</target>")
        return "\n".join(lines) + "\n"

    @staticmethod
    def encode(reg: Reg, value: Optional[int]) -> str:
        """Little-endian hex of the register, or x's when it is unavailable."""
        size = reg.bits // 8
        if value is None:
            return "xx" * size
        return (value & ((1 << reg.bits) - 1)).to_bytes(size, "little").hex()

    def read_all(self, values: "RegisterFile") -> str:
        return "".join(self.encode(r, values.get(r.name)) for r in self.regs)

    def write_all(self, values: "RegisterFile", hexdata: str):
        """G: every register the packet covers (x's leave one as it is)."""
        if hexdata.strip("0123456789abcdefABCDEFx"):
            raise ValueError("G: not hexadecimal")
        pos = 0
        for r in self.regs:
            chunk = hexdata[pos:pos + r.bits // 4]
            if len(chunk) < r.bits // 4:
                break
            pos += len(chunk)
            if "x" not in chunk:
                values.set(r.name, int.from_bytes(bytes.fromhex(chunk), "little"))


def _descriptor_segment(raw: bytes, selector: int) -> Segment:
    lo, hi = struct.unpack("<II", raw)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    g = (hi >> 23) & 1
    return Segment(base=(lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000),
                   limit=(limit << 12) | 0xFFF if g else limit, selector=selector,
                   type=(hi >> 8) & 0xF, s=(hi >> 12) & 1, dpl=(hi >> 13) & 3, present=(hi >> 15) & 1,
                   avl=(hi >> 20) & 1, l=(hi >> 21) & 1, db=(hi >> 22) & 1, g=g)


class RegisterFile:
    """A vCPU's registers by gdb's names, read once; set() collects changes that
    commit() writes back (KVM_SET_REGS/SREGS/MSRS).  A segment selector that changes
    loads the descriptor it selects, as a MOV to the segment register would."""

    GPR_ALIASES = {"eax": "rax", "ecx": "rcx", "edx": "rdx", "ebx": "rbx", "esp": "rsp",
                   "ebp": "rbp", "esi": "rsi", "edi": "rdi", "eip": "rip"}

    def __init__(self, vcpu, read_linear: Callable[[int, int], Optional[bytes]]):
        self.vcpu = vcpu
        self.read_linear = read_linear
        self.regs = vcpu.get_regs()
        self.sregs = vcpu.get_sregs()
        self.kernel_gs_base = vcpu.get_msrs([MSR_KERNEL_GS_BASE]).get(MSR_KERNEL_GS_BASE, 0)
        self.dirty = set()

    def get(self, name: str) -> Optional[int]:
        name = self.GPR_ALIASES.get(name, name)
        if hasattr(self.regs, name):
            return getattr(self.regs, name)
        if name == "eflags":
            return self.regs.rflags
        if name in SEGMENT_NAMES:
            return getattr(self.sregs, name).selector
        if name in ("fs_base", "gs_base"):
            return getattr(self.sregs, name[:2]).base
        if name == "k_gs_base":
            return self.kernel_gs_base
        if name in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer"):
            return getattr(self.sregs, name)
        return None    # the x87 registers

    def set(self, name: str, value: int) -> bool:
        """False for a register that cannot be written (or a selector that cannot be loaded)."""
        alias = self.GPR_ALIASES.get(name)
        if alias is not None:   # a 32-bit name keeps the upper half
            value = (getattr(self.regs, alias) & ~0xFFFFFFFF) | (value & 0xFFFFFFFF)
            name = alias
        if hasattr(self.regs, name) or name == "eflags":
            setattr(self.regs, "rflags" if name == "eflags" else name, value)
            self.dirty.add("regs")
        elif name in SEGMENT_NAMES:
            return self._load_segment(name, value & 0xFFFF)
        elif name in ("fs_base", "gs_base"):
            getattr(self.sregs, name[:2]).base = value
            self.dirty.add("sregs")
        elif name in ("cr0", "cr2", "cr3", "cr4", "efer"):
            setattr(self.sregs, name, value)
            self.dirty.add("sregs")
        elif name == "k_gs_base":
            self.kernel_gs_base = value
            self.dirty.add("msrs")
        else:
            return False
        return True

    def _load_segment(self, name: str, selector: int) -> bool:
        seg = getattr(self.sregs, name)
        if selector == seg.selector:
            return True
        if not self.sregs.cr0 & 1 or self.regs.rflags & (1 << 17):    # real or virtual-8086 mode
            seg.selector, seg.base = selector, selector << 4
        elif selector & ~3 == 0:
            if name in ("cs", "ss"):
                return False
            setattr(self.sregs, name, Segment(selector=selector, unusable=1, present=0))
        else:
            table = self.sregs.ldt.base if selector & 4 else self.sregs.gdt.base
            raw = self.read_linear(table + (selector & ~7), 8)
            if raw is None:
                return False
            setattr(self.sregs, name, _descriptor_segment(raw, selector))
        self.dirty.add("sregs")
        return True

    def commit(self):
        if "regs" in self.dirty:
            self.vcpu.set_regs(self.regs)
        if "sregs" in self.dirty:
            self.vcpu.set_sregs(self.sregs)
        if "msrs" in self.dirty:
            self.vcpu.set_msrs({MSR_KERNEL_GS_BASE: self.kernel_gs_base})
        self.dirty.clear()


X86_64 = Layout("i386:x86-64", X86_64_REGS)
I386 = Layout("i386", I386_REGS)
