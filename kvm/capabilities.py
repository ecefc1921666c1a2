"""KVM_CHECK_EXTENSION: the KVM_CAP_* capabilities this hypervisor implements (numbers of
Linux's include/uapi/linux/kvm.h) and what checking them returns."""

from kvm.hostmem import MAX_MEMSLOTS

MAX_VCPUS = 256     # the silicon's processors per machine

KVM_CAP_IRQCHIP = 0
KVM_CAP_HLT = 1
KVM_CAP_USER_MEMORY = 3
KVM_CAP_EXT_CPUID = 7
KVM_CAP_NR_VCPUS = 9
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_MP_STATE = 14
KVM_CAP_DESTROY_MEMORY_REGION_WORKS = 21
KVM_CAP_USER_NMI = 22
KVM_CAP_JOIN_MEMORY_REGIONS_WORKS = 30
KVM_CAP_VCPU_EVENTS = 41
KVM_CAP_INTR_SHADOW = 49
KVM_CAP_MAX_VCPUS = 66
KVM_CAP_READONLY_MEM = 81
KVM_CAP_MAX_VCPU_ID = 128
KVM_CAP_IMMEDIATE_EXIT = 136

CAPABILITIES = {
    KVM_CAP_HLT: 1,
    KVM_CAP_USER_MEMORY: 1,
    KVM_CAP_EXT_CPUID: 1,                # KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2
    KVM_CAP_NR_VCPUS: MAX_VCPUS,
    KVM_CAP_NR_MEMSLOTS: MAX_MEMSLOTS,
    KVM_CAP_MP_STATE: 1,
    KVM_CAP_DESTROY_MEMORY_REGION_WORKS: 1,
    KVM_CAP_USER_NMI: 1,                 # KVM_NMI
    KVM_CAP_JOIN_MEMORY_REGIONS_WORKS: 1,
    KVM_CAP_VCPU_EVENTS: 1,
    KVM_CAP_INTR_SHADOW: 1,              # the shadow in KVM_GET/SET_VCPU_EVENTS
    KVM_CAP_MAX_VCPUS: MAX_VCPUS,
    KVM_CAP_READONLY_MEM: 1,
    KVM_CAP_MAX_VCPU_ID: MAX_VCPUS,
    KVM_CAP_IMMEDIATE_EXIT: 1,
}


def check_extension(cap: int) -> int:
    """0 for a capability that is not implemented, else 1 or the capability's value."""
    return CAPABILITIES.get(cap, 0)
