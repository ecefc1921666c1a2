"""What KVM offers a local APIC in userspace, with small guests: user-space MSR exits
(KVM_CAP_X86_USER_SPACE_MSR, KVM_X86_SET_MSR_FILTER), CR8 through kvm_run.cr8 with
KVM_EXIT_SET_TPR, KVM_GET_TSC_KHZ, and the CPUID bits of the local APIC."""

import time

import pytest

from kvm import KvmError
from kvm.capabilities import KVM_CAP_X86_MSR_FILTER, KVM_CAP_X86_USER_SPACE_MSR
from kvm.constants import (KVM_EXIT_HLT, KVM_EXIT_SET_TPR, KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR, KVM_MSR_EXIT_REASON_FILTER,
                           KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN,
                           KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE)
from kvm.structs import MsrFilter, MsrFilterRange
from kvm_guest import CODE_GPA, KvmGuest

GP_HANDLER = 0x800
APIC_BASE, X2APIC_TPR, TSC_DEADLINE, STAR = 0x1B, 0x808, 0x6E0, 0xC0000081

# The #GP handler counts in EBP and skips the 2-byte RDMSR/WRMSR.
GP_HANDLER_CODE = f"""
.org {GP_HANDLER}
    inc ebp
    add dword ptr [esp + 4], 2
    add esp, 4
    iretd
"""


def msr_guest(body: str) -> KvmGuest:
    g = KvmGuest(body + "\n hlt\n" + GP_HANDLER_CODE)
    g.set_idt_gate(13, CODE_GPA + GP_HANDLER)
    return g


def deny(*indices, flags=KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE):
    return MsrFilter(ranges=[MsrFilterRange(flags=flags, nmsrs=1, base=i, bitmap=b"\0") for i in indices])


def test_capabilities_are_reported():
    g = KvmGuest("hlt")
    assert g.vm.check_extension(KVM_CAP_X86_USER_SPACE_MSR) == 0x7
    assert g.vm.check_extension(KVM_CAP_X86_MSR_FILTER) == 1


def test_filtered_rdmsr_exits_and_userspace_data_reaches_the_guest():
    g = msr_guest(f"mov ecx, {APIC_BASE}\n rdmsr")
    g.vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER)
    g.vm.set_msr_filter(deny(APIC_BASE))
    run = g.run()
    assert run.exit_reason == KVM_EXIT_X86_RDMSR
    assert (run.msr.reason, run.msr.index) == (KVM_MSR_EXIT_REASON_FILTER, APIC_BASE)
    run.msr.data = 0x12345678_FEE00D00
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("rax"), g.reg("rdx"), g.reg("rbp")) == (0xFEE00D00, 0x12345678, 0)


def test_filtered_wrmsr_carries_the_value_and_an_error_makes_it_gp():
    g = msr_guest(f"""
        mov ecx, {APIC_BASE}
        mov eax, 0xfee00c00
        mov edx, 1
        wrmsr
        wrmsr""")
    g.vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER)
    g.vm.set_msr_filter(deny(APIC_BASE, flags=KVM_MSR_FILTER_WRITE))
    before = g.vcpu.get_msrs([APIC_BASE])
    run = g.run()
    assert run.exit_reason == KVM_EXIT_X86_WRMSR
    assert (run.msr.index, run.msr.data) == (APIC_BASE, 0x1_FEE00C00)
    run = g.run()                                   # the first WRMSR completed; the second exits
    assert run.exit_reason == KVM_EXIT_X86_WRMSR and g.reg("rbp") == 0
    run.msr.error = 1
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbp") == 1                        # #GP for the second
    assert g.vcpu.get_msrs([APIC_BASE]) == before   # KVM's own value was not touched


def test_unknown_msr_exits_only_when_its_reason_is_enabled():
    g = msr_guest(f"mov ecx, {X2APIC_TPR}\n rdmsr\n mov ecx, {TSC_DEADLINE}\n xor eax, eax\n wrmsr")
    g.vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_UNKNOWN)
    run = g.run()
    assert (run.exit_reason, run.msr.reason, run.msr.index) == \
        (KVM_EXIT_X86_RDMSR, KVM_MSR_EXIT_REASON_UNKNOWN, X2APIC_TPR)
    run.msr.data = 0x20
    run = g.run()
    assert (run.exit_reason, run.msr.index, run.msr.data) == (KVM_EXIT_X86_WRMSR, TSC_DEADLINE, 0)
    assert g.reg("rax") == 0 and g.run().exit_reason == KVM_EXIT_HLT and g.reg("rbp") == 0


def test_without_user_space_msr_a_denied_or_unknown_msr_is_gp():
    g = msr_guest(f"mov ecx, {STAR}\n rdmsr\n mov ecx, {X2APIC_TPR}\n rdmsr")
    g.vm.set_msr_filter(deny(STAR))
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbp") == 2


