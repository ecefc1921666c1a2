"""VMCALL: KVM's hypercalls (kvm_emulate_hypercall; Documentation/virt/kvm/x86/hypercalls.rst).

The number is in RAX, the arguments in RBX, RCX, RDX and RSI, the result goes to RAX
(all truncated to 32 bits outside 64-bit mode), and the VMCALL is skipped.  From CPL > 0
every hypercall fails with -KVM_EPERM.  What KVM does with each, without an in-kernel
local APIC:

* KVM_HC_VAPIC_POLL_IRQ, KVM_HC_KICK_CPU, KVM_HC_SCHED_YIELD: 0.  A kick wakes a vCPU
  halted in the in-kernel local APIC, which does not exist here; a yield is a
  scheduling hint.  (A device model leaves KVM_FEATURE_PV_UNHALT out of CPUID, as QEMU
  does without the in-kernel irqchip, so guests do not wait for kicks.)
* KVM_HC_SEND_IPI: -KVM_EOPNOTSUPP: no in-kernel local APICs to send to.
* KVM_HC_CLOCK_PAIRING (a0: guest-physical address, a1: KVM_CLOCK_PAIRING_WALLCLOCK):
  writes struct kvm_clock_pairing, the host's realtime and the guest's TSC at one instant.
* KVM_HC_MAP_GPA_RANGE (a0: gpa, a1: pages, a2: attributes): a KVM_EXIT_HYPERCALL to
  userspace when KVM_CAP_EXIT_HYPERCALL enabled it, whose kvm_run.hypercall.ret the next
  KVM_RUN puts in RAX; otherwise -KVM_ENOSYS.
* anything else: -KVM_ENOSYS."""

import struct

from kvm import vmx
from kvm.constants import KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_LONG_MODE
from kvm.translate import guest_cpl

RAX, RCX, RDX, RBX, RSI = 0, 1, 2, 3, 6

# include/uapi/linux/kvm_para.h
KVM_ENOSYS, KVM_EFAULT, KVM_EINVAL, KVM_EPERM, KVM_EOPNOTSUPP = 1000, 14, 22, 1, 95
KVM_HC_VAPIC_POLL_IRQ = 1
KVM_HC_KICK_CPU = 5
KVM_HC_CLOCK_PAIRING = 9
KVM_HC_SEND_IPI = 10
KVM_HC_SCHED_YIELD = 11
KVM_HC_MAP_GPA_RANGE = 12
KVM_CLOCK_PAIRING_WALLCLOCK = 0

PAGE_SHIFT = 12
MSR_IA32_TSC_ADJUST = 0x3B


def handle_vmcall(vcpu):
    long_mode = vcpu.in_64bit_mode()
    mask = (1 << 64) - 1 if long_mode else 0xFFFFFFFF
    nr, a0, a1, a2, a3 = (vcpu.get_gpr(r) & mask for r in (RAX, RBX, RCX, RDX, RSI))
    if guest_cpl(vcpu) != 0:
        ret = -KVM_EPERM
    elif nr == KVM_HC_MAP_GPA_RANGE:
        if not vcpu.vm.hypercall_exit_enabled & (1 << KVM_HC_MAP_GPA_RANGE):
            ret = -KVM_ENOSYS
        elif a0 & ((1 << PAGE_SHIFT) - 1) or not a1 or (a0 >> PAGE_SHIFT) + a1 > (1 << 64) - 1:
            ret = -KVM_EINVAL
        else:
            return _exit_to_userspace(vcpu, nr, [a0, a1, a2, 0, 0, 0], long_mode)
    elif nr in (KVM_HC_VAPIC_POLL_IRQ, KVM_HC_KICK_CPU, KVM_HC_SCHED_YIELD):
        ret = 0
    elif nr == KVM_HC_SEND_IPI:
        ret = -KVM_EOPNOTSUPP
    elif nr == KVM_HC_CLOCK_PAIRING:
        ret = _clock_pairing(vcpu, a0, a1)
    else:
        ret = -KVM_ENOSYS
    _complete(vcpu, ret)
    return None


def _complete(vcpu, ret: int):
    mask = (1 << 64) - 1 if vcpu.in_64bit_mode() else 0xFFFFFFFF
    vcpu.set_gpr(RAX, ret & mask)
    vcpu.advance_rip()


def _exit_to_userspace(vcpu, nr: int, args: list, long_mode: bool) -> int:
    hc = vcpu.kvm_run.hypercall
    hc.nr, hc.args, hc.ret = nr, args, 0
    hc.flags = KVM_EXIT_HYPERCALL_LONG_MODE if long_mode else 0
    vcpu.completion = lambda: _complete(vcpu, hc.ret)
    return KVM_EXIT_HYPERCALL


def _clock_pairing(vcpu, gpa: int, clock_type: int) -> int:
    """struct kvm_clock_pairing {s64 sec; s64 nsec; u64 tsc; u32 flags; u32 pad[9]}:
    realtime and the guest's TSC (the processor's, adjusted and offset) at one instant."""
    if clock_type != KVM_CLOCK_PAIRING_WALLCLOCK:
        return -KVM_EOPNOTSUPP
    clock = vcpu.vm.get_clock()
    tsc = clock.host_tsc + vcpu.rdmsr_root(MSR_IA32_TSC_ADJUST) + vcpu.vmread(vmx.TSC_OFFSET)
    sec, nsec = divmod(clock.realtime, 1_000_000_000)
    record = struct.pack("<qqQI36x", sec, nsec, tsc & ((1 << 64) - 1), 0)
    return 0 if vcpu.vm.write_guest(gpa, record) else -KVM_EFAULT
