"""kvm/'s compiled half (root_*.c): KVM's paravirtual CPUID leaves, kvmclock as Linux's
kvmclock.c reads it, KVM_GET/SET_CLOCK, and the exits handled without Python still
counted in the statistics."""

import mmap
import struct
import time

import pytest

from kvm import KvmError
from kvm.capabilities import KVM_CAP_ADJUST_CLOCK
from kvm.constants import (KVM_CLOCK_HOST_TSC, KVM_CLOCK_REALTIME, KVM_CLOCK_TSC_STABLE, KVM_EXIT_HLT,
                           KVM_EXIT_IO, KVM_MEM_LOG_DIRTY_PAGES)
from kvm.dirty_log import dirty_pages
from kvm.structs import ClockData
from kvm_guest import KvmGuest

MSR_KVM_WALL_CLOCK_NEW = 0x4B564D00
MSR_KVM_SYSTEM_TIME_NEW = 0x4B564D01
MSR_IA32_TSC = 0x10
PVCLOCK_GPA = 0x200000
WALL_GPA = 0x201000
PVCLOCK_TSC_STABLE_BIT = 1
KVM_FEATURE_CLOCKSOURCE2 = 1 << 3
KVM_FEATURE_CLOCKSOURCE_STABLE_BIT = 1 << 24
MS = 1_000_000

# pvclock_clocksource_read (Linux's arch/x86/kernel/pvclock.c): rax = kvmclock ns
READ_CLOCK = f"""
read_clock:
1:  mov r8d, dword ptr [{PVCLOCK_GPA}]
    test r8d, 1
    jnz 1b
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, qword ptr [{PVCLOCK_GPA + 8}]
    movsx ecx, byte ptr [{PVCLOCK_GPA + 28}]
    test ecx, ecx
    js 2f
    shl rax, cl
    jmp 3f
2:  neg ecx
    shr rax, cl
3:  mov r9d, dword ptr [{PVCLOCK_GPA + 24}]
    mul r9
    shrd rax, rdx, 32
    add rax, qword ptr [{PVCLOCK_GPA + 16}]
    cmp r8d, dword ptr [{PVCLOCK_GPA}]
    jne 1b
    ret
"""

ENABLE_KVMCLOCK = f"""
    mov ecx, {MSR_KVM_SYSTEM_TIME_NEW}
    mov eax, {PVCLOCK_GPA | 1}
    xor edx, edx
    wrmsr
"""

# read kvmclock into r12, exit to the host (out 0x80), read it again into r13
TWO_READINGS = ENABLE_KVMCLOCK + """
    call read_clock
    mov r12, rax
    out 0x80, al
    call read_clock
    mov r13, rax
    hlt
""" + READ_CLOCK


def kvmclock_guest(source=TWO_READINGS):
    return KvmGuest(source, mode="long64")


def pvclock(g):
    """pvclock_vcpu_time_info as the guest sees it."""
    version, _, tsc, system_time, mul, shift, flags = struct.unpack("<IIQQIbB", g.read(PVCLOCK_GPA, 30))
    return {"version": version, "tsc_timestamp": tsc, "system_time": system_time, "mul": mul,
            "shift": shift, "flags": flags}


def test_the_kvm_signature_leaf_and_the_features_of_what_is_implemented():
    g = KvmGuest("""
        mov eax, 0x40000000
        cpuid
        mov esi, eax
        mov edi, ebx
        mov ebp, ecx
        mov esp, edx
        mov eax, 0x40000001
        cpuid
        hlt""")
    assert g.run().exit_reason == KVM_EXIT_HLT
    r = g.vcpu.get_regs()
    assert r.rsi == 0x40000001
    assert struct.pack("<3I", r.rdi, r.rbp, r.rsp) == b"KVMKVMKVM\0\0\0"
    assert r.rax == KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT
    assert (r.rbx, r.rcx, r.rdx) == (0, 0, 0)
    assert g.vcpu.exit_stats()["CPUID"]["count"] == 2


def test_kvmclock_is_monotonic_and_runs_with_the_host_clock():
    g = kvmclock_guest()
    c0 = g.vm.get_clock().clock
    t0 = time.monotonic_ns()
    assert g.run().exit_reason == KVM_EXIT_IO
    t1 = time.monotonic_ns()
    c1 = g.vm.get_clock().clock
    time.sleep(0.05)
    t2 = time.monotonic_ns()
    assert g.run().exit_reason == KVM_EXIT_HLT
    t3 = time.monotonic_ns()
    c2 = g.vm.get_clock().clock
    first, second = g.reg("r12"), g.reg("r13")
    assert c0 <= first <= c1 < second <= c2                # one clock for the guest and the host
    assert 0.99 * (t2 - t1) - MS <= second - first <= 1.01 * (t3 - t0) + MS
    info = pvclock(g)
    assert info["version"] % 2 == 0 and info["version"] >= 2
    assert info["flags"] & PVCLOCK_TSC_STABLE_BIT
    # the scale is the TSC's rate: ns = ((ticks << shift) * mul) >> 32 (Linux's tsc_khz comes from it)
    ghz = info["mul"] / 2 ** 32 * 2.0 ** info["shift"]
    assert 0.05 < 1 / ghz < 10                              # a TSC between 50 MHz and 10 GHz


