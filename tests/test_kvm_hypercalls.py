"""VMCALL as KVM handles it (kvm/hypercall.py): the in-kernel hypercalls' results in RAX,
-KVM_EPERM from CPL 3, and KVM_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE once userspace
enabled it with KVM_CAP_EXIT_HYPERCALL."""

import struct
import time

import pytest

from kvm import KvmError
from kvm.capabilities import KVM_CAP_EXIT_HYPERCALL
from kvm.constants import KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_LONG_MODE, KVM_EXIT_SHUTDOWN
from kvm.hypercall import (KVM_EFAULT, KVM_EINVAL, KVM_ENOSYS, KVM_EOPNOTSUPP, KVM_HC_CLOCK_PAIRING,
                           KVM_HC_KICK_CPU, KVM_HC_MAP_GPA_RANGE, KVM_HC_SCHED_YIELD, KVM_HC_SEND_IPI,
                           KVM_HC_VAPIC_POLL_IRQ)
from kvm_guest import CODE_GPA, DATA_GPA, KvmGuest

U32, U64 = (1 << 32) - 1, (1 << 64) - 1


def hypercall(nr, *args, mode="prot32"):
    regs = ("ebx", "ecx", "edx", "esi") if mode == "prot32" else ("rbx", "rcx", "rdx", "rsi")
    setup = "\n".join(f"mov {reg}, {value}" for reg, value in zip(regs, args))
    acc = "eax" if mode == "prot32" else "rax"
    return KvmGuest(f"mov {acc}, {nr}\n{setup}\nvmcall\nhlt", mode=mode)


@pytest.mark.parametrize("nr, result", [
    (KVM_HC_VAPIC_POLL_IRQ, 0), (KVM_HC_KICK_CPU, 0), (KVM_HC_SCHED_YIELD, 0),
    (KVM_HC_SEND_IPI, -KVM_EOPNOTSUPP), (KVM_HC_MAP_GPA_RANGE, -KVM_ENOSYS), (0x77, -KVM_ENOSYS),
])
def test_hypercalls_kvm_answers_itself(nr, result):
    g = hypercall(nr, 0x1000, 1, 0)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == result & U32
    assert g.reg("rip") == CODE_GPA + len(g.code)          # VMCALL skipped, HLT done


def test_a_64bit_guest_gets_64bit_results():
    g = hypercall(0x77, mode="long64")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == -KVM_ENOSYS & U64


def test_hypercalls_from_user_mode_are_refused():
    g = KvmGuest("""
        mov eax, 1
        vmcall
        int3""")
    g.enter_user_mode(kernel_stack=0x90000)
    assert g.run().exit_reason == KVM_EXIT_SHUTDOWN            # int3 with no handler
    assert g.reg("rax") == U32                                 # -KVM_EPERM (-1)


def test_map_gpa_range_exits_to_userspace_once_enabled():
    g = hypercall(KVM_HC_MAP_GPA_RANGE, 0x200000, 16, 0x10, mode="long64")
    with pytest.raises(KvmError, match="EINVAL"):
        g.vm.enable_cap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_SEND_IPI)
    g.vm.enable_cap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
    assert g.vm.check_extension(KVM_CAP_EXIT_HYPERCALL) == 1 << KVM_HC_MAP_GPA_RANGE
    run = g.run()
    assert run.exit_reason == KVM_EXIT_HYPERCALL
    hc = run.hypercall
    assert (hc.nr, hc.args[:3], hc.flags) == (KVM_HC_MAP_GPA_RANGE, [0x200000, 16, 0x10], KVM_EXIT_HYPERCALL_LONG_MODE)
    assert hc.longmode
    assert g.reg("rip") < CODE_GPA + len(g.code) - 1         # still at the VMCALL
    hc.ret = 0x1234_5678_9ABC
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 0x1234_5678_9ABC


def test_map_gpa_range_from_32bit_code_returns_32_bits():
    g = hypercall(KVM_HC_MAP_GPA_RANGE, 0x200000, 1, 0)
    g.vm.enable_cap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
    run = g.run()
    assert run.exit_reason == KVM_EXIT_HYPERCALL and run.hypercall.flags == 0
    run.hypercall.ret = -5 & U64
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == -5 & U32


@pytest.mark.parametrize("gpa, pages", [(0x200800, 1), (0x200000, 0), (0x200000, U64)])
def test_map_gpa_range_checks_its_arguments(gpa, pages):
    g = hypercall(KVM_HC_MAP_GPA_RANGE, gpa, pages, 0, mode="long64")
    g.vm.enable_cap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == -KVM_EINVAL & U64


def test_clock_pairing_writes_realtime_and_the_guest_tsc():
    g = KvmGuest(f"""
        mov eax, {KVM_HC_CLOCK_PAIRING}
        mov ebx, {DATA_GPA}
        xor ecx, ecx
        vmcall
        mov edi, eax
        rdtsc
        hlt""")
    g.vcpu.set_guest_tsc(10 ** 12)
    assert g.run().exit_reason == KVM_EXIT_HLT
    regs = g.vcpu.get_regs()
    assert regs.rdi == 0
    sec, nsec, tsc, flags = struct.unpack("<qqQI", g.read(DATA_GPA, 28))
    assert abs(sec + nsec / 1e9 - time.time()) < 5 and 0 <= nsec < 10 ** 9 and flags == 0
    after = (regs.rdx << 32) | regs.rax
    assert 10 ** 12 <= tsc <= after < tsc + 10 ** 11            # the guest's TSC, just before its RDTSC


@pytest.mark.parametrize("gpa, clock_type, result", [(DATA_GPA, 1, -KVM_EOPNOTSUPP),
                                                     (0x7FFF0000, 0, -KVM_EFAULT)])
def test_clock_pairing_failures(gpa, clock_type, result):
    g = hypercall(KVM_HC_CLOCK_PAIRING, gpa, clock_type)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == result & U32
