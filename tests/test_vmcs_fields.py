"""VMCS field access through VMREAD/VMWRITE: widths, HIGH halves, read-only exit
information, unsupported encodings and the VMX instruction outcomes (SDM Vol. 3 24.11,
30.3 and 31.4)."""

import pytest

from kvm import Kvm, vmx
from kvm._silicon import ffi, lib

REVISION = None


@pytest.fixture
def root():
    """A logical processor in VMX root operation with a current VMCS."""
    kvm = Kvm()
    cpu = ffi.gc(lib.cpu_new(kvm.hostmem.silicon, 0), lib.cpu_free)
    value = ffi.new("uint64_t *")
    assert lib.cpu_rdmsr(cpu, vmx.MSR_IA32_VMX_BASIC, value) == 0
    revision = value[0] & 0x7FFFFFFF
    pages = {}
    for name in ("vmxon", "vmcs", "other"):
        pages[name] = kvm.hostmem.alloc_page()
        kvm.hostmem.write_bytes(pages[name], revision.to_bytes(4, "little"))
    assert lib.vmx_vmxon(cpu, pages["vmxon"]) == vmx.VMX_SUCCEED
    assert lib.vmx_vmclear(cpu, pages["vmcs"]) == vmx.VMX_SUCCEED
    assert lib.vmx_vmptrld(cpu, pages["vmcs"]) == vmx.VMX_SUCCEED
    return kvm, cpu, pages


def vmread(cpu, field):
    out = ffi.new("uint64_t *")
    rc = lib.vmx_vmread(cpu, field, out)
    return rc, out[0]


def instruction_error(cpu):
    return vmread(cpu, vmx.VM_INSTRUCTION_ERROR)[1]


@pytest.mark.parametrize("field,written,read_back", [
    (vmx.GUEST_CS_SELECTOR, 0x12345678, 0x5678),                    # 16-bit
    (vmx.CPU_BASED_VM_EXEC_CONTROL, 0x1_2345_6789, 0x2345_6789),    # 32-bit
    (vmx.EPT_POINTER, 0x1234_5678_9ABC_D000, 0x1234_5678_9ABC_D000),  # 64-bit
    (vmx.GUEST_RIP, 0xFFFF_FFFF_8100_0000, 0xFFFF_FFFF_8100_0000),    # natural width
])
def test_field_widths(root, field, written, read_back):
    _, cpu, _ = root
    assert lib.vmx_vmwrite(cpu, field, written) == vmx.VMX_SUCCEED
    assert vmread(cpu, field) == (vmx.VMX_SUCCEED, read_back)


def test_64bit_field_high_half(root):
    _, cpu, _ = root
    lib.vmx_vmwrite(cpu, vmx.TSC_OFFSET, 0x1111_2222_3333_4444)
    assert vmread(cpu, vmx.TSC_OFFSET + 1) == (vmx.VMX_SUCCEED, 0x1111_2222)
    assert lib.vmx_vmwrite(cpu, vmx.TSC_OFFSET + 1, 0xAAAA_BBBB) == vmx.VMX_SUCCEED
    assert vmread(cpu, vmx.TSC_OFFSET)[1] == 0xAAAA_BBBB_3333_4444


@pytest.mark.parametrize("field", [vmx.VM_EXIT_REASON, vmx.EXIT_QUALIFICATION,
                                   vmx.GUEST_PHYSICAL_ADDRESS, vmx.VM_INSTRUCTION_ERROR,
                                   vmx.IDT_VECTORING_INFO_FIELD, vmx.GUEST_LINEAR_ADDRESS])
def test_exit_information_fields_are_read_only(root, field):
    _, cpu, _ = root
    before = vmread(cpu, field)[1]
    assert lib.vmx_vmwrite(cpu, field, 0x1234) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 13      # VMWRITE to a read-only VMCS component
    if field != vmx.VM_INSTRUCTION_ERROR:
        assert vmread(cpu, field)[1] == before


@pytest.mark.parametrize("encoding", [0x0001, 0x4001, 0x6001, 0x7FFF, 0x2FFE, 1 << 32])
def test_unsupported_encodings_fail(root, encoding):
    _, cpu, _ = root
    assert vmread(cpu, encoding)[0] == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 12
    assert lib.vmx_vmwrite(cpu, encoding, 0) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 12


def test_no_current_vmcs_is_fail_invalid(root):
    _, cpu, pages = root
    assert lib.vmx_vmclear(cpu, pages["vmcs"]) == vmx.VMX_SUCCEED   # no longer current
    assert vmread(cpu, vmx.GUEST_RIP)[0] == vmx.VMX_FAIL_INVALID
    assert lib.vmx_vmwrite(cpu, vmx.GUEST_RIP, 0) == vmx.VMX_FAIL_INVALID
    assert lib.vmx_vmlaunch(cpu) == vmx.VMX_FAIL_INVALID


def test_vmptrld_checks(root):
    kvm, cpu, pages = root
    assert lib.vmx_vmptrld(cpu, pages["other"] + 8) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 9        # not 4 KiB aligned
    assert lib.vmx_vmptrld(cpu, pages["vmxon"]) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 10       # the VMXON pointer
    bad = kvm.hostmem.alloc_page()
    kvm.hostmem.write_bytes(bad, (0x7777).to_bytes(4, "little"))
    assert lib.vmx_vmptrld(cpu, bad) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 11       # wrong VMCS revision identifier
    assert lib.vmx_vmclear(cpu, pages["vmxon"]) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 3        # VMCLEAR with the VMXON pointer


def test_launch_state_rules(root):
    _, cpu, pages = root
    assert lib.vmx_vmresume(cpu) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 5        # VMRESUME with a non-launched VMCS
    # with all-zero controls VM entry fails its control checks: VMfailValid(7)
    assert lib.vmx_vmlaunch(cpu) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 7


def test_vmxon_twice(root):
    _, cpu, pages = root
    assert lib.vmx_vmxon(cpu, pages["vmxon"]) == vmx.VMX_FAIL_VALID
    assert instruction_error(cpu) == 15       # VMXON executed in VMX root operation


def test_field_names_follow_kvm():
    assert vmx.FIELDS["GUEST_RIP"] == 0x681E
    assert vmx.FIELDS["VM_EXIT_REASON"] == 0x4402
    assert vmx.FIELDS["EPT_POINTER"] == 0x201A
    assert vmx.FIELD_NAMES[0x6C16] == "HOST_RIP"
