"""KVM_X86_SET_MSR_FILTER: which guest RDMSR/WRMSR accesses KVM handles itself and which
it denies, to send them to userspace as KVM_EXIT_X86_RDMSR/WRMSR exits (when
KVM_CAP_X86_USER_SPACE_MSR enabled KVM_MSR_EXIT_REASON_FILTER) or to #GP.

As in KVM (kvm_msr_allowed): the first range whose flags cover the access and whose
[base, base + nmsrs) holds the MSR decides by its bitmap bit (1 allows); an MSR no
range covers is allowed unless the filter's flags say KVM_MSR_FILTER_DEFAULT_DENY.
Accesses from userspace (KVM_GET/SET_MSRS) are never filtered."""

from kvm.constants import (KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_MAX_RANGES, KVM_MSR_FILTER_READ,
                           KVM_MSR_FILTER_WRITE)
from kvm.errors import KvmError
from kvm.structs import MsrFilter


def check_msr_filter(msr_filter: MsrFilter) -> None:
    """The EINVAL cases of KVM_X86_SET_MSR_FILTER."""
    if msr_filter.flags & ~KVM_MSR_FILTER_DEFAULT_DENY:
        raise KvmError(f"MSR filter flags {msr_filter.flags:#x} are invalid")
    if len(msr_filter.ranges) > KVM_MSR_FILTER_MAX_RANGES:
        raise KvmError(f"an MSR filter has at most {KVM_MSR_FILTER_MAX_RANGES} ranges")
    for r in msr_filter.ranges:
        if not r.flags or r.flags & ~(KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE):
            raise KvmError(f"MSR filter range flags {r.flags:#x} are invalid")
        if r.nmsrs <= 0 or r.base + r.nmsrs > 1 << 32 or len(r.bitmap) * 8 < r.nmsrs:
            raise KvmError(f"MSR filter range at {r.base:#x} ({r.nmsrs} MSRs) is invalid")


def msr_allowed(msr_filter, index: int, access: int) -> bool:
    """Whether KVM handles the guest's ``access`` (KVM_MSR_FILTER_READ or _WRITE) of MSR ``index``."""
    if msr_filter is None:
        return True
    for r in msr_filter.ranges:
        if r.flags & access and r.base <= index < r.base + r.nmsrs:
            bit = index - r.base
            return bool(r.bitmap[bit >> 3] >> (bit & 7) & 1)
    return not msr_filter.flags & KVM_MSR_FILTER_DEFAULT_DENY
