"""The emulated processor under test: one long-lived guest, entered with VMLAUNCH/VMRESUME
directly (tests/silicon.py's RawGuest), whose snippet region sits at the same
guest-linear addresses as the native runner's, so that the two runs see identical
pointers.  Every exception VM-exits (exception bitmap all ones), so a fault is an
outcome of the case instead of a trip through a guest IDT."""

from __future__ import annotations

import mmap

from kvm import vmx
from kvm._silicon import ffi, lib
from kvm.structs import DTable, Segment
from differential import layout
from silicon import RawGuest

EXIT_HLT = 12
EXIT_EXCEPTION = 0

MODE_LONG64 = "long64"        # IA-32e mode, 64-bit code segment
MODE_COMPAT32 = "compat32"    # IA-32e mode, 32-bit code segment (as the native 32-bit runs)
MODE_PROT32 = "prot32"        # legacy protected mode, paging off

# guest-physical layout of the low slot: the paging structures for long mode
PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000
PTE_P_RW_US = 0x7
PTE_RW = 0x2
CR0_PE, CR0_MP, CR0_ET, CR0_NE, CR0_WP, CR0_PG = 0x1, 0x2, 0x10, 0x20, 0x10000, 0x80000000
CR4_PAE, CR4_OSFXSR, CR4_OSXMMEXCPT = 0x20, 0x200, 0x400
EFER_LME, EFER_LMA = 0x100, 0x400
ARITH_DF = 0xCD5   # CF PF AF ZF SF DF OF
IF_RESERVED = 0x202   # IF set as in user mode (PUSHF sees the same), and the fixed bit 1


