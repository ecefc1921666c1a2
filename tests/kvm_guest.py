"""Guests for tests of the KVM API: a VM with RAM from guest-physical 0, one vCPU driven
through VCPU.run(), and code (tests/asm.py) at CODE_GPA in real mode, flat 32-bit
protected mode (optionally with 4 KiB paging) or 64-bit mode (identity-mapped with
4 KiB pages for the first 2 MiB and 2 MiB pages above).  A helper module, not tests."""

import mmap
import struct
import threading

from asm import assemble
from devicemodel.entry_state import set_protected_mode_entry
from kvm import Kvm
from kvm._silicon import lib
from kvm.structs import DTable, Segment

CODE_GPA = 0x1000
GDT_GPA = 0x10000
IDT_GPA = 0x11000
PML4_GPA, PDPT_GPA, PD_GPA, PT_GPA = 0x20000, 0x21000, 0x22000, 0x23000   # 64-bit
PD32_GPA, PT32_GPA = 0x30000, 0x31000                                        # 32-bit
STACK_TOP = 0x80000
DATA_GPA = 0x100000
TSS_GPA = 0x12000
CODE32, DATA32, CODE64 = 0x10, 0x18, 0x08
USER_CODE32, USER_DATA32, TSS32 = 0x23, 0x2B, 0x30

PTE_P, PTE_W, PTE_U, PTE_PS = 1, 2, 4, 0x80


def _descriptor(base, limit, access, flags):
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), base >> 24)


