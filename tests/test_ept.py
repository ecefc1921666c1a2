"""The EPT walk: permissions, violations with the SDM's exit qualification (Vol. 3
Table 28-7), misconfigurations, large pages and accessed/dirty flags."""

import struct

from kvm import vmx
from silicon import CODE_GPA, RawGuest

MOV_EAX_FROM = b"\xa1"     # mov eax, [moffs32]
MOV_EAX_TO = b"\xa3"       # mov [moffs32], eax
HLT = b"\xf4"
R, W, X = vmx.VMX_EPT_READABLE_MASK, vmx.VMX_EPT_WRITABLE_MASK, vmx.VMX_EPT_EXECUTABLE_MASK
GLA_VALID = vmx.EPT_VIOLATION_GVA_IS_VALID
TRANSLATED = vmx.EPT_VIOLATION_GVA_TRANSLATED


def addr(a):
    return struct.pack("<I", a)


def test_read_of_unmapped_page():
    g = RawGuest(MOV_EAX_FROM + addr(0x5004) + HLT)
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.qualification() == vmx.EPT_VIOLATION_ACC_READ | GLA_VALID | TRANSLATED
    assert g.read(vmx.GUEST_PHYSICAL_ADDRESS) == 0x5004
    assert g.read(vmx.GUEST_LINEAR_ADDRESS) == 0x5004
    assert g.read(vmx.GUEST_RIP) == CODE_GPA          # fault-like: the access restarts


def test_write_to_read_only_page():
    g = RawGuest(MOV_EAX_TO + addr(0x6010) + HLT)
    g.map(0x6000, R)
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.qualification() == (vmx.EPT_VIOLATION_ACC_WRITE | vmx.EPT_VIOLATION_READABLE |
                                 GLA_VALID | TRANSLATED)
    assert g.read(vmx.GUEST_PHYSICAL_ADDRESS) == 0x6010


def test_fetch_from_non_executable_page():
    jmp = b"\xe9" + struct.pack("<i", 0x7000 - (CODE_GPA + 5))
    g = RawGuest(jmp)
    g.map(0x7000, R | W)
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.qualification() == (vmx.EPT_VIOLATION_ACC_INSTR | vmx.EPT_VIOLATION_READABLE |
                                 vmx.EPT_VIOLATION_WRITABLE | GLA_VALID | TRANSLATED)
    assert g.read(vmx.GUEST_PHYSICAL_ADDRESS) == 0x7000
    assert g.read(vmx.GUEST_RIP) == 0x7000


def test_execute_only_page_runs_but_cannot_be_read():
    # code at 0x8000 (execute-only) reads its own first byte
    g = RawGuest(b"\xe9" + struct.pack("<i", 0x8000 - (CODE_GPA + 5)))
    g.ram[0x8000:0x8005] = MOV_EAX_FROM + addr(0x8000)
    g.map(0x8000, X)
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.read(vmx.GUEST_RIP) == 0x8000       # the fetch succeeded, the read did not
    assert g.qualification() == (vmx.EPT_VIOLATION_ACC_READ | vmx.EPT_VIOLATION_EXECUTABLE |
                                 GLA_VALID | TRANSLATED)


def test_write_without_read_is_a_misconfiguration():
    g = RawGuest(MOV_EAX_FROM + addr(0x9000) + HLT)
    g.map(0x9000, W)
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_MISCONFIG
    assert g.read(vmx.GUEST_PHYSICAL_ADDRESS) == 0x9000


def test_invalid_memory_type_is_a_misconfiguration():
    g = RawGuest(MOV_EAX_FROM + addr(0x9000) + HLT)
    g.map(0x9000, R, extra=2 << 3)   # memory type 2 is reserved
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_MISCONFIG


def test_mapped_pages_read_and_write_and_set_accessed_dirty():
    g = RawGuest(MOV_EAX_FROM + addr(0x5000) + MOV_EAX_TO + addr(0x6000) + HLT)
    g.ram[0x5000:0x5004] = struct.pack("<I", 0xCAFEF00D)
    g.map(0x5000, R)
    g.map(0x6000, R | W)
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    assert g.ram[0x6000:0x6004] == struct.pack("<I", 0xCAFEF00D)
    assert g.leaf(0x5000) & vmx.VMX_EPT_ACCESS_BIT
    assert not g.leaf(0x5000) & vmx.VMX_EPT_DIRTY_BIT
    assert g.leaf(0x6000) & vmx.VMX_EPT_DIRTY_BIT


def test_two_megabyte_page():
    g = RawGuest(MOV_EAX_FROM + addr(0x20_0123) + HLT)
    g.ram[0x20_0123:0x20_0127] = struct.pack("<I", 0x12345678)
    # a PDE mapping guest 2 MiB..4 MiB as one large page
    hostmem, ept = g.vm.hostmem, g.vm.ept
    pdpt = hostmem.read64(ept.root) & ~0xFFF
    pd = hostmem.read64(pdpt) & ~0xFFF
    hostmem.write64(pd + 8, g.slot.hpa_of(0x20_0000) | R | W | X | vmx.VMX_EPT_LARGE | vmx.VMX_EPT_MT_WB)
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    assert g.vcpu.get_regs().rax == 0x12345678