def test_invalid_value_of_a_known_msr_exits_as_inval():
    g = msr_guest(f"mov ecx, {APIC_BASE}\n mov eax, 0xfee00901\n xor edx, edx\n wrmsr")   # bit 0 is reserved
    g.vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_UNKNOWN)
    run = g.run()
    assert (run.exit_reason, run.msr.reason, run.msr.index) == \
        (KVM_EXIT_X86_WRMSR, KVM_MSR_EXIT_REASON_INVAL, APIC_BASE)


def test_default_deny_filter_and_allow_bits():
    g = msr_guest(f"mov ecx, {STAR}\n rdmsr\n mov ecx, {STAR + 1}\n rdmsr")
    g.vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER)
    g.vm.set_msr_filter(MsrFilter(flags=KVM_MSR_FILTER_DEFAULT_DENY, ranges=[
        MsrFilterRange(flags=KVM_MSR_FILTER_READ, nmsrs=2, base=STAR, bitmap=b"\x01")]))
    run = g.run()                                   # STAR allowed by its bit, STAR + 1 denied
    assert (run.exit_reason, run.msr.index) == (KVM_EXIT_X86_RDMSR, STAR + 1)
    g.vm.set_msr_filter(None)
    assert g.run().exit_reason == KVM_EXIT_HLT


def test_userspace_msr_access_is_never_filtered():
    g = KvmGuest("hlt")
    g.vm.set_msr_filter(MsrFilter(flags=KVM_MSR_FILTER_DEFAULT_DENY))
    assert g.vcpu.set_msrs({APIC_BASE: 0xFEE00900}) == 1
    assert g.vcpu.get_msrs([APIC_BASE]) == {APIC_BASE: 0xFEE00900}


@pytest.mark.parametrize("bad", [
    MsrFilter(flags=2),
    MsrFilter(ranges=[MsrFilterRange(flags=0, nmsrs=1, base=0, bitmap=b"\0")]),
    MsrFilter(ranges=[MsrFilterRange(flags=4, nmsrs=1, base=0, bitmap=b"\0")]),
    MsrFilter(ranges=[MsrFilterRange(flags=1, nmsrs=9, base=0, bitmap=b"\0")]),
    MsrFilter(ranges=[MsrFilterRange(flags=1, nmsrs=1, base=i, bitmap=b"\0") for i in range(17)]),
])
def test_invalid_filters_are_refused(bad):
    g = KvmGuest("hlt")
    with pytest.raises(KvmError):
        g.vm.set_msr_filter(bad)


def test_enable_cap_refuses_unknown_reasons_and_capabilities():
    g = KvmGuest("hlt")
    with pytest.raises(KvmError):
        g.vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, 8)
    with pytest.raises(KvmError):
        g.vm.enable_cap(KVM_CAP_X86_MSR_FILTER, 1)


def test_cpuid_apic_bit_follows_the_global_enable_bit():
    g = KvmGuest("mov eax, 1\n cpuid\n mov esi, edx\n mov edi, ecx\n hlt")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rsi") & (1 << 9) and g.reg("rdi") & (1 << 21) and g.reg("rdi") & (1 << 24)
    g = KvmGuest("mov eax, 1\n cpuid\n mov esi, edx\n hlt")
    g.vcpu.set_msrs({APIC_BASE: 0xFEE00100})       # globally disabled
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert not g.reg("rsi") & (1 << 9)


def test_tsc_khz_is_the_rate_guests_see():
    g = KvmGuest("hlt")
    khz = g.vcpu.get_tsc_khz()
    t0, n0 = g.vcpu.get_msrs([0x10])[0x10], time.perf_counter_ns()
    time.sleep(0.05)
    t1, n1 = g.vcpu.get_msrs([0x10])[0x10], time.perf_counter_ns()
    assert abs((t1 - t0) * 1e6 / (n1 - n0) - khz) < khz * 0.02


def test_cr8_comes_from_kvm_run_and_lowering_it_exits_with_set_tpr():
    g = KvmGuest("""
        mov rbx, cr8
        mov rax, 9
        mov cr8, rax
        mov rsi, cr8
        mov rax, 2
        mov cr8, rax
        mov rcx, cr8
        hlt""", mode="long64")
    g.vcpu.kvm_run.cr8 = 7
    run = g.run()
    assert run.exit_reason == KVM_EXIT_SET_TPR and run.cr8 == 2
    assert (g.reg("rbx"), g.reg("rsi")) == (7, 9)
    assert g.vcpu.get_sregs().cr8 == 2
    run.cr8 = 4                                     # userspace's TPR wins on the next run
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rcx") == 4
