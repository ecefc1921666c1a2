"""An instruction that crosses into a page the EPT does not map yet: the fetch exits
(EPT violation), the hypervisor maps the page, and the instruction then runs. Linux's
PVH boot does this (kvm/ populates EPT on demand) and once crashed the host process:
the half-built translation block of the exiting fetch stayed in the block cache."""

import struct

from kvm import vmx
from silicon import CODE_GPA, RawGuest

CROSSING = 0x1FFE     # add eax, 1 (83 c0 01): two bytes on one page, one on the next


def test_fetch_across_into_an_unmapped_page_exits_then_runs():
    jmp = b"\xe9" + struct.pack("<i", CROSSING - (CODE_GPA + 5))
    g = RawGuest(jmp)
    g.ram[CROSSING:CROSSING + 4] = b"\x83\xc0\x01\xf4"        # add eax, 1; hlt
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.read(vmx.GUEST_PHYSICAL_ADDRESS) == 0x2000
    assert g.read(vmx.GUEST_RIP) == CROSSING
    g.map(0x2000, vmx.VMX_EPT_RWX_MASK)
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    assert g.vcpu.get_regs().rax == 1
