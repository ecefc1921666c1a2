"""The vCPU loop serves KVM's user-space MSR exits (on the scripted fake kvm): the local
APIC's MSRs are answered, anything else, or a refused access, makes the guest #GP."""

from fake_kvm import FakeKvm, Out, Rdmsr, Wrmsr

from devicemodel.address_space import AddressSpace
from devicemodel.apic_bus import ApicBus
from devicemodel.clock import VirtualClock
from devicemodel.cpu_msrs import CpuMsrs, install_msr_filter
from devicemodel.devices.apic import LocalApic
from devicemodel.devices.debug_exit import DebugExit
from devicemodel.runstate import RunState
from devicemodel.vcpu_loop import VcpuLoop
from kvm.capabilities import KVM_CAP_X86_USER_SPACE_MSR
from kvm.constants import KVM_MSR_EXIT_REASON_FILTER


def run_script(script):
    runstate = RunState()
    pio = AddressSpace("io", 0x10000)
    pio.add_region(DebugExit(runstate.request_exit, iobase=0xF4, iosize=4).region)
    vm = FakeKvm(script).create_vm()
    vcpu = vm.create_vcpu(0)
    lapic = LocalApic(0, ApicBus(), VirtualClock(), bsp=True)
    install_msr_filter(vm)
    loop = VcpuLoop(vcpu, pio, AddressSpace("memory"), runstate, msrs=CpuMsrs(lapic, vcpu))
    thread = loop.start()
    thread.join(5)
    assert not thread.is_alive()
    return vm, vcpu, lapic


def test_apic_msrs_are_served_and_others_gp():
    vm, vcpu, lapic = run_script([Rdmsr(0x1B), Wrmsr(0x1B, 0xFEE00D00), Rdmsr(0x802), Wrmsr(0x808, 0x100),
                                  Rdmsr(0x80E), Rdmsr(0xC0DE), Out(0xF4, 1, (0,))])
    assert vcpu.msr_results == [(0, 0xFEE00900), (0, 0xFEE00D00), (0, 0), (1, 0x100), (1, 0), (1, 0)]
    assert lapic.mode == "x2apic"
    assert vcpu.msrs[0x1B] == 0xFEE00D00                  # KVM's own copy follows


def test_the_filter_sends_the_apic_msrs_to_userspace():
    vm, _, _ = run_script([Out(0xF4, 1, (0,))])
    assert vm.capabilities[KVM_CAP_X86_USER_SPACE_MSR] == (KVM_MSR_EXIT_REASON_FILTER,)
    ranges = {(r.base, r.nmsrs) for r in vm.msr_filter.ranges}
    assert ranges == {(0x1B, 1), (0x6E0, 1), (0x800, 0x100)}
    assert all(not any(r.bitmap) for r in vm.msr_filter.ranges)