class EmulatedCpu:
    """The silicon running snippets at layout.CODE with data at layout.DATA."""

    def __init__(self):
        region, region_size = layout.REGION, layout.REGION_SIZE
        self.region, self.code, self.data = region, layout.CODE, layout.DATA
        self.guest = RawGuest(b"", ram_size=0x10000, populate=False)
        vm, vcpu = self.guest.vm, self.guest.vcpu
        self.window = mmap.mmap(-1, region_size)
        vm.set_user_memory_region(1, region, region_size, self.window)
        slot = vm.memslots.get(1)
        self.code_hpa = slot.hpa_of(self.code)
        for page in range(region, region + region_size, 4096):
            vm.ept.set_leaf(page, slot.hpa_of(page) | vmx.VMX_EPT_RWX_MASK | vmx.VMX_EPT_MT_WB)
        for page in (PML4, PDPT, PD, PT):
            self.guest.map(page, vmx.VMX_EPT_RWX_MASK)
        # identity-map the region's 2 MiB with 4 KiB pages, the guard page read-only (with
        # CR0.WP, supervisor writes to it fault as user writes do natively)
        self._write64(PML4 + 8 * ((region >> 39) & 511), PDPT | PTE_P_RW_US)
        self._write64(PDPT + 8 * ((region >> 30) & 511), PD | PTE_P_RW_US)
        self._write64(PD + 8 * ((region >> 21) & 511), PT | PTE_P_RW_US)
        for page in range(region, region + (2 << 20), 4096):
            entry = page | PTE_P_RW_US
            self._write64(PT + 8 * ((page >> 12) & 511), entry & ~PTE_RW if page == layout.GUARD else entry)
        vcpu.vmwrite(vmx.EXCEPTION_BITMAP, 0xFFFFFFFF)
        vcpu.vmwrite(vmx.PAGE_FAULT_ERROR_CODE_MASK, 0)
        vcpu.vmwrite(vmx.PAGE_FAULT_ERROR_CODE_MATCH, 0)
        self.cpu = vcpu.cpu
        self.silicon = vm.hostmem.silicon
        self._gprs = ffi.new("uint64_t[16]")
        self._u64 = ffi.new("uint64_t *")
        self.mode = None

    def _write64(self, gpa: int, value: int):
        self.guest.ram[gpa:gpa + 8] = value.to_bytes(8, "little")

    def set_mode(self, mode: str):
        if mode == self.mode:
            return
        vcpu = self.guest.vcpu
        s = vcpu.get_sregs()
        long_mode = mode != MODE_PROT32
        s.cs = Segment(base=0, limit=0xFFFFFFFF, selector=0x08, type=0xB, present=1, s=1, g=1,
                       l=int(mode == MODE_LONG64), db=int(mode != MODE_LONG64))
        data = Segment(base=0, limit=0xFFFFFFFF, selector=0x10, type=0x3, present=1, s=1, g=1, db=1)
        s.ds = s.es = s.fs = s.gs = s.ss = data
        s.tr = Segment(base=0, limit=0x67, selector=0x18, type=0xB, present=1, s=0)
        s.ldt = Segment(unusable=1, type=2, s=0, present=0)
        s.gdt = DTable(0, 0xFFFF)
        s.idt = DTable(0, 0xFFFF)
        # as Linux runs user code: x87 errors as #MF, SSE enabled with #XM
        s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | (CR0_WP | CR0_PG if long_mode else 0)
        s.cr3 = PML4 if long_mode else 0
        s.cr4 = CR4_OSFXSR | CR4_OSXMMEXCPT | (CR4_PAE if long_mode else 0)
        s.efer = EFER_LME | EFER_LMA if long_mode else 0
        vcpu.set_sregs(s)
        self.guest.vm.flush_tlbs()
        self.mode = mode

    def _vmread(self, field: int) -> int:
        lib.vmx_vmread(self.cpu, field, self._u64)
        return self._u64[0]

    def run(self, mode: str, code: bytes, regs: list[int], flags: int, mem: bytes, compiled: bool = False):
        """Run one case to the HLT after the snippet, interpreted or compiled to host
        code at its first run.  Returns (16 GPRs, RFLAGS, data buffer, end): end is None
        at that HLT, ("fault", vector, rip) for an exception, or ("other", description)."""
        self.set_mode(mode)
        cpu, window = self.cpu, self.window
        lib.cpu_set_jit_threshold(cpu, 1 if compiled else 0)
        code_off = self.code - self.region
        window[code_off:code_off + len(code) + 1] = code + b"\xf4"
        lib.silicon_invalidate_code(self.silicon, self.code_hpa, len(code) + 1)
        data_off = self.data - self.region
        window[data_off:data_off + len(mem)] = mem
        self._gprs[0:16] = regs
        lib.cpu_set_gprs(cpu, self._gprs)
        lib.vmx_vmwrite(cpu, vmx.GUEST_RSP, regs[4])
        lib.vmx_vmwrite(cpu, vmx.GUEST_RIP, self.code)
        lib.vmx_vmwrite(cpu, vmx.GUEST_RFLAGS, (flags & ARITH_DF) | IF_RESERVED)
        rc = self.guest.enter()
        if rc != vmx.VMX_EXITED:
            raise RuntimeError(f"VM entry failed: {rc}")
        reason = self._vmread(vmx.VM_EXIT_REASON)
        lib.cpu_get_gprs(cpu, self._gprs)
        out = list(self._gprs)
        out[4] = self._vmread(vmx.GUEST_RSP)
        rflags = self._vmread(vmx.GUEST_RFLAGS)
        rip = self._vmread(vmx.GUEST_RIP)
        end = None
        if reason == EXIT_EXCEPTION:
            end = ("fault", self._vmread(vmx.VM_EXIT_INTR_INFO) & 0xFF, rip)
        elif reason != EXIT_HLT:
            end = ("other", f"VM exit {vmx.exit_reason_name(reason)} at rip {rip:#x}")
        elif rip != self.code + len(code):
            end = ("other", f"HLT at rip {rip:#x}, expected {self.code + len(code):#x}")
        return out, rflags, window[data_off:data_off + len(mem)], end
