"""pyhv's hypervisor layer: a KVM-shaped API (Kvm -> VM -> VCPU) over the emulated
VT-x processor in kvm._silicon."""

from kvm.capabilities import check_extension
from kvm.cpuid import supported_cpuid
from kvm.hostmem import HostPhysicalMemory
from kvm.msrs import MSR_INDEX_LIST
from kvm.errors import KvmError
from kvm.vm import VM

KVM_API_VERSION = 12


class Kvm:
    """/dev/kvm: the machine's processors and host-physical memory."""

    def __init__(self):
        self.hostmem = HostPhysicalMemory()

    def get_api_version(self) -> int:
        return KVM_API_VERSION

    def create_vm(self) -> VM:
        return VM(self)

    def get_supported_cpuid(self):
        return supported_cpuid()

    def check_extension(self, cap: int) -> int:
        return check_extension(cap)

    def get_msr_index_list(self):
        """KVM_GET_MSR_INDEX_LIST: the MSRs KVM_GET/SET_MSRS handle."""
        return list(MSR_INDEX_LIST)


__all__ = ["Kvm", "VM", "KvmError"]