def test_the_kvmclock_msrs_read_back_in_the_guest_and_through_get_msrs():
    g = kvmclock_guest(ENABLE_KVMCLOCK + f"""
        mov ecx, {MSR_KVM_WALL_CLOCK_NEW}
        mov eax, {WALL_GPA}
        xor edx, edx
        wrmsr
        mov ecx, {MSR_KVM_SYSTEM_TIME_NEW}
        rdmsr
        mov r12, rax
        mov ecx, {MSR_KVM_WALL_CLOCK_NEW}
        rdmsr
        mov r13, rax
        hlt""")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("r12"), g.reg("r13")) == (PVCLOCK_GPA | 1, WALL_GPA)
    msrs = [MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_WALL_CLOCK_NEW]
    assert g.vcpu.get_msrs(msrs) == {MSR_KVM_SYSTEM_TIME_NEW: PVCLOCK_GPA | 1, MSR_KVM_WALL_CLOCK_NEW: WALL_GPA}
    assert set(msrs) <= set(g.kvm.get_msr_index_list())
    assert g.vcpu.exit_stats()["MSR_WRITE"]["count"] == 2 and g.vcpu.exit_stats()["MSR_READ"]["count"] == 2
    # the wall clock: host realtime at kvmclock 0
    version, sec, nsec = struct.unpack("<3I", g.read(WALL_GPA, 12))
    assert version % 2 == 0 and version >= 2
    assert abs(sec * 10 ** 9 + nsec + g.vm.get_clock().clock - time.time_ns()) < 20 * MS
    # KVM_SET_MSRS turns kvmclock off and on (what a restored guest needs)
    assert g.vcpu.set_msrs({MSR_KVM_SYSTEM_TIME_NEW: 0}) == 1
    assert g.vcpu.get_msrs([MSR_KVM_SYSTEM_TIME_NEW]) == {MSR_KVM_SYSTEM_TIME_NEW: 0}


def test_get_clock_reports_its_instant_and_set_clock_moves_the_guests_clock():
    assert KvmGuest("hlt").kvm.check_extension(KVM_CAP_ADJUST_CLOCK) == \
        KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC
    g = kvmclock_guest()
    before = time.time_ns()
    c = g.vm.get_clock()
    assert c.flags == KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC
    assert before <= c.realtime <= time.time_ns() and c.host_tsc > 0
    assert 0 <= c.clock < 10 ** 9                          # it started with the VM
    assert g.run().exit_reason == KVM_EXIT_IO
    g.vm.set_clock(ClockData(clock=10 ** 15))
    assert g.run().exit_reason == KVM_EXIT_HLT           # the guest's pvclock was rewritten
    assert g.reg("r12") < 10 ** 9 and 10 ** 15 <= g.reg("r13") < 10 ** 15 + 10 ** 9
    # KVM_CLOCK_REALTIME: the clock value was read `realtime` ago, so it has moved on since
    g.vm.set_clock(ClockData(clock=5 * 10 ** 12, flags=KVM_CLOCK_REALTIME, realtime=time.time_ns() - 2 * 10 ** 9))
    assert abs(g.vm.get_clock().clock - (5 * 10 ** 12 + 2 * 10 ** 9)) < 100 * MS
    with pytest.raises(KvmError):
        g.vm.set_clock(ClockData(clock=0, flags=KVM_CLOCK_HOST_TSC))


def test_writing_the_guest_tsc_rebases_the_pvclock():
    g = kvmclock_guest()
    assert g.run().exit_reason == KVM_EXIT_IO
    assert g.vcpu.set_msrs({MSR_IA32_TSC: 1 << 50}) == 1
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert pvclock(g)["tsc_timestamp"] >= 1 << 50
    first, second = g.reg("r12"), g.reg("r13")
    assert 0 < second - first < 10 ** 9                    # continuous across the TSC jump


def test_exits_handled_without_python_are_counted_with_their_time():
    g = KvmGuest("""
        xor eax, eax
        cpuid
        cpuid
        cpuid
        mov dword ptr [0x300000], 1
        hlt""")
    assert g.run().exit_reason == KVM_EXIT_HLT
    stats = g.vcpu.exit_stats()
    assert stats["CPUID"]["count"] == 3 and stats["CPUID"]["time_ns"] > 0
    assert stats["EPT_VIOLATION"]["count"] >= 2             # the code page, the page written
    assert stats["HLT"]["count"] == 1
    assert g.vm.exit_stats().as_dict()["CPUID"] == stats["CPUID"]
    assert g.vm.ept.lookup(0x300000) is not None


def test_the_pvclock_pages_the_hypervisor_writes_are_in_the_dirty_log():
    slot_gpa = 0x1000000
    g = KvmGuest(f"""
        mov ecx, {MSR_KVM_SYSTEM_TIME_NEW}
        mov eax, {slot_gpa + 0x3000 + 1}
        xor edx, edx
        wrmsr
        mov ecx, {MSR_KVM_WALL_CLOCK_NEW}
        mov eax, {slot_gpa + 0x5000}
        wrmsr
        hlt""")
    ram = mmap.mmap(-1, 0x10000)
    g.vm.set_user_memory_region(1, slot_gpa, 0x10000, ram, KVM_MEM_LOG_DIRTY_PAGES)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert dirty_pages(g.vm.get_dirty_log(1)) == [3, 5]     # the guest itself wrote nothing there
    assert struct.unpack_from("<I", ram, 0x3000)[0] == 2 and struct.unpack_from("<I", ram, 0x5000)[0] == 2
    assert dirty_pages(g.vm.get_dirty_log(1)) == []