class KvmGuest:
    # the run of a block that compiles it to host code (cpu_set_jit_threshold; 0 never,
    # 1 at once), or None for the silicon's default
    jit_threshold = None

    def __init__(self, source: str, mode: str = "prot32", ram_size: int = 4 << 20, paging: bool = False):
        self.mode = mode
        self.kvm = Kvm()
        self.vm = self.kvm.create_vm()
        self.ram = mmap.mmap(-1, ram_size)
        self.vm.set_user_memory_region(0, 0, ram_size, self.ram)
        self.vcpu = self.vm.create_vcpu(0)
        if self.jit_threshold is not None:
            lib.cpu_set_jit_threshold(self.vcpu.cpu, self.jit_threshold)
        bits = {"real16": 16, "prot32": 32, "long64": 64}[mode]
        self.code = assemble(source, bits, CODE_GPA)
        self.write(CODE_GPA, self.code)
        self.write(GDT_GPA, bytes(8) + _descriptor(0, 0xFFFFF, 0x9B, 0xA) +
                   _descriptor(0, 0xFFFFF, 0x9B, 0xC) + _descriptor(0, 0xFFFFF, 0x93, 0xC) +
                   _descriptor(0, 0xFFFFF, 0xFB, 0xC) + _descriptor(0, 0xFFFFF, 0xF3, 0xC) +
                   _descriptor(TSS_GPA, 0x67, 0x8B, 0))
        if mode == "real16":
            self._enter_real()
        else:
            set_protected_mode_entry(self.vcpu, CODE_GPA, 0, 0)
            s = self.vcpu.get_sregs()
            s.gdt = DTable(GDT_GPA, 0x37)
            s.idt = DTable(IDT_GPA, 0xFFF if mode == "long64" else 0x7FF)
            if mode == "long64":
                self._long_mode(s)
            elif paging:
                self._paging32(s)
            self.vcpu.set_sregs(s)
        regs = self.vcpu.get_regs()
        regs.rsp = STACK_TOP
        self.vcpu.set_regs(regs)

    def _enter_real(self):
        s = self.vcpu.get_sregs()
        s.cs = Segment(base=0, limit=0xFFFF, selector=0, type=0xB, s=1, present=1)
        self.vcpu.set_sregs(s)
        regs = self.vcpu.get_regs()
        regs.rip = CODE_GPA
        self.vcpu.set_regs(regs)

    def _paging32(self, s):
        """Non-PAE 32-bit paging: 4 KiB pages identity-mapping the first 4 MiB."""
        self.write(PD32_GPA, struct.pack("<I", PT32_GPA | PTE_P | PTE_W | PTE_U))
        self.write(PT32_GPA, b"".join(struct.pack("<I", (i << 12) | PTE_P | PTE_W | PTE_U)
                                      for i in range(1024)))
        s.cr3 = PD32_GPA
        s.cr0 |= 0x80010000    # PG WP

    def _long_mode(self, s):
        self.write(PML4_GPA, struct.pack("<Q", PDPT_GPA | PTE_P | PTE_W | PTE_U))
        self.write(PDPT_GPA, struct.pack("<Q", PD_GPA | PTE_P | PTE_W | PTE_U))
        self.write(PD_GPA, struct.pack("<Q", PT_GPA | PTE_P | PTE_W | PTE_U) +
                   b"".join(struct.pack("<Q", (i << 21) | PTE_P | PTE_W | PTE_U | PTE_PS)
                            for i in range(1, 512)))
        self.write(PT_GPA, b"".join(struct.pack("<Q", (i << 12) | PTE_P | PTE_W | PTE_U)
                                    for i in range(512)))
        s.cr3 = PML4_GPA
        s.cr4 = 0x20           # PAE
        s.cr0 |= 0x80010000    # PG WP
        s.efer = 0x500         # LME LMA
        s.cs = Segment(base=0, limit=0xFFFFFFFF, selector=CODE64, type=0xB, present=1, s=1, l=1, g=1)

    def pte_gpa(self, lin: int) -> int:
        """Where the 4 KiB page-table entry for `lin` lives (first 2 MiB / 4 MiB only)."""
        if self.mode == "long64":
            return PT_GPA + (lin >> 12) * 8
        return PT32_GPA + (lin >> 12) * 4

    def unmap(self, lin: int):
        self.write(self.pte_gpa(lin), bytes(8 if self.mode == "long64" else 4))

    def set_pte_flags(self, lin: int, flags: int):
        fmt = "<Q" if self.mode == "long64" else "<I"
        self.write(self.pte_gpa(lin), struct.pack(fmt, (lin & ~0xFFF) | flags))

    def enter_user_mode(self, kernel_stack: int):
        """CPL 3 with flat ring-3 segments; interrupts switch to `kernel_stack` (32-bit TSS)."""
        self.write(TSS_GPA + 4, struct.pack("<II", kernel_stack, DATA32))   # ESP0, SS0
        s = self.vcpu.get_sregs()
        s.cs = Segment(base=0, limit=0xFFFFFFFF, selector=USER_CODE32, type=0xB, present=1, dpl=3, db=1, g=1)
        data = Segment(base=0, limit=0xFFFFFFFF, selector=USER_DATA32, type=3, present=1, dpl=3, db=1, g=1)
        s.ds = s.es = s.ss = data
        s.tr = Segment(base=TSS_GPA, limit=0x67, selector=TSS32, type=0xB, s=0, present=1)
        self.vcpu.set_sregs(s)

    def set_idt_gate(self, vector: int, handler: int):
        if self.mode == "long64":
            gate = struct.pack("<HHBBHIL", handler & 0xFFFF, CODE64, 0, 0x8E, (handler >> 16) & 0xFFFF,
                               handler >> 32, 0)
            self.write(IDT_GPA + vector * 16, gate)
        else:
            gate = struct.pack("<HHBBH", handler & 0xFFFF, CODE32, 0, 0x8E, handler >> 16)
            self.write(IDT_GPA + vector * 8, gate)

    def write(self, gpa: int, data: bytes):
        self.ram[gpa:gpa + len(data)] = data
        self.vm.guest_memory_written(gpa, len(data))

    def read(self, gpa: int, size: int) -> bytes:
        return bytes(self.ram[gpa:gpa + size])

    def set(self, **regs):
        r = self.vcpu.get_regs()
        for name, value in regs.items():
            setattr(r, name, value)
        self.vcpu.set_regs(r)

    def reg(self, name: str) -> int:
        return getattr(self.vcpu.get_regs(), name)

    def run(self, watchdog: float = 10.0):
        """VCPU.run(); a guest that runs away is kicked out (KVM_EXIT_INTR) after `watchdog` s."""
        timer = threading.Timer(watchdog, self.vcpu.kick)
        timer.start()
        try:
            return self.vcpu.run()
        finally:
            timer.cancel()
